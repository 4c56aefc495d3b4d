"""Log replication and commit: Raft §5.3, §5.4.2 (figures 7 and 8), flow control, durability."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from dengine.errors import NotLeader
from dengine.raft import Message, MessageType, RaftConfig, RaftCore, Role
from dengine.raft.tracker import ProgressState
from dengine.testing.raft_network import Network

MT = MessageType

FIG7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIG7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


def terms_of(net: Network, i: int) -> list[int]:
    return [e.term for e in net.core(i).entries_for_test()]


def test_log_replication_an_entry_commits_once_a_majority_holds_it():
    net = Network((1, 2, 3, 4, 5))
    net.elect(1)
    net.cut(1, 4)
    net.cut(1, 5)
    idx = net.propose(1, b"x")
    assert net.core(1).commit_index == idx
    assert [net.applied_data(i) for i in (1, 2, 3, 4, 5)] == [[b"x"]] * 3 + [[], []]


def test_log_replication_no_commit_without_a_majority():
    net = Network((1, 2, 3, 4, 5))
    net.elect(1)
    for j in (3, 4, 5):
        net.cut(1, j)
    net.propose(1, b"x")
    assert net.core(1).commit_index == 1
    assert net.applied_data(1) == []
    net.heal()
    net.tick(n=1)
    assert all(net.applied_data(i) == [b"x"] for i in net.ids)


def test_propose_on_a_follower_raises_not_leader_with_the_leader_id():
    net = Network((1, 2, 3))
    net.elect(1)
    with pytest.raises(NotLeader) as info:
        net.core(2).propose(b"x")
    assert info.value.leader_id == 1


@pytest.mark.parametrize("case", sorted(FIG7_FOLLOWERS))
def test_figure7_every_follower_log_is_made_equal_to_the_leaders(case):
    # Raft figure 7: the leader of term 8 meets each of the follower logs (a)-(f). Node 3
    # holds the leader's log too, so node 1 wins whatever node 2 votes.
    net = Network((1, 2, 3))
    net.preload(1, FIG7_LEADER, term=7)
    net.preload(2, FIG7_FOLLOWERS[case], term=7)
    net.preload(3, FIG7_LEADER, term=7)
    rejects = []
    net.hook = lambda m: (m.type != MT.APPEND_RESP or not m.reject or rejects.append(m)) or True
    net.elect(1)
    assert net.leader() == 1 and net.core(1).term == 8
    assert terms_of(net, 2) == FIG7_LEADER + [8]
    # Fast backtracking: one rejected probe at most, whatever the divergence.
    assert len([m for m in rejects if m.from_ == 2]) <= 1
    assert net.core(2).commit_index == 11


def test_fast_backtracking_fixes_a_long_diverged_log_in_one_round_trip():
    net = Network((1, 2, 3))
    leader_log = [1] * 5 + [3] * 60
    net.preload(1, leader_log, term=3)
    net.preload(2, [1] * 5 + [2] * 100, term=3)
    net.preload(3, leader_log, term=3)
    seen: list[Message] = []
    net.hook = lambda m: seen.append(m) or True
    net.elect(1)
    rejects = [m for m in seen if m.type == MT.APPEND_RESP and m.reject and m.from_ == 2]
    assert len(rejects) == 1
    assert rejects[0].conflict_index == 65 and rejects[0].conflict_term == 2
    probes = [m for m in seen if m.type == MT.APPEND and m.to == 2]
    assert probes[1].index == 5, "the second probe lands right after the common prefix"
    assert terms_of(net, 2) == leader_log + [4]


def figure8_start(leader_class: type[RaftCore] = RaftCore) -> Network:
    """Raft figure 8 (b): S1, S2 hold index 2 of term 2, S5 index 2 of term 3, all at term 3;
    S5 is cut off. ``leader_class`` lets a test swap S1's core for a faulty one."""
    net = Network((1, 2, 3, 4, 5))
    for i, terms in ((1, [1, 2]), (2, [1, 2]), (3, [1]), (4, [1]), (5, [1, 3])):
        net.preload(i, terms, term=3)
    net.peers[1].core.__class__ = leader_class
    net.isolate(5)
    return net


