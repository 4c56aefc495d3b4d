"""Linearizable reads: ReadIndex (thesis §6.4), follower forwarding, and lease reads (§6.4.1)."""

from __future__ import annotations

import random

import pytest

from dengine.errors import NotLeader
from dengine.raft import Message, MessageType, RaftConfig, RaftCore, ReadState
from dengine.testing.raft_network import Network

MT = MessageType


def recorder(net: Network) -> list[Message]:
    seen: list[Message] = []
    net.hook = lambda m: seen.append(m) or True
    return seen


def test_read_index_batches_every_waiting_read_into_one_heartbeat_round():
    net = Network((1, 2, 3))
    net.elect(1)
    seen = recorder(net)
    leader = net.core(1)
    for ctx in (b"a", b"b", b"c"):
        leader.read_index(ctx)
    net.deliver()
    heartbeats = [m for m in seen if m.type == MT.HEARTBEAT]
    assert sorted(m.to for m in heartbeats) == [2, 3], "one round: one heartbeat per follower"
    assert net.peers[1].read_states == [ReadState(c, 1) for c in (b"a", b"b", b"c")]


def test_reads_arriving_while_a_round_is_in_flight_wait_for_the_next_one():
    net = Network((1, 2, 3))
    net.elect(1)
    seen = recorder(net)
    leader = net.core(1)
    leader.read_index(b"a")
    assert net.process(1)  # round 1 goes out; its heartbeats are still queued
    for ctx in (b"b", b"c"):
        leader.read_index(ctx)
        assert not leader.has_ready(), "no second round while the first is in flight"
    assert [m.type for m in seen].count(MT.HEARTBEAT) == 2
    net.deliver()
    heartbeats = [m for m in seen if m.type == MT.HEARTBEAT]
    assert [m.index for m in heartbeats] == [1, 1, 2, 2], "b and c share round 2"
    assert net.peers[1].read_states == [ReadState(c, 1) for c in (b"a", b"b", b"c")]


def test_a_read_whose_round_lost_its_acks_goes_out_with_the_next_heartbeat():
    net = Network((1, 2, 3))
    net.elect(1)
    leader = net.core(1)
    net.drop_types(MT.HEARTBEAT_RESP)
    leader.read_index(b"a")
    net.deliver()
    leader.read_index(b"b")
    net.deliver()
    assert net.peers[1].read_states == []
    net.heal()
    net.tick([1], n=net.core(1).cfg.heartbeat_ticks)
    assert net.peers[1].read_states == [ReadState(c, 1) for c in (b"a", b"b")]


def test_read_index_is_not_released_without_a_quorum_round():
    net = Network((1, 2, 3))
    net.elect(1)
    net.isolate(1)
    net.core(1).read_index(b"a")
    net.deliver()
    assert net.peers[1].read_states == []
    net.heal()
    net.tick([1])
    assert net.peers[1].read_states == [ReadState(b"a", 1)]


def test_read_index_records_the_commit_index_at_the_time_of_the_read():
    net = Network((1, 2, 3))
    net.elect(1)
    net.propose(1, b"x", b"y")
    net.core(1).read_index(b"r")
    net.deliver()
    assert net.peers[1].read_states == [ReadState(b"r", 3)]


def test_read_index_on_a_new_leader_is_delayed_until_its_noop_commits():
    net = Network((1, 2, 3))
    net.hook = lambda m: m.type != MT.APPEND_RESP  # no acks: the no-op does not commit
    net.elect(1)
    leader = net.core(1)
    assert leader.role.name == "LEADER" and leader.commit_index == 0
    leader.read_index(b"r")
    net.deliver()
    assert net.peers[1].read_states == []
    net.heal()
    net.tick([1])
    assert net.peers[1].read_states == [ReadState(b"r", 1)]


def test_read_state_is_released_only_once_the_applied_index_reaches_it():
    # A follower's read: the leader answers with its commit index, which the follower has
    # not applied yet (its appends are lost); the read waits until it has.
    net = Network((1, 2, 3))
    net.elect(1)
    net.hook = lambda m: not (m.type == MT.APPEND and m.to == 2)
    net.propose(1, b"x")
    follower = net.core(2)
    follower.read_index(b"f")
    net.deliver()
    assert follower.applied_index == 1 and net.peers[2].read_states == []
    net.hook = None
    net.tick(n=1)
    assert net.applied_data(2) == [b"x"]
    assert net.peers[2].read_states == [ReadState(b"f", 2)]


