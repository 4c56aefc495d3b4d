"""No message wedges the core: extreme numbers, forged TIMEOUT_NOW, forged transfer votes.

Every wire message type is sent with 0, 1, 2^62, 2^63 and 2^64-1 in each numeric field, to a
follower and to the leader, from a member; afterwards no node holds a term or index at or past
2^62, and the cluster still elects a new leader (one term up) that commits a write.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from dengine.raft import ConfState, Entry, Message, MessageType, Role, SnapshotMeta
from dengine.raft.guard import SANE_BOUND
from dengine.raft.messages import CAMPAIGN_TRANSFER, WIRE_TYPES
from dengine.testing.raft_network import Network

MT = MessageType
VALUES = (0, 1, 1 << 62, 1 << 63, (1 << 64) - 1)
FIELDS = ("term", "log_term", "index", "commit", "reject_hint", "conflict_term",
          "conflict_index", "entry_term", "entry_index", "snapshot_term", "snapshot_index",
          "contiguous_entry_index")


def base_message(t: MessageType, to: int, term: int) -> Message:
    entries = (Entry(term, 3, 0, b"forged"),) if t == MT.APPEND else ()
    snap = SnapshotMeta(2, term, ConfState(voters=frozenset({1, 2, 3}))) if t == MT.SNAPSHOT \
        else None
    return Message(t, to, 3, term=term, log_term=term, index=2, entries=entries, commit=2,
                   context=b"ctx", snapshot=snap)


def mutate(m: Message, name: str, value: int) -> Message:
    if name == "entry_term":
        return replace(m, entries=(Entry(value, m.index + 1, 0, b"x"),))
    if name == "entry_index":
        return replace(m, entries=(Entry(m.term, value, 0, b"x"),))
    if name == "contiguous_entry_index":  # a well-formed append that reaches ``value``
        return replace(m, index=max(value - 1, 0), entries=(Entry(m.term, value, 0, b"x"),))
    if name in ("snapshot_term", "snapshot_index"):
        snap = m.snapshot or SnapshotMeta(1, 1, ConfState(voters=frozenset({1, 2, 3})))
        return replace(m, snapshot=replace(snap, **{name.removeprefix("snapshot_"): value}))
    return replace(m, **{name: value})


def assert_sane(net: Network) -> None:
    for p in net.peers.values():
        c = p.core
        assert c.term < SANE_BOUND and c.last_index < SANE_BOUND and c.commit_index < SANE_BOUND


def assert_electable(net: Network) -> None:
    """Isolate whoever leads; the other two elect one of them and commit a write."""
    for _ in range(100):
        if net.leader():
            break
        net.tick()
    old = net.leader()
    assert old, "no leader"
    net.isolate(old)
    term = net.core(old).term
    for _ in range(200):
        new = net.leader()
        if new and new != old and net.core(new).term > term:
            break
        net.tick([i for i in net.ids if i != old])
    new = net.leader()
    assert new and new != old, "the two remaining nodes could not elect a leader"
    index = net.propose(new, b"after")
    assert all(net.core(i).commit_index >= index for i in net.ids if i != old)
    net.heal()


@pytest.mark.parametrize("mtype", sorted(WIRE_TYPES), ids=lambda t: t.name)
def test_every_message_type_with_extreme_numbers_leaves_the_cluster_electable(mtype):
    for victim in (1, 2):
        for name in FIELDS:
            for value in VALUES:
                net = Network((1, 2, 3))
                net.elect(1)
                net.propose(1, b"a")
                msg = mutate(base_message(mtype, victim, net.core(1).term), name, value)
                net.core(victim).step(msg)
                net.deliver()
                assert_sane(net)
                try:
                    assert_electable(net)
                except AssertionError as e:
                    raise AssertionError(f"{mtype.name} {name}={value} to {victim}: {e}") from e
                assert_sane(net)


@pytest.mark.parametrize("value", [1 << 62, 1 << 63, (1 << 64) - 1])
def test_huge_terms_are_dropped_with_a_reason_and_never_adopted(value):
    net = Network((1, 2, 3))
    net.elect(1)
    core = net.core(2)
    core.step(Message(MT.HEARTBEAT, 2, 1, term=value))
    rd = core.ready()
    assert [d.reason for d in rd.dropped] == [f"term {value} above the sane bound"]
    assert core.term == 1


def test_near_the_bound_a_term_rises_one_election_at_a_time_and_the_cluster_still_elects():
    net = Network((1, 2, 3))
    net.elect(1)
    high = SANE_BOUND - 1
    # A heartbeat of term 2^62 - 1 (just below the bound) is adopted, as Raft says...
    net.core(2).step(Message(MT.HEARTBEAT, 2, 3, term=high))
    net.deliver()
    assert net.core(2).term == high
    net.tick(n=3)  # the leader hears of the higher term from node 2 and steps down
    assert all(p.core.term >= high for p in net.peers.values())
    # ...and the elections after it, past the bound one term at a time, still work.
    for _ in range(3):
        assert_electable(net)
    assert max(p.core.term for p in net.peers.values()) >= SANE_BOUND
    # But a jump of two terms past the bound is refused.
    term = net.core(2).term
    net.core(2).step(Message(MT.HEARTBEAT, 2, 3, term=term + 2))
    assert net.core(2).term == term


def test_timeout_now_from_a_member_that_is_not_our_leader_is_dropped():
    net = Network((1, 2, 3))
    net.elect(1)
    core = net.core(2)
    core.step(Message(MT.TIMEOUT_NOW, 2, 3, term=1))
    rd = core.ready()
    assert rd.dropped and "not from the leader" in rd.dropped[0].reason
    assert core.role == Role.FOLLOWER and core.term == 1


def test_timeout_now_with_a_higher_term_is_dropped_and_the_term_is_kept():
    net = Network((1, 2, 3))
    net.elect(1)
    core = net.core(2)
    core.step(Message(MT.TIMEOUT_NOW, 2, 1, term=7))
    assert core.term == 1 and core.role == Role.FOLLOWER and core.leader_id == 1


def test_timeout_now_from_the_leader_of_our_term_is_obeyed():
    net = Network((1, 2, 3))
    net.elect(1)
    net.core(2).step(Message(MT.TIMEOUT_NOW, 2, 1, term=1))
    net.deliver()
    assert net.leader() == 2 and net.core(2).term == 2


def test_a_transfer_vote_for_a_term_a_transfer_did_not_start_respects_stickiness():
    net = Network((1, 2, 3))
    net.elect(1)
    core = net.core(2)
    core.step(Message(MT.VOTE, 2, 3, term=9, log_term=1, index=core.last_index,
                      context=CAMPAIGN_TRANSFER))
    rd = core.ready()
    assert any("stickiness" in d.reason for d in rd.dropped)
    assert core.term == 1 and core.vote == 1


def test_a_transfer_vote_for_the_next_term_bypasses_stickiness():
    net = Network((1, 2, 3))
    net.elect(1)
    core = net.core(2)
    core.step(Message(MT.VOTE, 2, 3, term=2, log_term=1, index=core.last_index,
                      context=CAMPAIGN_TRANSFER))
    assert core.term == 2 and core.vote == 3
