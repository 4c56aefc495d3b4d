"""Leader election: Raft §5.2 and §5.4.1, pre-vote, check-quorum, stickiness (thesis §9.6)."""

from __future__ import annotations

import random

from dengine.raft import Message, MessageType, RaftConfig, RaftCore, Role
from dengine.raft.types import EntryKind, HardState
from dengine.testing.raft_network import Network

MT = MessageType


def test_election_a_node_whose_timeout_fires_is_elected_by_a_majority():
    net = Network((1, 2, 3))
    # Only node 2 ticks: its randomized timeout fires first and it wins.
    for _ in range(40):
        net.tick([2])
        if net.leader():
            break
    assert net.leader() == 2
    assert [net.core(i).term for i in (1, 2, 3)] == [1, 1, 1]
    assert net.core(1).leader_id == 2 and net.core(3).leader_id == 2


def test_election_timeout_is_randomized_from_the_injected_rng():
    cfg = RaftConfig(election_ticks=10)

    def timeouts(seed: int) -> list[int]:
        core = RaftCore(1, cfg, random.Random(seed), peers=[2, 3])
        out = []
        for term in range(20):
            core.become_follower(term + 1, 0)
            out.append(core.randomized_election_timeout)
        return out

    a, b = timeouts(7), timeouts(8)
    assert a == timeouts(7), "same seed, same timeouts"
    assert a != b
    assert all(10 <= t < 20 for t in a + b)
    assert len(set(a)) > 3


def test_election_needs_a_majority_minority_partition_elects_nobody():
    net = Network((1, 2, 3, 4, 5), RaftConfig(pre_vote=False))
    for i in (1, 2):
        for j in (3, 4, 5):
            net.cut(i, j)
    net.elect(1)
    assert net.core(1).role == Role.CANDIDATE
    net.elect(3)
    assert net.leader() == 3


def test_one_vote_per_term_a_voter_never_votes_twice_in_a_term():
    core = RaftCore(1, RaftConfig(pre_vote=False), random.Random(1), peers=[2, 3])
    core.step(Message(MT.VOTE, 1, 2, term=5))
    core.step(Message(MT.VOTE, 1, 3, term=5))
    rd = core.ready()
    votes = rd.persisted_messages
    assert [(m.to, m.reject) for m in votes] == [(2, False), (3, True)]
    assert core.vote == 2 and core.term == 5


def test_election_restriction_vote_refused_to_a_candidate_with_an_older_log():
    # Raft §5.4.1: the voter's last entry has a higher term than the candidate's.
    net = Network((1, 2, 3), RaftConfig(pre_vote=False))
    net.preload(1, [1, 1], term=2)
    net.preload(2, [1, 2], term=2)
    net.preload(3, [1, 2], term=2)
    net.elect(1)
    assert net.core(1).role != Role.LEADER
    net.elect(2)
    assert net.leader() == 2


def test_election_restriction_same_last_term_longer_log_wins():
    core = RaftCore(1, RaftConfig(pre_vote=False), random.Random(1), peers=[2, 3])
    net = Network((1, 2, 3), RaftConfig(pre_vote=False))
    net.preload(1, [1, 1, 1], term=1)
    core = net.core(1)
    core.step(Message(MT.VOTE, 1, 2, term=2, log_term=1, index=2))
    core.step(Message(MT.VOTE, 1, 3, term=3, log_term=1, index=3))
    rd = core.ready()
    assert [(m.from_, m.to, m.reject) for m in rd.persisted_messages] == [
        (1, 2, True), (1, 3, False)
    ]


def test_candidate_steps_down_on_an_append_from_a_leader_of_its_term():
    net = Network((1, 2, 3), RaftConfig(pre_vote=False))
    net.isolate(3)
    net.elect(3)
    assert net.core(3).role == Role.CANDIDATE and net.core(3).term == 1
    net.heal()
    net.elect(1)  # term 2 (3's candidacy bumped nothing on 1 and 2 while cut)
    net.tick([1])
    assert net.core(3).role == Role.FOLLOWER
    assert net.core(3).leader_id == 1


