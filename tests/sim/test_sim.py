"""The deterministic simulation: many seeds of faults must keep Raft's promises.

``DENGINE_SIM_SEEDS=N`` runs N seeds (default: the CI slice) from ``DENGINE_SIM_SEED_START``
(default 0). A failing seed prints its report, with the one-line command that replays it.
"""

from __future__ import annotations

import pytest

from dengine._core import codec
from dengine.raft.confchange import ConfChange, ConfChangeSingle, ConfChangeType
from dengine.raft.config import RaftConfig
from dengine.raft.core import RaftCore
from dengine.raft.messages import Message
from dengine.raft.messages import MessageType as MT
from dengine.raft.types import Entry
from dengine.testing import sim_faults
from dengine.testing.sim import (
    TICK,
    SimConfig,
    SimFailure,
    Simulator,
    replay_command,
    seeds_from_env,
)
from dengine.testing.sim_checks import InvariantBroken, Invariants, disjoint_quorums
from dengine.testing.sim_faults import DISK_PROFILES
from dengine.testing.sim_faulty import CommitByCountingCore, DoubleVoteCore, NoJointCore

CI_SEEDS = 200
CI_SEEDS_SNAPSHOTS = 100


@pytest.mark.parametrize("seed", seeds_from_env(CI_SEEDS))
def test_seed(seed: int) -> None:
    result = Simulator(seed).run()
    # the run did something: clients were served and messages flowed
    assert result.ops["ok"] > 0 and result.delivered > 0


@pytest.mark.parametrize("seed", seeds_from_env(CI_SEEDS_SNAPSHOTS))
def test_snapshots_and_membership_seed(seed: int) -> None:
    """The default schedule plus membership changes, snapshots and compaction."""
    result = Simulator(seed, SimConfig(snapshots_and_membership=True)).run()
    assert result.ops["ok"] > 0


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("with_snapshots", [False, True])
def test_pipelined_shell_order_seed(seed: int, with_snapshots: bool) -> None:
    """The other order the core's contract allows: Readies taken before the previous one is
    durable, several reported by one fsync (the default runs the node's own order)."""
    result = Simulator(seed, SimConfig(snapshots_and_membership=with_snapshots, shell_order="pipelined")).run()
    assert result.ops["ok"] > 0


@pytest.mark.parametrize("seed", [149, 315, 362, 428])
def test_snapshots_and_membership_seeds_where_a_read_was_forwarded_to_a_deposed_leader(seed: int) -> None:
    """A node added by a change that was later rolled back forwarded a read to the leader that
    added it, after that leader was deposed: the read must be refused with the newer term, not
    dropped, or it waits forever (these seeds once ended with it undecided)."""
    Simulator(seed, SimConfig(snapshots_and_membership=True)).run()


def test_snapshots_and_membership_schedule_changes_members_and_streams_snapshots() -> None:
    changes = installs = 0
    grew = False
    for seed in range(10):
        sim = Simulator(seed, SimConfig(snapshots_and_membership=True))
        sim.run()
        changes += sim.fault_counts.get("conf_change", 0)
        installs += sim.snapshots_installed
        grew |= len(sim.ids) > sim.first_size
    assert changes and installs and grew


def _events(seeds: range, config: SimConfig) -> dict[str, int]:
    events: dict[str, int] = {}
    for seed in seeds:
        sim = Simulator(seed, config)
        sim.run()
        for name, count in sim.event_counts.items():
            events[name] = events.get(name, 0) + count
    return events


def test_snapshots_and_membership_schedule_demotes_and_leaves_joint_configs_explicitly() -> None:
    events = _events(range(16), SimConfig(snapshots_and_membership=True))
    assert {"demote", "joint_explicit", "leave_joint"} <= set(events), events


def test_snapshot_transfers_fail_on_their_own_and_the_cluster_copes() -> None:
    """Every transfer fails here (half abort, half arrive with their ack lost): followers
    still catch up, and the runs pass every check."""
    events = _events(range(12), SimConfig(snapshots_and_membership=True, snapshot_fail=1.0))
    assert {"snapshot_aborted", "snapshot_ack_lost"} <= set(events), events