def test_follower_read_index_is_forwarded_to_the_leader():
    net = Network((1, 2, 3))
    net.elect(1)
    seen = recorder(net)
    net.core(3).read_index(b"f")
    net.deliver()
    types = [(m.type, m.from_, m.to) for m in seen if m.type in (MT.READ_INDEX,
                                                                 MT.READ_INDEX_RESP)]
    assert types == [(MT.READ_INDEX, 3, 1), (MT.READ_INDEX_RESP, 1, 3)]
    assert [m.type for m in seen].count(MT.HEARTBEAT) == 2
    assert net.peers[3].read_states == [ReadState(b"f", 1)]


def test_follower_read_index_fails_when_its_leader_changes():
    net = Network((1, 2, 3))
    net.elect(1)
    net.isolate(1)
    net.core(3).read_index(b"orphan")
    net.deliver()
    net.silence(2, 3)
    net.elect(2)
    assert net.leader() == 2
    assert net.peers[3].read_states == [ReadState(b"orphan", 0, failed=True)]


def test_a_deposed_leader_refuses_a_stale_forwarded_read_with_its_newer_term():
    """Figure 2, "all servers": a stale-term request is answered with the current term. A read
    forwarded to a leader that has since been deposed is refused, so the forwarder learns the
    newer term and its read fails (the caller retries) instead of waiting forever."""
    net = Network((1, 2, 3))
    net.elect(1)
    old_term = net.core(1).term
    net.isolate(3)
    net.silence(1, 2)
    net.elect(2)
    assert net.leader() == 2 and net.core(1).term > old_term
    net.heal()
    net.cut(2, 3)  # 3 hears from no leader of the new term: only 1's answer can tell it
    seen = recorder(net)
    net.core(3).read_index(b"late")
    net.deliver()
    replies = [m for m in seen if m.type == MT.READ_INDEX_RESP]
    assert [(m.from_, m.to, m.reject, m.term) for m in replies] == [
        (1, 3, True, net.core(1).term)
    ]
    assert net.core(3).term == net.core(1).term
    assert net.peers[3].read_states == [ReadState(b"late", 0, failed=True)]


def test_a_stale_forwarded_read_from_a_node_outside_our_config_is_refused_too():
    """A node added by a change that a later leader rolled back forwards reads to the leader
    that added it: once deposed, that node no longer knows the sender, but still answers."""
    core = RaftCore(1, RaftConfig(), random.Random(1), peers=[2, 3])
    core.term = 4
    core.step(Message(MT.READ_INDEX, 1, 9, term=2, context=b"r"))
    rd = core.ready()
    assert rd.dropped == []
    assert [(m.type, m.to, m.term, m.reject, m.context) for m in rd.messages] == [
        (MT.READ_INDEX_RESP, 9, 4, True, b"r")
    ]


def test_follower_read_index_with_no_leader_raises_not_leader():
    net = Network((1, 2, 3))
    with pytest.raises(NotLeader):
        net.core(2).read_index(b"x")


def test_read_index_fails_when_the_leader_loses_leadership():
    net = Network((1, 2, 3))
    net.elect(1)
    net.isolate(1)
    net.core(1).read_index(b"lost")
    net.tick([1], n=net.config.election_ticks * 2)
    assert net.core(1).role.name == "FOLLOWER"
    assert net.peers[1].read_states == [ReadState(b"lost", 0, failed=True)]


def test_lease_read_is_served_without_a_heartbeat_round_while_the_lease_holds():
    net = Network((1, 2, 3), RaftConfig(election_ticks=10, lease_ticks=8))
    net.elect(1)
    net.tick(n=1)  # one confirmed heartbeat round starts the lease
    leader = net.core(1)
    assert leader.lease_valid()
    seen = recorder(net)
    leader.read_index(b"lease", lease=True)
    net.deliver()
    assert not [m for m in seen if m.type == MT.HEARTBEAT]
    assert net.peers[1].read_states == [ReadState(b"lease", 1)]


