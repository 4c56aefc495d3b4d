"""Snapshots and compaction: a far-behind follower caught up by a snapshot; restart from one."""

from __future__ import annotations

import random

from dengine.raft import (
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RaftConfig,
    RaftCore,
    Role,
)
from dengine.raft.confchange import ConfChange, ConfChangeSingle, ConfChangeType
from dengine.raft.tracker import ProgressState
from dengine.raft.types import ConfState, SnapshotMeta
from dengine.testing.raft_network import Network

MT = MessageType


def cluster(keep: int = 2) -> Network:
    net = Network((1, 2, 3), RaftConfig(compact_keep_entries=keep))
    net.elect(1)
    return net


def test_compaction_after_a_snapshot_keeps_a_tail():
    net = cluster(keep=2)
    for k in range(10):
        net.propose(1, b"%d" % k)
    meta = net.take_snapshot(1)
    assert meta.index == 11
    net.deliver()
    assert net.core(1).log.first_index == 10, "entries up to 11 - 2 compacted"
    assert net.peers[1].storage.first_index() == 10


def test_a_follower_far_behind_is_caught_up_by_a_snapshot():
    net = cluster(keep=0)
    net.cut(1, 3)
    for k in range(10):
        net.propose(1, b"%d" % k)
    net.take_snapshot(1)
    net.propose(1, b"after")
    seen: list[Message] = []
    net.hook = lambda m: seen.append(m) or True
    net.cuts.clear()
    net.tick(n=3)
    assert [m.to for m in seen if m.type == MT.SNAPSHOT] == [3]
    assert net.applied_data(3) == [b"%d" % k for k in range(10)] + [b"after"]
    assert net.core(1).tracker.progress[3].state == ProgressState.REPLICATE
    assert net.core(3).applied_index == net.core(1).applied_index


def test_a_failed_snapshot_transfer_sends_the_follower_back_to_probing():
    net = cluster(keep=0)
    net.cut(1, 3)
    for k in range(5):
        net.propose(1, b"%d" % k)
    net.take_snapshot(1)
    net.cuts.clear()
    net.drop_types(MT.SNAPSHOT)  # every stream fails
    net.tick([1], n=1)
    pr = net.core(1).tracker.progress[3]
    assert pr.state == ProgressState.PROBE
    net.heal()
    net.tick(n=3)
    assert net.applied_data(3) == [b"%d" % k for k in range(5)]


def test_a_snapshot_older_than_the_log_is_ignored():
    net = cluster()
    for k in range(5):
        net.propose(1, b"%d" % k)
    follower = net.core(2)
    before = follower.applied_index
    old = SnapshotMeta(2, 1, net.core(1).conf_state)
    follower.step(Message(MT.SNAPSHOT, 2, 1, term=1, snapshot=old))
    rd = follower.ready()
    assert rd.snapshot is None
    assert "older than our commit index" in rd.dropped[0].reason
    (resp,) = rd.messages + rd.persisted_messages
    assert (resp.type, resp.index) == (MT.APPEND_RESP, follower.commit_index)
    assert follower.applied_index == before


def test_a_snapshot_carries_the_config_to_the_follower():
    net = cluster(keep=0)
    net.cut(1, 3)
    net.core(1).propose_conf_change(ConfChange((ConfChangeSingle(ConfChangeType.ADD_LEARNER, 7),)))
    net.deliver()
    net.propose(1, b"x")
    net.take_snapshot(1)
    net.cuts.clear()
    net.tick(n=3)
    assert net.core(3).conf_state.learners == {7}


def test_restart_from_a_snapshot_plus_the_log_after_it():
    net = cluster(keep=0)
    for k in range(5):
        net.propose(1, b"%d" % k)
    net.take_snapshot(2)
    net.deliver()
    net.propose(1, b"tail")
    net.crash(2)
    net.restart(2)
    core = net.core(2)
    assert core.log.first_index == 7 and core.last_index == 7
    assert core.applied_index == 7
    net.tick(n=2)
    net.propose(1, b"more")
    assert net.applied_data(2)[-2:] == [b"tail", b"more"]


def test_a_snapshot_arriving_during_a_leader_change_is_handled_by_the_new_term():
    net = cluster(keep=0)
    net.cut(1, 3)
    for k in range(5):
        net.propose(1, b"%d" % k)
    net.take_snapshot(1)
    net.cuts.clear()
    held: list[Message] = []
    net.hook = lambda m: not (m.type == MT.SNAPSHOT and not held.append(m))
    net.tick([1], n=1)
    assert held, "a snapshot was sent and is delayed"
    # Leadership moves to 2 before the snapshot arrives.
    net.hook = None
    net.core(1).transfer_leader(2)
    net.deliver()
    assert net.leader() == 2
    # The stale snapshot (term 1) arrives: dropped as a stale term, nothing breaks.
    net.core(3).step(held[0])
    net.tick(n=3)
    assert net.applied_data(3) == [b"%d" % k for k in range(5)]
    assert net.core(3).role == Role.FOLLOWER and net.core(3).leader_id == 2


def test_a_shell_may_keep_a_shorter_tail_than_configured_behind_a_snapshot():
    net = Network((1, 2, 3), config=RaftConfig(compact_keep_entries=5))
    net.elect(1)
    net.propose(1, *[b"x"] * 20)
    core = net.core(1)
    applied = core.applied_index
    core.on_snapshot_taken(SnapshotMeta(applied, core.term, core.conf_state), keep_entries=2)
    assert core.ready().compact_to == applied - 2
    core2 = net.core(2)
    core2.on_snapshot_taken(SnapshotMeta(applied, core2.term, core2.conf_state), keep_entries=50)
    assert core2.ready().compact_to == applied - 5  # never more than configured


def test_fast_forward_acks_the_snapshot_point_not_an_unchecked_suffix():
    # The follower holds the snapshot's point 3@1, then a suffix 4..5@2 from a deposed leader
    # of term 2 that the new leader (term 3) never checked. Acking the last index (5) would
    # let the leader count entries 4 and 5 it does not hold as matched.
    storage = MemoryStorage()
    storage.append([Entry(1, 1, 0, b""), Entry(1, 2, 0, b""), Entry(1, 3, 0, b""),
                    Entry(2, 4, 0, b"stale"), Entry(2, 5, 0, b"stale")])
    core = RaftCore(2, RaftConfig(), random.Random(0), peers=[1, 3], storage=storage,
                    hard_state=HardState(term=2, vote=0, commit=1))
    meta = SnapshotMeta(3, 1, ConfState(voters=frozenset({1, 2, 3})))
    core.step(Message(MT.SNAPSHOT, 2, 1, 3, snapshot=meta))
    rd = core.ready()
    acks = [m for m in rd.messages + rd.persisted_messages if m.type == MT.APPEND_RESP]
    assert [(m.index, m.reject) for m in acks] == [(3, False)]
    assert core.commit_index == 3 and core.last_index == 5