def test_a_leader_snapshots_where_a_diverged_follower_stops_matching_and_sends_it() -> None:
    """The knob behind the fast-forward check: the follower holds the snapshot's point above
    its commit index, with other entries past it (seed 29 reached it on the first gate run
    of the knob); the real core passes."""
    sim = Simulator(29, SimConfig(snapshots_and_membership=True))
    sim.run()
    assert sim.snapshot_diverged and sim.event_counts.get("snapshot_at_divergence", 0) > 0


def test_leader_churn_rewrites_a_stalled_followers_entry_twice_and_the_real_core_passes() -> None:
    """The stalled-rewrite fault (``sim_rewrite``): async seed 13 goes through every step
    (the entry of the first leader, another term's entry over it, the first one again, all
    while the first write is on the follower's disk) -- the run that catches the reverted ABA
    fix (tests/sim/test_mutants.py) -- and the real core passes it."""
    sim = Simulator(13, SimConfig(shell_order="async"))
    sim.run()
    r = sim.rewrite
    assert sim.event_counts.get("stalled_rewrite rewritten back") == 1, sim.event_counts
    assert r.second_term > r.term and r.third != r.second
    assert sim.nodes[r.follower].storage.term(r.index) == r.term
    # Never armed without the pipelined order, nor with fewer than five nodes.
    assert not Simulator(13).rewrite.armed
    assert not Simulator(13, SimConfig(shell_order="async", nodes=4)).rewrite.armed


def test_a_state_machine_cut_at_an_earlier_index_replays_to_what_it_held_then() -> None:
    sim = Simulator(3, SimConfig(snapshots_and_membership=True))
    sim.run()
    checked = 0
    for n in sim.nodes.values():
        history = list(n.sm_history)
        n.sm_history.clear()  # from the kept snapshots and the log alone
        for index, data in history:
            replayed = sim._state_at(n, index)
            if replayed is not None:
                assert replayed == data, (n.id, index)
                checked += 1
    assert checked > 20


def test_same_seed_replays_the_same_run() -> None:
    a, b = Simulator(7), Simulator(7)
    ra, rb = a.run(), b.run()
    assert ra == rb
    assert [a._describe_event(e) for e in a.trace] == [b._describe_event(e) for e in b.trace]


def test_cluster_size_comes_from_the_seed_or_the_config() -> None:
    sizes = {len(Simulator(s).ids) for s in range(40)}
    assert sizes == {3, 4, 5, 6, 7}
    assert len(Simulator(0, SimConfig(nodes=5)).ids) == 5


def test_schedule_exercises_the_main_faults() -> None:
    seen: set[str] = set()
    for seed in range(4):
        sim = Simulator(seed)
        sim.run()
        seen.update(sim.fault_counts)
    assert {"partition", "one_way", "crash", "restart", "bounce", "heal"} <= seen
    assert {"net_profile", "transfer", "isolate_leader", "disk_profile"} <= seen


# -- the simulator catches broken cores ---------------------------------------------------------
def _first_failure(factory, seeds, config=None) -> SimFailure:
    for seed in seeds:
        try:
            Simulator(seed, config, core_factory=factory).run()
        except SimFailure as e:
            return e
    raise AssertionError(f"{factory.__name__} survived seeds {seeds}: the simulator missed it")


def test_a_core_that_votes_twice_in_a_term_is_caught() -> None:
    e = _first_failure(DoubleVoteCore, range(40), SimConfig(nodes=3))
    assert "votes twice" in str(e) or "election safety" in str(e)