def only_up_to_index_2(m):
    """Network hook: appends carry entries up to index 2 only (a new no-op never arrives)."""
    if m.type != MT.APPEND:
        return True
    return replace(m, entries=tuple(e for e in m.entries if e.index <= 2))


def test_figure8_an_entry_of_a_previous_term_is_not_committed_by_counting_replicas():
    # Raft figure 8 (c)-(d): S1 (term 4) replicates index 2 of term 2 to a majority but must
    # not commit it; S5 may still be elected and overwrite it with its term-3 entry.
    net = figure8_start()
    # Let only entries up to index 2 through: the no-op of term 4 never reaches a follower.
    net.hook = only_up_to_index_2
    net.elect(1)
    assert net.leader() == 1 and net.core(1).term == 4
    assert terms_of(net, 3)[:2] == [1, 2], "index 2 of term 2 is on S1, S2, S3: a majority"
    assert net.core(1).commit_index < 2, "but it is not committed (Raft §5.4.2)"
    assert all(e.index < 2 for e in net.peers[1].applied)
    # S1 crashes; S5 wins with S2, S3, S4 (its last term 3 beats their 2) and overwrites.
    net.hook = None
    net.crash(1)
    net.heal()
    net.silence(2, 3, 4)
    net.elect(5)  # its pre-vote for term 4 is refused: it learns term 4
    net.elect(5)  # and wins term 5
    assert net.leader() == 5 and net.core(5).term == 5
    for i in (2, 3, 4, 5):
        assert terms_of(net, i)[:2] == [1, 3]
        assert all((e.index, e.term) != (2, 2) for e in net.peers[i].applied)


def test_figure8_once_a_current_term_entry_commits_the_earlier_ones_are_safe():
    # Figure 8 (e): S1 replicates its term-4 no-op to a majority: index 2 commits with it and
    # S5 can no longer be elected.
    net = figure8_start()
    net.cut(1, 4)
    net.elect(1)
    assert net.core(1).commit_index == 3
    net.crash(1)
    net.heal()
    net.silence(2, 3, 4)
    net.elect(5)
    net.elect(5)
    assert net.core(5).role != Role.LEADER, "S2 and S3 hold a term-4 entry: S5 cannot win"
    assert terms_of(net, 2)[:3] == [1, 2, 4]


def test_leader_counts_itself_only_for_entries_it_persisted():
    net = Network((1, 2))
    net.elect(1)
    net.peers[1].persist = False  # the leader's fsync hangs
    net.core(1).propose(b"x")
    net.deliver()
    assert net.core(2).last_index == 2, "appends left before the leader's own fsync"
    assert net.core(1).commit_index == 1, "a majority of 2 needs the leader's own copy"
    net.release_persist(1)
    net.deliver()
    assert net.core(1).commit_index == 2
    assert net.applied_data(1) == [b"x"]


def test_leader_appends_leave_at_once_follower_acks_only_after_persistence():
    net = Network((1, 2, 3))
    net.elect(1)
    leader = net.core(1)
    leader.propose(b"x")
    rd = leader.ready()
    assert rd.entries and [m.type for m in rd.messages] == [MT.APPEND, MT.APPEND]
    leader.on_persisted(rd.number)
    leader.advance(rd)
    follower = net.core(2)
    follower.step(rd.messages[0])
    frd = follower.ready()
    assert frd.entries and not frd.messages
    assert [m.type for m in frd.persisted_messages] == [MT.APPEND_RESP]


def test_committed_entries_are_handed_out_only_once_persisted_locally():
    net = Network((1, 2, 3))
    net.elect(1)
    net.peers[2].persist = False
    net.propose(1, b"x")
    assert net.core(2).commit_index in (1, 2)
    net.tick(n=1)  # the heartbeat tells node 2 the commit index
    assert net.core(2).commit_index == 2 and net.applied_data(2) == []
    net.release_persist(2)
    net.deliver()
    assert net.applied_data(2) == [b"x"]


