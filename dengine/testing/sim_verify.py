"""The simulator's checks after each event and at the end of a run: the invariants of
``sim_checks`` and ``sim_contract`` fed from every touched node, the reactions timed by the
cluster's state (``sim_late``), and the liveness and linearizability verdict at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dengine.raft.ready import Role
from dengine.testing.linearizability import check as check_linearizable
from dengine.testing.sim_checks import InvariantBroken

if TYPE_CHECKING:
    from dengine.testing.sim import SimNode, Simulator
    from dengine.testing.sim_workload import Pending

__all__ = ["check_end", "check_step", "followed_leader"]


def check_step(sim: Simulator) -> None:
    """Check the nodes the last event touched (every state change goes through
    ``process``, which marks its node)."""
    inv = sim.inv
    touched = sim._touched
    if not touched:
        return
    for i in sorted(touched):
        n = sim.nodes[i]
        if not n.up:
            continue
        core = n.core
        inv.on_positions(i, core.term, core.commit_index, core.applied_index)
        sim.late.on_state(i, core.role, core.term)
        if core.role == Role.LEADER:
            check_decisions(sim, n)
            inv.on_leader(i, core.term, core.log.term)
    order = sorted(touched)
    reactions = (("campaign_reaction", sim.reaction.check(order)),
                 ("newer_term_reaction", sim.newer.check(order)))
    touched.clear()
    for name, line in reactions:
        if line:
            sim.fault_counts[name] = sim.fault_counts.get(name, 0) + 1
            sim.trace_note("FAULT " + line)
    sim.contract.after_event()


def check_decisions(sim: Simulator, n: SimNode) -> None:
    """Feed the configs a leader decided under to the disjoint-majorities check: the one
    it won its election with, and, when its commit index moved, the ones in force before
    and after the event (a commit may append the entry that leaves a joint config; at most
    one config entry is appended per event, so the sequence misses none)."""
    core = n.core
    cfg = core.tracker.config
    voters = (cfg.voters, cfg.voters_outgoing)
    key = (core.term, n.incarnation)
    seen = sim._leading.get(n.id)
    if seen is None or seen[0] != key:
        sim.inv.on_decision(n.id, core.term, voters, "won the election")
        sim.contract.on_elected(n)
        sim.probe(n.id, 5)
    elif core.commit_index > seen[1]:
        sim.inv.on_decision(n.id, core.term, seen[2], f"committed to {core.commit_index}")
        sim.inv.on_decision(n.id, core.term, voters, f"committed to {core.commit_index}")
        sim.contract.on_leader_commit(n, seen[2])
    sim._leading[n.id] = (key, core.commit_index, voters)


def followed_leader(sim: Simulator) -> int:
    """The leader every up node follows, or 0."""
    leader = sim.current_leader()
    if not leader:
        return 0
    members = sim.members()
    for i in sim.up_nodes():
        if i in members and sim.nodes[i].core.leader_id != leader:
            return 0
    return leader


def check_end(sim: Simulator) -> None:
    leader = followed_leader(sim)
    if not leader:
        raise InvariantBroken("liveness: at the end no leader is followed by every node")
    lc = sim.nodes[leader].core
    for i in sorted(sim.members()):
        core = sim.nodes[i].core
        if core.commit_index != lc.last_index or sim.nodes[i].sm_applied < lc.last_index:
            raise InvariantBroken(
                f"liveness: node {i} has commit {core.commit_index}, applied "
                f"{sim.nodes[i].sm_applied}; the leader {leader}'s log ends at "
                f"{lc.last_index} ({sim.cfg.drain_ticks} ticks after the clients stopped)"
            )
        sim.inv.check_acked_in(i, core.log.term)
    still = []
    for p in sim.workload.open_ops():
        if may_stay_open(sim, p):
            sim.workload.close_unknown(p)
        else:
            still.append(p)
    if still:
        p = still[0]
        raise InvariantBroken(
            f"liveness: {len(still)} operations never decided, e.g. client {p.client} "
            f"{p.kind} at node {p.node}"
        )
    result = check_linearizable(sim.workload.history)
    if not result.ok:
        raise InvariantBroken(result.describe())


def may_stay_open(sim: Simulator, p: Pending) -> bool:
    """Whether an operation may legitimately still be undecided at the end.

    Only at a node outside the final config (removed, or added by a change that was rolled
    back) that was never told of a term newer than the one it had when the operation
    started: nothing obliges the cluster to talk to it again, so a read it forwarded to a
    leader that no longer counts it (dropped, the sender is unknown), or a write it proposed
    before being removed, may wait forever (a real client times it out). A node that a
    leader of a newer term reached has reset to that term, which fails its forwarded reads,
    and a stale read it forwards is refused with the newer term, with the same effect.
    (Operations still open at the end started after the faults stopped: nothing was lost.)
    Every other operation must be decided by now.
    """
    if p.node in sim.members():
        return False
    return sim.told_term.get(p.node, 0) <= p.node_term