def _figure8(seed: int, factory, order: str = "pipelined") -> Simulator:
    """Raft figure 8, scripted through the simulator on three nodes (one entry per append).

    L appends k@t1 that reaches no one and crashes; W is elected, appends its no-op at k in a
    later term that reaches no one, and crashes; L returns with a slow disk, leads, and gets
    k@t1 (alone) to Z while its own no-op is not yet durable: a quorum holds k@t1. A correct
    core must not commit it by counting; a faulty one does and applies it. Then L crashes, W
    returns and, with Z's vote, overwrites k.

    The timing is that of the pipelined shell order, where L's next Ready (which hands k out
    to apply) does not wait for its slow fsync; in the node's order L waits, its no-op becomes
    durable first and commits k correctly on most seeds.
    """
    raft = RaftConfig(election_ticks=10, heartbeat_ticks=1, lease_ticks=7, max_msg_entries=1)
    sim = Simulator(seed, SimConfig(nodes=3, raft=raft, shell_order=order, random_limits=False,
                                    clock_drift=0.0), core_factory=factory)

    def until(pred) -> None:
        for _ in range(400):
            if pred():
                return
            sim.run_until(sim.now / TICK + 0.25)
        raise AssertionError("the scripted scenario stalled")

    until(sim.current_leader)
    lead = sim.current_leader()
    sim.drop_if = lambda m: m.from_ == lead
    k = sim.nodes[lead].core.propose(codec.encode_put(b"k", b"x"))
    t1 = sim.nodes[lead].core.term
    sim.process(lead)
    sim.run_until(sim.now / TICK + 2)
    assert sim.nodes[lead].storage.term(k) == t1
    sim.crash(lead)
    sim.drop_if = lambda m: m.type in (MT.APPEND, MT.HEARTBEAT)
    until(sim.current_leader)
    w = sim.current_leader()
    sim.run_until(sim.now / TICK + 2)
    assert sim.nodes[w].storage.term(k) > t1
    sim.crash(w)

    def only_k_reaches_z(m) -> bool:
        if m.from_ != lead:
            return False
        if m.type == MT.HEARTBEAT:
            return True
        late = m.index < k and any(e.index > k for e in m.entries)
        return m.type == MT.APPEND and (m.commit >= k or late)

    sim.drop_if = only_k_reaches_z
    sim.restart(lead)
    sim.nodes[lead].disk = DISK_PROFILES["slow"]
    until(lambda: sim.current_leader() == lead)
    sim.run_until(sim.now / TICK + 3)
    sim.crash(lead)
    sim.drop_if = None
    sim.restart(w)
    sim.run_until(sim.now / TICK + 60)
    assert sim.current_leader()
    return sim


@pytest.mark.parametrize("seed", range(3))
def test_a_core_that_commits_an_old_term_entry_by_counting_is_caught(seed: int) -> None:
    with pytest.raises(InvariantBroken, match="leader completeness|state-machine safety|"
                       "only current-term entries commit by counting"):
        _figure8(seed, CommitByCountingCore)


@pytest.mark.parametrize("order", ["pipelined", "node"])
@pytest.mark.parametrize("seed", range(3))
def test_the_real_core_survives_figure_8(seed: int, order: str) -> None:
    sim = _figure8(seed, RaftCore, order)
    assert len({sim.nodes[i].core.commit_index for i in sim.up_nodes()}) >= 1


def _replace_a_follower(seed: int, factory) -> Simulator:
    """Three voters; the leader proposes one change that adds voter 4 and removes a follower
    (two voters at once), then the cluster runs on with the usual faults."""
    sim = Simulator(seed, SimConfig(nodes=3, snapshots_and_membership=True), core_factory=factory)
    while not sim.current_leader():
        sim.run_until(sim.now / TICK + 0.25)
    sim.run_until(sim.now / TICK + 2)
    lead = sim.current_leader()
    gone = min(i for i in sim.ids if i != lead)
    sim.ensure_node(4)
    T = ConfChangeType
    sim.nodes[lead].core.propose_conf_change(
        ConfChange((ConfChangeSingle(T.ADD_VOTER, 4), ConfChangeSingle(T.REMOVE_NODE, gone)))
    )
    sim.process(lead)
    sim.run_until(sim.now / TICK + 30)
    return sim


@pytest.mark.parametrize("seed", range(3))
def test_a_core_that_skips_the_joint_config_is_caught(seed: int) -> None:
    # It also skips the one-pending rule, which the one-change check sees first.
    with pytest.raises(InvariantBroken, match="two disjoint majorities in term|one change at "
                       "a time"):
        _replace_a_follower(seed, NoJointCore)


@pytest.mark.parametrize("seed", range(3))
def test_the_real_core_replaces_a_follower_through_a_joint_config(seed: int) -> None:
    sim = _replace_a_follower(seed, RaftCore)
    lead = sim.current_leader()
    assert lead and 4 in sim.nodes[lead].core.conf_state.voters