def test_heartbeat_carries_the_commit_index():
    net = Network((1, 2, 3))
    net.elect(1)
    net.drop_types(MT.APPEND)  # only heartbeats get through
    net.core(1).propose(b"x")
    net.core(1).commit_index  # noqa: B018
    assert net.core(2).commit_index == 1
    seen: list[Message] = []
    net.hook = lambda m: seen.append(m) or True
    net.tick([1])
    hb = [m for m in seen if m.type == MT.HEARTBEAT]
    assert hb and all(m.commit == 1 for m in hb)


def test_inflight_window_bounds_the_appends_in_flight_to_a_follower():
    cfg = RaftConfig(max_inflight_msgs=2)
    net = Network((1, 2, 3), cfg)
    net.elect(1)
    assert net.core(1).tracker.progress[2].state == ProgressState.REPLICATE
    sent_to_2: list[Message] = []

    def hook(m: Message) -> bool:
        if m.type == MT.APPEND and m.to == 2 and m.entries:
            sent_to_2.append(m)
        return not (m.type == MT.APPEND_RESP and m.from_ == 2)  # node 2's acks are lost

    net.hook = hook
    for k in range(5):
        net.propose(1, b"p%d" % k)
    assert len(sent_to_2) == 2
    assert net.core(1).commit_index == 6, "node 3 keeps the quorum going"
    net.hook = None
    net.tick(n=2)
    assert net.applied_data(2) == [b"p%d" % k for k in range(5)]


def test_max_msg_bytes_splits_large_batches():
    cfg = RaftConfig(max_msg_bytes=1000)
    net = Network((1, 2, 3), cfg)
    net.elect(1)
    seen: list[Message] = []
    net.hook = lambda m: seen.append(m) or True
    net.propose(1, *[bytes(300)] * 10)
    appends = [m for m in seen if m.type == MT.APPEND and m.to == 2 and m.entries]
    assert len(appends) >= 4
    assert all(sum(len(e.data) for e in m.entries) <= 1000 for m in appends)
    assert len(net.applied_data(2)) == 10


def test_probe_state_sends_one_append_per_heartbeat_interval():
    net = Network((1, 2, 3))
    net.elect(1)
    leader = net.core(1)
    pr = leader.tracker.progress[2]
    pr.become_probe()
    net.cut_one_way(2, 1)  # node 2's answers are lost: the leader keeps probing
    seen: list[Message] = []
    net.hook = lambda m: seen.append(m) or True
    for k in range(4):
        leader.propose(b"p%d" % k)
    net.deliver()
    assert len([m for m in seen if m.type == MT.APPEND and m.to == 2]) == 1
    net.tick([1])
    assert len([m for m in seen if m.type == MT.APPEND and m.to == 2]) <= 2


def test_pipelining_replicate_state_sends_without_waiting_for_acks():
    net = Network((1, 2, 3))
    net.elect(1)
    leader = net.core(1)
    for k in range(3):
        leader.propose(b"p%d" % k)
    rd = leader.ready()
    appends = [m for m in rd.messages if m.to == 2]
    assert [m.entries[0].index for m in appends] == [2, 3, 4]


def test_a_follower_never_truncates_committed_entries():
    core = RaftCore(2, RaftConfig(), random.Random(1), peers=[1, 3])
    from dengine.raft.types import Entry

    core.step(Message(MT.APPEND, 2, 1, term=1, index=0, log_term=0,
                      entries=(Entry(1, 1), Entry(1, 2)), commit=2))
    assert core.commit_index == 2
    core.step(Message(MT.APPEND, 2, 1, term=2, index=0, log_term=0,
                      entries=(Entry(2, 1),), commit=0))
    assert [e.term for e in core.entries_for_test()] == [1, 1]


def test_single_node_cluster_commits_after_its_own_fsync():
    net = Network((1,))
    net.elect(1)
    assert net.core(1).role == Role.LEADER
    net.propose(1, b"a", b"b")
    assert net.applied_data(1) == [b"a", b"b"]