def test_noop_entry_a_new_leader_appends_an_empty_entry_of_its_term():
    net = Network((1, 2, 3))
    net.elect(1)
    core = net.core(1)
    last = core.entries_for_test()[-1]
    assert (last.index, last.term, last.kind, last.data) == (1, 1, EntryKind.NORMAL, b"")
    assert all(net.core(i).commit_index == 1 for i in (1, 2, 3))


def test_noop_entry_commits_entries_of_previous_terms():
    net = Network((1, 2, 3))
    net.preload(1, [1, 1], term=1)
    net.preload(2, [1, 1], term=1)
    net.preload(3, [1], term=1)
    net.elect(1)
    assert net.core(1).term == 2
    # The no-op at index 3 (term 2) commits, and with it the term-1 entries before it.
    assert [net.core(i).commit_index for i in (1, 2, 3)] == [3, 3, 3]


def test_pre_vote_a_partitioned_node_does_not_raise_its_term_nor_disturb_the_leader():
    net = Network((1, 2, 3))
    net.elect(1)
    net.isolate(3)
    net.tick([3], n=100)
    assert net.core(3).term == 1, "pre-vote failures never bump the term"
    assert net.core(3).role == Role.PRE_CANDIDATE
    net.heal()
    net.tick(n=2)
    assert net.leader() == 1 and net.core(1).term == 1
    assert net.core(3).role == Role.FOLLOWER and net.core(3).leader_id == 1


def test_without_pre_vote_a_partitioned_node_disturbs_the_cluster():
    # The control for the test above: the same schedule without pre-vote deposes the leader.
    net = Network((1, 2, 3), RaftConfig(pre_vote=False))
    net.elect(1)
    net.isolate(3)
    net.tick([3], n=100)
    assert net.core(3).term > 1
    net.heal()
    net.tick(n=2)
    assert net.core(1).term > 1


def test_pre_vote_granted_pre_candidate_then_campaigns_for_real():
    net = Network((1, 2, 3))
    seen = []
    net.hook = lambda m: seen.append(m.type) or True
    net.elect(1)
    assert seen[:2] == [MT.PRE_VOTE, MT.PRE_VOTE]
    assert MT.VOTE in seen and net.leader() == 1 and net.core(1).term == 1


def test_check_quorum_an_isolated_leader_steps_down_after_an_election_timeout():
    # Contact is checked once per election timeout (etcd's window), so a leader cut off
    # steps down after one to two election timeouts: never before one, always by two.
    net = Network((1, 2, 3))
    net.elect(1)
    et = net.config.election_ticks
    net.tick([1], n=3)
    net.isolate(1)
    net.tick([1], n=et - 1)
    assert net.core(1).role == Role.LEADER
    net.tick([1], n=et + 1)
    assert net.core(1).role == Role.FOLLOWER and net.core(1).leader_id == 0


def test_check_quorum_a_leader_in_contact_with_a_quorum_stays():
    net = Network((1, 2, 3))
    net.elect(1)
    net.isolate(3)
    net.tick([1], n=net.config.election_ticks * 3)
    assert net.core(1).role == Role.LEADER


def test_check_quorum_off_an_isolated_leader_stays():
    net = Network((1, 2, 3), RaftConfig(check_quorum=False, lease_ticks=0))
    net.elect(1)
    net.isolate(1)
    net.tick([1], n=net.config.election_ticks * 3)
    assert net.core(1).role == Role.LEADER


def test_stickiness_a_follower_that_hears_from_a_live_leader_ignores_votes():
    net = Network((1, 2, 3))
    net.elect(1)
    core = net.core(2)
    vote = Message(MT.VOTE, 2, 3, term=5, log_term=1, index=1)
    core.step(vote)
    rd = core.ready()
    assert core.term == 1 and core.vote == 1
    assert [d.reason for d in rd.dropped] == ["vote request while a leader is live (stickiness)"]
    assert not rd.messages and not rd.persisted_messages
    core.advance(rd)
    # After an election timeout with no word from the leader, it votes again.
    for _ in range(net.config.election_ticks):
        core.election_elapsed += 1
    core.step(vote)
    assert core.term == 5 and core.vote == 3