def test_disjoint_quorums_of_two_configs() -> None:
    old, new = ((1, 2, 3), ()), ((1, 3, 4), ())
    joint = ((1, 3, 4), (1, 2, 3))
    assert disjoint_quorums(old, new) == (frozenset({1, 2}), frozenset({3, 4}))
    assert disjoint_quorums(old, joint) is None and disjoint_quorums(joint, new) is None
    assert disjoint_quorums(((1, 2, 3), ()), ((1, 2, 3, 4), ())) is None  # one voter added
    assert disjoint_quorums(((1, 2, 3, 4), ()), ((1, 2, 3, 4), ())) is None
    assert disjoint_quorums(((1, 2), ()), ((3,), ())) is not None


def test_consecutive_decisions_with_disjoint_majorities_in_one_term_are_caught() -> None:
    inv = Invariants()
    inv.on_decision(1, 2, ((1, 2, 3), ()), "won the election")
    inv.on_decision(1, 2, ((1, 3, 4), (1, 2, 3)), "committed to 5")
    inv.on_decision(1, 2, ((1, 3, 4), ()), "committed to 6")  # through the joint config: fine
    inv.on_decision(5, 3, ((1, 2, 3), ()), "won the election")  # another term: its own
    with pytest.raises(InvariantBroken, match="two disjoint majorities in term 3"):
        inv.on_decision(5, 3, ((1, 4, 5), ()), "committed to 9")


def test_reads_that_skip_read_index_are_caught_by_the_linearizability_check() -> None:
    e = _first_failure(RaftCore, range(20), SimConfig(local_reads=True))
    assert "NOT linearizable on key" in str(e)


def test_failure_report_names_seed_replay_command_and_trace() -> None:
    e = _first_failure(DoubleVoteCore, range(40), SimConfig(nodes=3))
    text = str(e)
    assert f"seed {e.seed} failed" in text
    assert replay_command(e.seed) in text
    assert "VOTE" in text and "nodes:" in text


# -- the invariants themselves fail when they should ----------------------------------------------
def test_two_leaders_in_one_term_break_election_safety() -> None:
    inv = Invariants()
    inv.on_leader(1, 3, lambda i: -2)
    with pytest.raises(InvariantBroken, match="election safety"):
        inv.on_leader(2, 3, lambda i: -2)


def test_different_entries_at_one_index_break_state_machine_safety() -> None:
    inv = Invariants()
    assert inv.on_apply(1, Entry(1, 1, 0, b"a"))
    with pytest.raises(InvariantBroken, match="state-machine safety"):
        inv.on_apply(2, Entry(2, 1, 0, b"b"))


def test_leader_missing_a_committed_entry_breaks_leader_completeness() -> None:
    inv = Invariants()
    inv.on_apply(1, Entry(1, 1, 0, b"a"))
    with pytest.raises(InvariantBroken, match="leader completeness"):
        inv.on_leader(2, 2, lambda i: 2)


def test_log_matching_sees_a_different_prefix() -> None:
    inv = Invariants()
    inv.on_entries(1, [Entry(2, 5, 0, b"x")], prev_term=1)
    with pytest.raises(InvariantBroken, match="log matching"):
        inv.on_entries(2, [Entry(2, 5, 0, b"x")], prev_term=2)
    with pytest.raises(InvariantBroken, match="log matching"):
        inv.on_entries(3, [Entry(2, 5, 0, b"y")], prev_term=1)


def test_applied_index_going_back_is_caught() -> None:
    inv = Invariants()
    inv.on_positions(1, 1, 5, 5)
    with pytest.raises(InvariantBroken, match="goes back"):
        inv.on_positions(1, 1, 5, 4)


def test_lost_acknowledged_write_is_caught() -> None:
    inv = Invariants()
    inv.on_ack(Entry(1, 4, 0, b"w"))
    inv.check_acked_in(1, lambda i: 1)
    with pytest.raises(InvariantBroken, match="acknowledged write 4@1 is lost"):
        inv.check_acked_in(2, lambda i: 2 if i == 4 else 1)


