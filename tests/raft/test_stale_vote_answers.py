"""A vote answer of a newer term reaching a node that hears a leader (or restarted lately) is
stale: the campaign it answers ended before. Taking its term would drop the leader whose
lease the node's acks may hold, and a vote request of that same term would then be granted
at once (stickiness checks only requests that raise the term). The simulator found this with
late copies of old answers (seed 26475)."""

from __future__ import annotations

import random

from dengine.raft.config import RaftConfig
from dengine.raft.core import RaftCore
from dengine.raft.messages import Message
from dengine.raft.messages import MessageType as MT


def _follower_of_2() -> RaftCore:
    core = RaftCore(1, RaftConfig(), random.Random(1), peers=[2, 3])
    assert core.cfg.check_quorum
    core.step(Message(MT.HEARTBEAT, 1, 2, term=1))
    assert core.term == 1 and core.leader_id == 2
    return core


def test_a_stale_pre_vote_refusal_of_a_newer_term_keeps_the_leader_and_the_lease() -> None:
    core = _follower_of_2()
    core.step(Message(MT.PRE_VOTE_RESP, 1, 3, term=2, reject=True))
    assert (core.term, core.leader_id) == (1, 2)
    core.step(Message(MT.VOTE, 1, 3, term=2, index=0, log_term=0))
    assert (core.term, core.vote, core.leader_id) == (1, 0, 2)


def test_a_stale_vote_answer_of_a_newer_term_is_dropped_too() -> None:
    core = _follower_of_2()
    core.step(Message(MT.VOTE_RESP, 1, 3, term=2, reject=True))
    assert (core.term, core.leader_id) == (1, 2)


def test_a_candidate_still_learns_a_newer_term_from_a_refusal() -> None:
    core = RaftCore(1, RaftConfig(), random.Random(1), peers=[2, 3])
    core.campaign()
    term = core.term
    core.step(Message(MT.VOTE_RESP, 1, 3, term=term + 3, reject=True))
    assert core.term == term + 3


def test_a_newer_term_from_a_read_refusal_keeps_the_lease_promise() -> None:
    """The forwarder learns the newer term from a refused read (it must), but a vote request
    of that term is still refused for an election timeout: its acks may hold a lease (the
    simulator's seed 27896)."""
    core = _follower_of_2()
    core.step(Message(MT.READ_INDEX_RESP, 1, 3, term=2, reject=True, context=b"old"))
    assert core.term == 2
    core.step(Message(MT.VOTE, 1, 3, term=2, index=0, log_term=0))
    assert core.vote == 0
    for _ in range(core.cfg.election_ticks):
        core.tick()
    # (an election timeout later the node may campaign itself; its vote is no longer held)
    assert not core.restart_guard