def test_figure8_scenario_catches_a_core_that_commits_old_terms_by_counting():
    # The same schedule as above with the §5.4.2 check broken: index 2 (term 2) commits, and
    # is later overwritten. The scenario is able to see the rule broken.
    class Faulty(RaftCore):
        def may_commit_by_counting(self, index: int) -> bool:
            return True

    net = figure8_start(Faulty)
    net.hook = only_up_to_index_2
    net.elect(1)
    assert net.core(1).commit_index == 2, "the faulty core committed a term-2 entry"


def test_a_follower_that_lost_its_log_is_probed_once_per_heartbeat_not_in_a_loop():
    """A follower wiped and restarted empty rejects appends at or below its match index. The
    leader must not answer each rejection with the same probe at once (a busy loop); it
    probes again on the next heartbeat, and its heartbeat tells the follower the commit index
    it acknowledged, past the end of its log (what the node uses to refuse to serve)."""
    from dengine.raft.log import MemoryStorage
    from dengine.raft.types import HardState

    net = Network((1, 2, 3))
    net.elect(1)
    net.propose(1, b"a", b"b", b"c")
    match = net.core(1).tracker.progress[3].match_index
    assert match >= 4
    net.crash(3)
    net.peers[3] = net._new_peer(3, MemoryStorage(), HardState(), 0)
    net.down.discard(3)
    to_3: list[Message] = []

    def hook(m: Message) -> bool:
        if m.to == 3:
            to_3.append(m)
        return True

    net.hook = hook
    net.propose(1, b"d")  # goes quiet: no loop of probes
    assert len([m for m in to_3 if m.type == MT.APPEND]) <= 3
    to_3.clear()
    net.tick([1], n=net.config.heartbeat_ticks)
    heartbeats = [m for m in to_3 if m.type == MT.HEARTBEAT]
    assert heartbeats and max(h.commit for h in heartbeats) >= match > net.core(3).last_index
    assert len([m for m in to_3 if m.type == MT.APPEND]) <= 1  # one probe per heartbeat
    assert net.core(1).tracker.progress[3].match_index == match


def _lazy_network() -> tuple[Network, list[Message]]:
    net = Network((1, 2, 3), RaftConfig(commit_on_tick=True))
    net.elect(1)
    net.tick([1])  # the no-op's commit reaches the followers
    seen: list[Message] = []
    net.hook = lambda m: seen.append(m) or True
    return net, seen


def test_commit_on_tick_tells_the_followers_the_commit_at_the_next_tick_not_at_once():
    net, seen = _lazy_network()
    net.propose(1, b"x")
    assert net.core(1).commit_index == 2
    assert [m for m in seen if m.type == MT.APPEND and not m.entries] == []
    assert net.core(2).commit_index == 1 and net.core(3).commit_index == 1
    net.tick([1])
    assert net.core(2).commit_index == 2 and net.core(3).commit_index == 2


def test_commit_on_tick_lets_the_next_append_carry_the_commit():
    net, seen = _lazy_network()
    net.propose(1, b"x")
    net.propose(1, b"y")
    appends = [m for m in seen if m.type == MT.APPEND]
    assert [len(m.entries) for m in appends] == [1, 1, 1, 1], "no commit-only appends"
    assert sorted(m.commit for m in appends) == [1, 1, 2, 2]
    assert net.core(2).commit_index == 2
    assert net.applied_data(2) == [b"x"]


def test_commit_on_tick_a_followers_read_index_learns_the_commit_from_its_round():
    # The round's heartbeats carry the commit: the read does not wait for a tick.
    net, seen = _lazy_network()
    net.propose(1, b"x")
    assert net.core(2).commit_index == 1
    net.core(2).read_index(b"r")
    net.deliver()
    answer = next(i for i, m in enumerate(seen) if m.type == MT.READ_INDEX_RESP)
    assert any(m.type == MT.HEARTBEAT and m.to == 2 and m.commit == 2 for m in seen[:answer])
    assert net.core(2).commit_index == 2
    assert net.peers[2].read_states[-1].index == 2
    assert net.applied_data(2) == [b"x"]