def test_every_fault_in_the_table_runs() -> None:
    table = {**sim_faults.FAULTS, **sim_faults.SNAPSHOTS_AND_MEMBERSHIP, **sim_faults.NO_PRE_VOTE}
    for name, (_, action) in sorted(table.items()):
        sim = Simulator(1, SimConfig(nodes=3, no_pre_vote=1.0))
        for _ in range(30):
            sim.nodes[1].core.tick()
        sim.nodes[1].core.campaign()
        sim.process(1)
        action(sim)  # none raises on a young cluster
        assert name


def test_plain_core_class_is_the_default() -> None:
    assert Simulator(0).core_factory is RaftCore


# -- a core bug found by the simulator, kept as a regression test -------------------------------------------
def _lease_after_restart(seed: int) -> tuple[bytes | None, bytes | None]:
    """Five nodes. Leader L holds a lease acked by B and C; A and D are cut off from L, B, C
    and their election timers are about to fire. B crashes and restarts at once, and can reach
    A and D only. Were a restarted node to forget stickiness, it would grant A's (or D's)
    pre-vote and vote at once, and A, D, B would elect a new leader that commits a write
    within L's lease, so that L's lease read returns the old value.

    Returns (value the new leader's write put, value L's lease read returns while L still
    believes its lease holds -- or the new value when L's lease ran out first).
    """
    sim = Simulator(seed, SimConfig(nodes=5, random_limits=False, clock_drift=0.0))

    def step(dt: float = 0.05) -> None:
        sim.run_until(sim.now / TICK + dt)

    while not sim.current_leader():
        step(0.25)
    lead = sim.current_leader()
    a, d, b, c = [i for i in sim.ids if i != lead]
    sim.run_until(sim.now / TICK + 3)

    def cut(x: int, y: int) -> None:
        sim.cuts.update({(x, y), (y, x)})

    for x in (a, d):
        for y in (lead, b, c):
            cut(x, y)
    core_a = sim.nodes[a].core
    while not (
        sim.now > 15 * TICK and core_a.election_elapsed + 1 >= core_a.randomized_election_timeout
    ):
        step(0.01)
    lc = sim.nodes[lead].core
    assert lc.lease_valid()
    sim.crash(b)
    sim.restart(b)
    cut(b, lead)
    cut(b, c)
    for x in (a, d):
        sim.cuts -= {(x, b), (b, x)}
    index = new = 0
    for _ in range(4000):
        step()
        new = new or next((i for i in (a, d, b) if sim.nodes[i].core.is_leader), 0)
        if new and not index:
            index = sim.nodes[new].core.propose(codec.encode_put(b"k", b"new"))
            sim.process(new)
        if index and sim.nodes[new].sm_applied >= index:
            break
    assert index and sim.nodes[new].sm_applied >= index, "no new leader took over"
    written = sim.nodes[new].sm.get(b"k")[0]
    if not (lc.is_leader and lc.lease_valid()):
        return written, written
    lc.read_index(b"lease-read", lease=True)
    rd = lc.ready()
    assert [rs.context for rs in rd.read_states] == [b"lease-read"]
    lc.advance(rd)
    return written, sim.nodes[lead].sm.get(b"k")[0]


def test_lease_read_is_not_stale_when_a_voter_restarts() -> None:
    written, read = _lease_after_restart(0)
    assert written == b"new"
    assert read == written


