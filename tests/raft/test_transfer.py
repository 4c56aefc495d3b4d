"""Leadership transfer (Raft thesis §3.10)."""

from __future__ import annotations

import pytest

from dengine.errors import ProposalDropped
from dengine.raft import Message, MessageType, Role
from dengine.testing.raft_network import Network

MT = MessageType


def test_transfer_to_an_up_to_date_follower_sends_timeout_now_and_it_wins():
    net = Network((1, 2, 3))
    net.elect(1)
    seen: list[Message] = []
    net.hook = lambda m: seen.append(m) or True
    net.core(1).transfer_leader(3)
    net.deliver()
    assert net.leader() == 3 and net.core(3).term == 2
    assert net.core(1).role == Role.FOLLOWER and net.core(1).leader_id == 3
    types = [m.type for m in seen]
    assert MT.TIMEOUT_NOW in types
    assert MT.PRE_VOTE not in types, "the target bypasses pre-vote"


def test_transfer_target_campaigns_past_leader_stickiness():
    net = Network((1, 2, 3))
    net.elect(1)
    net.core(1).transfer_leader(2)
    net.deliver()
    assert net.leader() == 2
    assert not any("stickiness" in d.reason for p in net.peers.values() for d in p.dropped)


def test_transfer_to_a_lagging_follower_first_brings_it_up_to_date():
    net = Network((1, 2, 3))
    net.elect(1)
    net.cut(1, 3)
    net.propose(1, b"a", b"b")
    net.heal()
    assert net.core(3).last_index == 1
    net.core(1).transfer_leader(3)
    net.deliver()
    assert net.leader() == 3
    assert net.applied_data(3)[:2] == [b"a", b"b"]


def test_transfer_in_progress_refuses_proposals():
    net = Network((1, 2, 3))
    net.elect(1)
    net.isolate(3)
    net.core(1).transfer_leader(3)
    net.deliver()
    with pytest.raises(ProposalDropped):
        net.core(1).propose(b"x")


def test_transfer_is_abandoned_after_an_election_timeout():
    net = Network((1, 2, 3))
    net.elect(1)
    net.isolate(3)
    leader = net.core(1)
    leader.transfer_leader(3)
    net.deliver()
    assert leader.lead_transferee == 3
    net.tick([1], n=net.config.election_ticks - 1)
    assert leader.lead_transferee == 3
    net.tick([1], n=1)
    assert leader.lead_transferee == 0 and leader.role == Role.LEADER
    leader.propose(b"after")
    net.deliver()
    assert net.applied_data(2) == [b"after"]


def test_transfer_request_on_a_follower_is_forwarded_to_the_leader():
    net = Network((1, 2, 3))
    net.elect(1)
    net.core(2).transfer_leader(3)
    net.deliver()
    assert net.leader() == 3


def test_transfer_to_a_learner_or_to_itself_is_refused():
    net = Network((1, 2, 3), learners=(3,))
    net.elect(1)
    with pytest.raises(ValueError):
        net.core(1).transfer_leader(3)
    with pytest.raises(ValueError):
        net.core(1).transfer_leader(1)
    assert net.core(1).lead_transferee == 0


def test_timeout_now_from_a_stale_term_is_dropped():
    net = Network((1, 2, 3))
    net.elect(1)
    net.core(1).transfer_leader(2)
    net.deliver()
    net.core(3).step(Message(MT.TIMEOUT_NOW, 3, 1, term=1))
    assert net.core(3).role == Role.FOLLOWER and net.core(3).term == 2
