"""Invariants checked where the core's positions move: a violation raises InvariantViolation
(the node then stops) instead of going on wrong."""

from __future__ import annotations

import random

import pytest

from dengine.errors import InvariantViolation
from dengine.raft.config import RaftConfig
from dengine.raft.core import RaftCore
from dengine.raft.describe import describe_core
from dengine.raft.log import MemoryStorage, RaftLog
from dengine.raft.types import Entry
from dengine.testing.raft_network import Network


def _log(n: int) -> RaftLog:
    storage = MemoryStorage()
    storage.append([Entry(1, i, 0, b"") for i in range(1, n + 1)])
    return RaftLog(storage)


def test_commit_past_the_last_index_raises():
    lg = _log(3)
    assert lg.commit_to(3)
    assert not lg.commit_to(2)  # never back, and not an error
    with pytest.raises(InvariantViolation, match="commit index 4 is past the last index 3"):
        lg.commit_to(4)
    assert lg.committed == 3


def test_apply_past_the_commit_index_raises():
    lg = _log(3)
    lg.commit_to(2)
    lg.applied_to(2)
    lg.applied_to(1)  # never back, and not an error
    with pytest.raises(InvariantViolation, match="applied index 3 is past the commit index 2"):
        lg.applied_to(3)
    assert lg.applied == 2


def test_handing_out_entries_past_the_last_index_raises():
    lg = _log(3)
    lg.append([Entry(1, 4, 0, b"x")])
    lg.handed_out(4)
    assert lg.unstable_to_hand_out() == []
    with pytest.raises(InvariantViolation, match="handed out up to 5, past the last index 4"):
        lg.handed_out(5)
    assert lg.handed_to == 4


def test_a_durability_mark_past_a_truncated_log_is_ignored():
    """stable_to keeps etcd's rule: a mark for entries a new leader has since replaced is
    stale, not a violation (on_persisted checks the Ready was handed out)."""
    lg = _log(3)
    lg.append([Entry(1, 4, 0, b"a"), Entry(1, 5, 0, b"b")])
    lg.handed_out(5)
    # A new leader's entry replaces index 4 and drops 5.
    assert lg.maybe_append(3, 1, 0, [Entry(2, 4, 0, b"c")]) == 4
    lg.stable_to(5, 1)
    assert [(e.index, e.term) for e in lg.unstable] == [(4, 2)] and lg.unstable_offset == 4
    assert lg.handed_to == 3 and lg.last_index == 4


def test_durability_of_a_ready_never_handed_out_raises():
    core = RaftCore(1, RaftConfig(), random.Random(0), peers=[2, 3])
    core.campaign()
    rd = core.ready()
    core.on_persisted(rd.number)
    core.advance(rd)
    with pytest.raises(InvariantViolation, match="reported durable"):
        core.on_persisted(rd.number + 1)


def test_term_going_back_raises():
    core = RaftCore(1, RaftConfig(), random.Random(0), peers=[2, 3])
    core.become_follower(5, 0)
    with pytest.raises(InvariantViolation, match="term would go back from 5 to 4"):
        core.become_follower(4, 0)
    assert core.term == 5


def test_a_quorum_matching_past_the_leaders_log_raises():
    net = Network([1, 2, 3])
    net.elect(1)
    core = net.core(1)
    last = core.last_index
    for peer in (2, 3):
        core.tracker.progress[peer].match_index = last + 3  # a broken match update
    with pytest.raises(InvariantViolation, match="past our last index"):
        core.propose(b"x")
        net.deliver()


def test_the_state_that_broke_is_described():
    net = Network([1, 2, 3])
    net.elect(1)
    text = describe_core(net.core(1))
    assert text.startswith("node 1 leader t1 v1 lead1 ")
    assert "commit1" in text and "last1@1" in text