def test_every_event_kind_is_a_frozen_dataclass_with_a_handler() -> None:
    import dataclasses
    import typing

    from dengine.testing import sim_events

    kinds = typing.get_args(sim_events.Event)
    assert set(Simulator.HANDLERS) == set(kinds)
    for kind in kinds:
        params = kind.__dataclass_params__
        assert params.frozen, kind
    ev = sim_events.Tick(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.node = 3  # type: ignore[misc]
    sim = Simulator(0, SimConfig(nodes=3))
    assert all(isinstance(e, kinds) for _, _, e in sim.queue)


def test_schedule_reaches_the_faults_timed_by_the_cluster_state() -> None:
    """Late copies, the campaign reaction (and what arms it), read-only periods, slow links
    and the armed resend: each is drawn within a few seeds of each schedule."""
    seen: set[str] = set()
    copies = 0
    for seed in range(4):
        for config in (SimConfig(), SimConfig(snapshots_and_membership=True)):
            sim = Simulator(seed, config)
            sim.run()
            seen.update(sim.fault_counts)
            copies += sim.late.delivered
    assert {"late_copies", "lease_window", "campaign_reaction", "quiet", "slow_link",
            "resend_from_back", "cut_from_leader"} <= seen, seen
    assert copies > 0


def test_a_leader_resends_a_snapshot_older_than_a_compacted_followers_log() -> None:
    """The resend from further back reaches followers that compacted their logs with a
    snapshot cut below their commit index; the real core refuses to install it
    (install_older_snapshot fails such runs)."""
    resent = 0
    for seed in range(12):
        sim = Simulator(seed, SimConfig(snapshots_and_membership=True))
        sim.run()
        resent += sim.event_counts.get("old_snapshot_resent", 0)
    assert resent > 0


@pytest.mark.parametrize("seed", [53, 56])
def test_a_newer_term_reaches_a_follower_inside_a_lease_and_the_real_core_keeps_the_promise(
        seed: int) -> None:
    """A voter without pre-vote, cut from the leader while clients only read, campaigns at
    newer terms; answers to old messages of the leader's followers bring such a term to a
    follower inside the lease (``sim_late.NewerTerm``) and the leader hears none of it. The
    real core's follower refuses votes of that term until an election timeout passes, so no
    leader commits inside the lease; the two lease mutants fail such runs (test_mutants)."""
    sim = Simulator(seed, SimConfig())
    sim.run()
    assert sim.no_pre_vote and sim.newer.taken > 0


@pytest.mark.parametrize("seed", [10205, 10637])
def test_a_vote_answered_once_a_later_term_is_durable_passes(seed: int) -> None:
    """A node that took two terms before one fsync sends its first vote answer after the
    later term is on disk: safe (it can never vote in the first term again), and these seeds
    once failed the persistence check that demanded the vote itself on disk."""
    Simulator(seed, SimConfig()).run()


def test_an_append_ack_for_a_log_the_leader_never_sent_breaks_the_contract() -> None:
    """An append ack at i says the follower's log matches the leader's through i: an ack for
    an entry the leader does not hold (here one planted on the follower's disk past the
    leader's log) is reported at once, before it can make the leader commit."""
    sim = Simulator(3, SimConfig(nodes=3))
    for _ in range(200):
        if sim.current_leader():
            break
        sim.run_until(sim.now / TICK + 0.5)
    lead = sim.current_leader()
    assert lead
    follower = next(i for i in sim.ids if i != lead)
    st = sim.nodes[follower].storage
    lc = sim.nodes[lead].core
    planted = Entry(lc.term + 5, st.last_index() + 1, data=b"x")
    st.append([planted])
    ok = Message(MT.APPEND_RESP, lead, follower, term=lc.term, index=planted.index - 1)
    sim.contract.check_leaving([ok], exact=False)  # the prefix matches: fine
    bad = Message(MT.APPEND_RESP, lead, follower, term=lc.term, index=planted.index)
    with pytest.raises(InvariantBroken, match="vouches for a log the leader never sent"):
        sim.contract.check_leaving([bad], exact=False)


@pytest.mark.parametrize(("seed", "snapshots"), [(17, True), (30, False)])
def test_a_follower_split_off_with_its_leader_diverges_and_the_real_core_repairs_it(
        seed: int, snapshots: bool) -> None:
    """``split_with_follower``: a leader and one follower cut off together (acks first, with
    bursts of writes at the leader) leave that follower with a log that diverges from the next
    leader's past its commit index; when the split ends, the new leader's appends to it are
    slow, it resends from further back and (seed 17) sends it a snapshot cut where their logs
    part. The real core vouches only for what each message proves; the three mutants that ack
    an unchecked suffix fail such runs (test_mutants, and the fast-forward defect's catch)."""
    sim = Simulator(seed, SimConfig(snapshots_and_membership=snapshots))
    sim.run()
    assert sim.event_counts.get("split_diverged", 0) > 0
    assert sim.event_counts.get("split_snapshot", 0) > 0 or not snapshots
