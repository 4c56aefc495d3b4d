"""Membership changes: joint consensus (thesis §4.3), the simple path, learners, validation."""

from __future__ import annotations

import pytest

from dengine.errors import ConfChangeError
from dengine.raft import Role
from dengine.raft.confchange import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    decode_conf_change,
    encode_conf_change,
)
from dengine.raft.types import ConfState
from dengine.testing.raft_network import Network

ADD, REMOVE, LEARNER = ConfChangeType.ADD_VOTER, ConfChangeType.REMOVE_NODE, ConfChangeType.ADD_LEARNER


def cc(*changes: tuple[ConfChangeType, int], transition=ConfChangeTransition.AUTO) -> ConfChange:
    return ConfChange(tuple(ConfChangeSingle(t, n) for t, n in changes), transition)


def voters(net: Network, i: int) -> set[int]:
    return set(net.core(i).conf_state.voters)


def test_conf_change_round_trips_through_its_encoding():
    change = ConfChange((ConfChangeSingle(ADD, 7), ConfChangeSingle(REMOVE, 1 << 40)),
                        ConfChangeTransition.JOINT_EXPLICIT, b"ctx")
    assert decode_conf_change(encode_conf_change(change)) == change


def test_add_a_learner_then_promote_it():
    net = Network((1, 2, 3))
    net.elect(1)
    net.propose(1, b"a")
    net.add_node(4)
    net.core(1).propose_conf_change(cc((LEARNER, 4)))
    net.deliver()
    net.tick(n=2)
    assert net.core(4).role == Role.LEARNER
    assert net.core(1).conf_state.learners == {4}
    assert net.applied_data(4) == [b"a"]
    # A learner does not count: with 2 and 3 cut, nothing commits.
    net.cut(1, 2)
    net.cut(1, 3)
    net.core(1).propose(b"b")
    net.deliver()
    assert net.core(1).commit_index < net.core(1).last_index
    net.heal()
    net.tick(n=2)
    net.core(1).propose_conf_change(cc((ADD, 4)))
    net.deliver()
    net.tick(n=2)
    assert voters(net, 1) == {1, 2, 3, 4} and net.core(4).role == Role.FOLLOWER
    assert all(voters(net, i) == {1, 2, 3, 4} for i in net.ids)


def test_config_takes_effect_when_appended_not_when_committed():
    net = Network((1, 2, 3))
    net.elect(1)
    net.cut(1, 2)
    net.cut(1, 3)
    net.add_node(4)
    net.core(1).propose_conf_change(cc((ADD, 4)))
    net.deliver()
    assert voters(net, 1) == {1, 2, 3, 4}
    assert net.core(1).commit_index < net.core(1).last_index


def test_only_one_change_may_be_pending():
    net = Network((1, 2, 3))
    net.elect(1)
    net.isolate(1)
    net.core(1).propose_conf_change(cc((LEARNER, 4)))
    with pytest.raises(ConfChangeError):
        net.core(1).propose_conf_change(cc((LEARNER, 5)))


@pytest.mark.parametrize(
    "change, why",
    [
        (cc((REMOVE, 1), (REMOVE, 2), (REMOVE, 3)), "every voter"),
        (cc((ADD, 2)), "already a voter"),
        (cc((REMOVE, 9)), "not a member"),
        (cc((ADD, 4), (ADD, 5), transition=ConfChangeTransition.AUTO), None),
    ],
)
def test_invalid_changes_are_refused_with_a_typed_error(change, why):
    net = Network((1, 2, 3))
    net.elect(1)
    if why is None:
        net.core(1).propose_conf_change(change)  # several voters: a joint change, allowed
        return
    with pytest.raises(ConfChangeError, match=why):
        net.core(1).propose_conf_change(change)


def test_promoting_a_node_that_is_not_a_learner_is_refused_and_adding_a_learner_twice_too():
    net = Network((1, 2, 3), learners=(4,))
    net.elect(1)
    with pytest.raises(ConfChangeError, match="already a learner"):
        net.core(1).propose_conf_change(cc((LEARNER, 4)))
    with pytest.raises(ConfChangeError, match="already a voter"):
        net.core(1).propose_conf_change(cc((ADD, 3)))


def test_joint_consensus_replaces_the_leader_and_is_left_automatically():
    net = Network((1, 2, 3))
    net.elect(1)
    net.add_node(4)
    net.core(1).propose_conf_change(cc((ADD, 4), (REMOVE, 1)))
    net.deliver()
    net.tick(n=3)
    for i in (2, 3, 4):
        cs = net.core(i).conf_state
        assert cs.voters == {2, 3, 4} and not cs.joint, f"node {i} left the joint config"
    # The old leader stepped down once the change that removed it committed.
    assert net.core(1).role != Role.LEADER
    for _ in range(60):
        net.tick([2, 3, 4])
        if net.leader() in (2, 3, 4):
            break
    new = net.leader()
    assert new in (2, 3, 4)
    net.propose(new, b"after")
    assert all(net.applied_data(i)[-1:] == [b"after"] for i in (2, 3, 4))


def test_joint_consensus_needs_a_majority_of_both_configs():
    net = Network((1, 2, 3))
    net.elect(1)
    for i in (4, 5, 6):
        net.add_node(i)
    # Replace 2 and 3 by 4, 5, 6: while joint, a decision needs {1,2,3} and {1,4,5,6}.
    net.cut(1, 2)
    net.cut(1, 3)
    net.core(1).propose_conf_change(cc((ADD, 4), (ADD, 5), (ADD, 6), (REMOVE, 2), (REMOVE, 3)))
    net.deliver()
    net.tick([1, 4, 5, 6], n=3)
    assert net.core(1).conf_state.joint
    assert net.core(1).commit_index < net.core(1).last_index, "old majority missing"
    net.heal()
    net.tick([1, 2, 3, 4, 5, 6], n=3)
    assert voters(net, 1) == {1, 4, 5, 6} and not net.core(1).conf_state.joint