def test_learner_never_campaigns():
    net = Network((1, 2, 3), learners=(3,))
    net.elect(1)
    assert net.core(3).role == Role.LEARNER
    net.isolate(1)
    net.tick([3], n=200)
    assert net.core(3).role == Role.LEARNER and net.core(3).term == 1
    net.core(3).campaign()
    assert "learner" in net.core(3).ready().dropped[0].reason


def test_learner_receives_the_log_but_does_not_count_in_the_quorum():
    net = Network((1, 2, 3), learners=(3,))
    net.elect(1)
    net.propose(1, b"x")
    assert net.applied_data(3) == [b"x"]
    net.cut(1, 2)
    net.core(1).propose(b"y")
    net.deliver()
    assert net.core(1).commit_index == 2, "the learner's ack is not a quorum with the leader"


def test_votes_leave_only_after_the_term_and_vote_are_persisted():
    core = RaftCore(1, RaftConfig(pre_vote=False), random.Random(1), peers=[2, 3])
    core.campaign()
    rd = core.ready()
    assert rd.hard_state is not None and rd.hard_state.vote == 1
    assert not rd.messages
    assert {m.type for m in rd.persisted_messages} == {MT.VOTE}
    core2 = RaftCore(2, RaftConfig(pre_vote=False), random.Random(2), peers=[1, 3])
    core2.step(rd.persisted_messages[0])
    rd2 = core2.ready()
    assert rd2.hard_state.vote == 1 and not rd2.messages
    assert [m.type for m in rd2.persisted_messages] == [MT.VOTE_RESP]


def test_restart_keeps_term_vote_and_log():
    net = Network((1, 2, 3))
    net.elect(1)
    net.propose(1, b"a", b"b")
    net.crash(2)
    net.propose(1, b"c")
    net.restart(2)
    core = net.core(2)
    assert (core.term, core.vote) == (1, 1)
    assert core.last_index == 3
    net.tick(n=2)
    assert net.applied_data(2) == [b"a", b"b", b"c"]


def test_restart_with_a_lagging_saved_commit_does_not_reapply_entries():
    net = Network((1, 2, 3))
    net.elect(1)
    net.propose(1, b"a", b"b")
    p = net.peers[2]
    p.hard_state = HardState(p.hard_state.term, p.hard_state.vote, commit=1)  # saved lazily
    net.crash(2)
    net.restart(2)
    assert net.core(2).commit_index == 3 and net.core(2).applied_index == 3
    net.tick(n=2)
    assert net.applied_data(2) == [b"a", b"b"]


def test_restarted_voter_refuses_votes_for_an_election_timeout():
    # Leases (thesis §6.4.1): before a crash this voter may have acked a leader whose lease
    # still counts on it, so after a restart it acts as if it hears from a live leader.
    cfg = RaftConfig(pre_vote=False, check_quorum=True)
    core = RaftCore(1, cfg, random.Random(1), peers=[2, 3], hard_state=HardState(term=2))
    core.step(Message(MT.VOTE, 1, 2, term=3, log_term=0, index=0))
    if core.has_ready():
        rd = core.ready()
        assert not rd.persisted_messages and not rd.messages
        core.advance(rd)
    assert core.term == 2
    fresh = RaftCore(1, cfg, random.Random(1), peers=[2, 3])
    for _ in range(cfg.election_ticks):
        core.tick()
    core.step(Message(MT.VOTE, 1, 2, term=3, log_term=0, index=0))
    rd = core.ready()
    assert [(m.to, m.reject) for m in rd.persisted_messages] == [(2, False)]
    # A node that never ran (no saved term) has no lease to protect and votes at once.
    fresh.step(Message(MT.VOTE, 1, 2, term=1, log_term=0, index=0))
    assert [(m.to, m.reject) for m in fresh.ready().persisted_messages] == [(2, False)]
