"""The pieces under a node's start: the first entry of a new cluster, the member book, the
restart state and the NODE identity record."""

from __future__ import annotations

import json

import pytest

from dengine.errors import ClusterMismatch, Corruption
from dengine.node import bootstrap
from dengine.node.members import MemberBook, decode_addresses, encode_addresses
from dengine.raft.confchange import decode_conf_change
from dengine.raft.config import RaftConfig
from dengine.raft.core import RaftCore
from dengine.raft.types import ConfState, Entry, EntryKind, HardState
from dengine.storage.memory import MemoryLogStore


def test_the_first_entry_is_identical_whatever_order_members_are_given_in():
    a = bootstrap.bootstrap_entry({1: "h:1", 2: "h:2", 3: "h:3"})
    b = bootstrap.bootstrap_entry({3: "h:3", 1: "h:1", 2: "h:2"})
    assert a == b
    assert (a.term, a.index, a.kind) == (1, 1, EntryKind.CONF_CHANGE)
    cc = decode_conf_change(a.data)
    assert sorted(ch.node_id for ch in cc.changes) == [1, 2, 3]
    assert decode_addresses(cc.context) == {1: "h:1", 2: "h:2", 3: "h:3"}


def test_a_core_built_on_the_bootstrapped_log_has_the_initial_voters():
    store = MemoryLogStore()
    assert bootstrap.is_fresh(store)
    bootstrap.bootstrap_log(store, {1: "h:1", 2: "h:2"})
    assert not bootstrap.is_fresh(store)
    rs = bootstrap.restart_state(store, 0, 0, ConfState())
    assert rs.hard_state == HardState(1, 0, 1)
    import random

    core = RaftCore(2, RaftConfig(), random.Random(1), conf_state=rs.conf_state, storage=store,
                    hard_state=rs.hard_state, applied_index=rs.applied_index)
    assert core.conf_state.voters == frozenset({1, 2})
    assert core.promotable


def test_restart_raises_commit_to_what_the_state_machine_applied():
    store = MemoryLogStore()
    bootstrap.bootstrap_log(store, {1: "h:1"})
    rs = bootstrap.restart_state(store, 1, 1, ConfState())
    assert rs.hard_state.commit == 1 and rs.applied_index == 1


def test_a_state_machine_ahead_of_the_log_resets_the_log_to_its_point():
    store = MemoryLogStore()
    bootstrap.bootstrap_log(store, {1: "h:1"})
    rs = bootstrap.restart_state(store, 50, 3, ConfState(voters=frozenset({1})))
    assert (store.first_index(), store.last_index(), store.term(50)) == (51, 50, 3)
    assert rs.hard_state.commit == 50


def test_member_book_survives_a_reopen_and_finds_the_config_at_a_point(tmp_path):
    book = MemberBook(str(tmp_path))
    assert book.learn({1: "h:1", 2: "h:2"})
    assert not book.learn({1: "h:1"})
    c10 = ConfState(voters=frozenset({1, 2}))
    c20 = ConfState(voters=frozenset({1, 2}), learners=frozenset({3}))
    book.record_conf(10, c10)
    book.record_conf(20, c20)
    again = MemberBook(str(tmp_path))
    assert again.addresses == {1: "h:1", 2: "h:2"}
    assert again.conf_at(5) == ConfState()
    assert again.conf_at(10) == c10 and again.conf_at(19) == c10
    assert again.conf_at(25) == c20
    again.record_conf(15, c10)  # a reset to an earlier point drops the later records
    assert again.conf_at(25) == c10


def test_a_damaged_member_book_refuses_to_load(tmp_path):
    (tmp_path / "members.json").write_text("{not json")
    with pytest.raises(Corruption):
        MemberBook(str(tmp_path))


def test_addresses_encode_canonically_and_bad_bytes_decode_to_nothing():
    assert encode_addresses({2: "b:2", 1: "a:1"}) == encode_addresses({1: "a:1", 2: "b:2"})
    assert decode_addresses(b"\xff garbage") == {}
    assert decode_addresses(json.dumps({"0": "x:1", "4": "d:4"}).encode()) == {4: "d:4"}


def test_node_file_binds_the_data_dir_to_one_cluster_and_node(tmp_path):
    d = str(tmp_path / "data")
    assert bootstrap.check_node_file(d, "c1", 1) is True
    assert bootstrap.check_node_file(d, "c1", 1) is False
    with pytest.raises(ClusterMismatch, match="cluster id"):
        bootstrap.check_node_file(d, "c2", 1)
    with pytest.raises(ClusterMismatch, match="node id"):
        bootstrap.check_node_file(d, "c1", 2)
    (tmp_path / "data" / "NODE").write_text("garbage")
    with pytest.raises(Corruption):
        bootstrap.check_node_file(d, "c1", 1)


@pytest.mark.parametrize("where, set_up", [
    ("the term", lambda s: s.save_hard_state(HardState(2**64 - 1, 0, 1))),
    ("the term", lambda s: s.save_hard_state(HardState(2**62, 2, 1))),
    ("the term of log entry 2", lambda s: (
        s.append([Entry(2**62, 2, EntryKind.NORMAL, b"x")]),
        s.save_hard_state(HardState(2**62 - 1, 0, 1)))),
])
def test_a_term_past_the_bound_in_storage_refuses_to_start_naming_the_way_back(where, set_up):
    from dengine.errors import InvariantViolation, TermOutOfBounds

    store = MemoryLogStore()
    bootstrap.bootstrap_log(store, {1: "h:1", 2: "h:2"})
    set_up(store)
    with pytest.raises(TermOutOfBounds) as info:
        bootstrap.restart_state(store, 0, 0, ConfState(), 2)
    assert isinstance(info.value, InvariantViolation)  # fatal: the node does not start
    assert f"{where} in its storage is" in str(info.value)
    assert "`dengine member remove 2`" in str(info.value) and "--join" in str(info.value)


def test_a_term_just_below_the_bound_still_starts():
    store = MemoryLogStore()
    bootstrap.bootstrap_log(store, {1: "h:1"})
    store.save_hard_state(HardState(2**62 - 1, 1, 1))
    assert bootstrap.restart_state(store, 0, 0, ConfState(), 1).hard_state.term == 2**62 - 1