def test_lease_expires_without_quorum_contact_and_reads_fall_back_to_a_round():
    net = Network((1, 2, 3), RaftConfig(election_ticks=10, lease_ticks=8))
    net.elect(1)
    net.tick(n=1)
    net.isolate(1)
    net.tick([1], n=8)
    leader = net.core(1)
    assert leader.role.name == "LEADER" and not leader.lease_valid()
    leader.read_index(b"late", lease=True)
    net.deliver()
    assert net.peers[1].read_states == []


def test_lease_is_void_once_a_leadership_transfer_sent_timeout_now():
    net = Network((1, 2, 3))
    net.elect(1)
    net.tick(n=1)
    net.drop_types(MT.TIMEOUT_NOW)
    net.core(1).transfer_leader(2)
    net.deliver()
    assert not net.core(1).lease_valid()


def test_lease_needs_check_quorum():
    net = Network((1, 2, 3), RaftConfig(check_quorum=False))
    net.elect(1)
    net.tick(n=1)
    assert not net.core(1).lease_valid()


def test_single_node_read_index_is_immediate():
    net = Network((1,))
    net.elect(1)
    net.core(1).read_index(b"solo")
    net.deliver()
    assert net.peers[1].read_states == [ReadState(b"solo", 1)]


# -- the Reads component ---------------------------------------------------------------------
def test_reads_component_owns_forwarded_reads_and_their_answers():
    from dengine.raft.read_only import Reads

    r = Reads()
    r.forward(b"a", 2)
    r.forward(b"b", 2)
    assert r.forwarded_to(b"a") == 2 and r.forwarded_to(b"x") == 0
    assert not r.on_answer(b"x", 5, False)  # never forwarded
    assert r.on_answer(b"b", 7, False)
    assert r.on_answer(b"a", 3, False)
    assert not r.has_ready(2) and r.has_ready(3)
    assert [rs.context for rs in r.take(5)] == [b"a"]  # by index: b waits for 7
    r.forward(b"c", 2)
    r.fail_forwarded()
    assert [(rs.context, rs.failed) for rs in r.take(0)] == [(b"c", True)]
    assert [rs.context for rs in r.take(7)] == [b"b"]


def test_reads_component_fails_local_and_returns_remote_reads_on_lost_leadership():
    from dengine.raft.read_only import Reads

    r = Reads()
    r.on_become_leader()
    r.rounds.add(b"local", 4, 1)
    r.rounds.add(b"remote", 4, 3)
    r.wait_for_commit(b"later", 2, False)
    assert r.lose_leadership(1) == [(b"remote", 3), (b"later", 2)]
    assert [(rs.context, rs.failed) for rs in r.take(0)] == [(b"local", True)]
    assert not r.rounds.pending and not r.until_commit


def test_a_voided_lease_holds_no_more_until_the_next_role_change():
    from dengine.raft.read_only import Reads

    r = Reads()
    r.rounds.lease_start = 10
    assert r.lease_holds(12, 5) and not r.lease_holds(15, 5)
    r.void_lease()
    assert not r.lease_holds(12, 5)
    r.new_leadership()
    assert r.lease_holds(12, 5)


def test_lease_ticks_are_checked_against_the_election_timeout_and_the_clock_drift():
    from dengine.errors import ConfigError
    from dengine.raft.config import lease_safe_max

    # lease * (1 + drift) <= (election - 1) * (1 - drift)
    assert lease_safe_max(10, 0.0) == 9
    assert lease_safe_max(10, 0.125) == 7
    assert lease_safe_max(10, 0.05) == 8
    RaftConfig(election_ticks=10, lease_ticks=7, max_clock_drift=0.125)
    with pytest.raises(ConfigError) as info:
        RaftConfig(election_ticks=10, lease_ticks=8, max_clock_drift=0.125)
    assert info.value.key == "raft.lease_ticks" and "max_clock_drift" in str(info.value)
    with pytest.raises(ConfigError) as info:
        RaftConfig(max_clock_drift=0.5)
    assert info.value.key == "raft.max_clock_drift"