def test_remove_a_majority_at_once_through_joint_consensus():
    net = Network((1, 2, 3, 4, 5))
    net.elect(1)
    net.core(1).propose_conf_change(cc((REMOVE, 3), (REMOVE, 4), (REMOVE, 5)))
    net.deliver()
    net.tick(n=3)
    assert voters(net, 1) == {1, 2} and voters(net, 2) == {1, 2}
    net.crash(3)
    net.crash(4)
    net.crash(5)
    net.propose(1, b"two is a quorum now")
    assert net.applied_data(2)[-1] == b"two is a quorum now"


def test_a_follower_truncating_a_config_entry_reverts_to_the_previous_config():
    net = Network((1, 2, 3, 4, 5))
    net.elect(1)
    for j in (3, 4, 5):
        net.cut(1, j)
    net.hook = lambda m: not (m.type.name == "APPEND_RESP" and m.from_ == 2)
    net.core(1).propose_conf_change(cc((LEARNER, 9)))
    net.deliver()
    assert net.core(2).conf_state.learners == {9}, "appended: in force on node 2"
    assert net.core(1).commit_index < net.core(1).last_index
    # Node 1 is cut off; 3 leads (with 4 and 5) and overwrites the config entry on 2.
    net.hook = None
    net.heal()
    net.isolate(1)
    net.silence(2, 3, 4, 5)
    net.elect(3)
    assert net.leader() == 3
    net.propose(3, b"x")
    assert net.core(2).conf_state.learners == frozenset()
    assert net.core(2).conf_state == ConfState(voters=frozenset({1, 2, 3, 4, 5}))


def test_a_removed_node_cannot_disturb_the_cluster():
    net = Network((1, 2, 3))
    net.elect(1)
    net.core(1).propose_conf_change(cc((REMOVE, 3)))
    net.deliver()
    net.tick(n=2)
    assert voters(net, 1) == {1, 2}
    net.tick([3], n=100)
    assert net.leader() == 1 and net.core(1).term == 1


def test_restart_replays_configs_from_the_log():
    net = Network((1, 2, 3))
    net.elect(1)
    net.core(1).propose_conf_change(cc((LEARNER, 4)))
    net.deliver()
    net.crash(2)
    net.restart(2)
    assert net.core(2).conf_state.learners == {4}


def test_a_rejected_append_does_not_undo_a_config_appended_before():
    import random

    from dengine.raft import Entry, EntryKind, Message, MessageType, RaftConfig, RaftCore

    core = RaftCore(4, RaftConfig(), random.Random(4), conf_state=ConfState(voters={1, 2, 3}))
    change = encode_conf_change(cc((LEARNER, 4)))
    entries = (Entry(1, 1), Entry(1, 2, EntryKind.CONF_CHANGE, change), Entry(1, 3))
    core.step(Message(MessageType.APPEND, 4, 1, term=1, index=0, entries=entries))
    assert core.conf_state.learners == {4}
    core.step(Message(MessageType.APPEND, 4, 1, term=1, index=6, log_term=1))  # rejected
    assert core.conf_state.learners == {4}


def test_explicit_joint_config_is_left_only_when_asked():
    net = Network((1, 2, 3))
    net.elect(1)
    net.add_node(4)
    net.core(1).propose_conf_change(
        cc((ADD, 4), transition=ConfChangeTransition.JOINT_EXPLICIT)
    )
    net.deliver()
    net.tick(n=3)
    assert net.core(1).conf_state.joint
    with pytest.raises(ConfChangeError, match="joint"):
        net.core(1).propose_conf_change(cc((LEARNER, 5)))
    net.core(1).propose_conf_change(ConfChange())
    net.deliver()
    assert voters(net, 1) == {1, 2, 3, 4} and not net.core(1).conf_state.joint


def test_demoting_a_voter_to_learner_through_a_joint_config():
    net = Network((1, 2, 3, 4))
    net.elect(1)
    net.core(1).propose_conf_change(cc((LEARNER, 4), (LEARNER, 3)))
    net.deliver()
    net.tick(n=3)
    cs = net.core(2).conf_state
    assert cs.voters == {1, 2} and cs.learners == {3, 4} and not cs.joint
    assert net.core(3).role == Role.LEARNER
    net.propose(1, b"x")
    assert net.applied_data(4) == [b"x"]


def test_a_node_left_out_of_an_uncommitted_config_still_campaigns():
    # Thesis §4.2.2: a server not in its own latest config still starts elections while that
    # config is uncommitted, without counting its own vote; it may be the only one whose log
    # can win. Here node 1 alone holds the entry removing it.
    net = Network((1, 2, 3))
    net.elect(1)
    net.isolate(1)
    net.core(1).propose_conf_change(cc((REMOVE, 1)))
    net.deliver()
    net.tick([1], n=25)  # check-quorum: it steps down, the removal still uncommitted
    assert voters(net, 1) == {2, 3} and net.core(1).role != Role.LEADER
    assert net.core(1).promotable
    net.heal()
    net.silence(2, 3)
    net.elect(1)
    net.elect(1)  # the first pre-vote taught it the term; it wins with 2 and 3's votes
    net.tick([1], n=1)
    assert all(voters(net, i) == {2, 3} for i in (1, 2, 3))
    assert net.core(1).commit_index == net.core(2).commit_index == net.core(1).last_index
    assert net.core(1).role == Role.LEARNER and not net.core(1).promotable
