"""The simulator's fault schedule: a table of seeded actions, drawn by weight.

Each action takes the simulator and returns a line for the trace (or None when it did nothing).
The table is plain data so that later parts add rows (membership changes, compaction and
snapshot transfers) without touching the engine: ``FAULTS["conf_change"] = (3, fn)``.

Network profiles set the drop and duplicate probabilities and the delay range of every message
sent while they hold; partitions cut links both ways or one way; crashes lose what a node had
not persisted; disk profiles set how long a node's fsync takes.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from dengine.errors import DengineError
from dengine.raft.confchange import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
)
from dengine.raft.config import RaftConfig
from dengine.raft.log import RaftLog
from dengine.raft.messages import Message, MessageType
from dengine.raft.tracker import ProgressState
from dengine.raft.types import ConfState, SnapshotMeta

if TYPE_CHECKING:
    from dengine.testing.sim import Simulator

__all__ = ["CHURN", "FAULTS", "SNAPSHOTS_AND_MEMBERSHIP", "NET_PROFILES", "DISK_PROFILES", "Action"]

Action = Callable[["Simulator"], "str | None"]

#: (drop probability, duplicate probability, min delay, max delay) in sim time units (a tick
#: is ``sim.TICK`` units); long delays reorder messages.
NET_PROFILES: dict[str, tuple[float, float, int, int]] = {
    "good": (0.0, 0.0, 1, 30),
    "lossy": (0.15, 0.0, 1, 60),
    "dupes": (0.02, 0.15, 1, 60),
    "slow": (0.02, 0.02, 20, 400),
    "chaos": (0.25, 0.1, 1, 500),
}

#: (min, max) fsync time in sim time units.
DISK_PROFILES: dict[str, tuple[int, int]] = {
    "fast": (0, 5),
    "normal": (5, 60),
    "slow": (50, 400),
}


def partition(sim: Simulator) -> str:
    ids = list(sim.ids)
    sim.rng.shuffle(ids)
    k = sim.rng.randrange(1, len(ids))
    a, b = sorted(ids[:k]), sorted(ids[k:])
    for x in a:
        for y in b:
            sim.cuts.add((x, y))
            sim.cuts.add((y, x))
    leader = sim.current_leader()
    if leader:
        sim.probe(leader, 50)  # reads at the old leader right after the cut
    return f"partition {a} | {b}"


def one_way(sim: Simulator) -> str:
    src, dst = sim.rng.sample(sim.ids, 2)
    sim.cuts.add((src, dst))
    return f"cut one way {src} -> {dst}"


def isolate_leader(sim: Simulator) -> str | None:
    leader = sim.current_leader()
    if not leader:
        return None
    for y in sim.ids:
        if y != leader:
            sim.cuts.add((leader, y))
            sim.cuts.add((y, leader))
    sim.probe(leader, 50)
    return f"isolate leader {leader}"


def split_with_follower(sim: Simulator) -> str | None:
    """The leader and one follower are cut off together from the rest, which hold a quorum
    (``sim_late.Split``): the follower ends up with a log that diverges from the next
    leader's past its commit index."""
    return sim.split.start()


def heal(sim: Simulator) -> str:
    """Every cut link heals. Half the time the leader then resends from further back for a
    while (``resend_from_back``): a follower that was cut off holds a diverged log now."""
    sim.cuts.clear()
    leader = sim.current_leader()
    split = sim.split.heal(leader)
    if split:
        return "heal all links; " + split
    if leader and sim.snapshot_diverged:
        sim.snapshot_at_divergence(leader)  # before its next append repairs the follower
    if sim.rng.random() < 0.5:
        sim.resend_until = max(sim.resend_until, sim.now + 10 * sim.TICK)
        return "heal all links (the leader resends from further back)"
    return "heal all links"


def crash(sim: Simulator) -> str | None:
    up = sim.up_nodes()
    if not up:
        return None
    leader = sim.current_leader()
    victim = leader if leader and sim.rng.random() < 0.4 else sim.rng.choice(up)
    sim.crash(victim)
    return f"crash node {victim}"


def restart(sim: Simulator) -> str | None:
    down = [i for i in sim.ids if not sim.nodes[i].up]
    if not down:
        return None
    node = sim.rng.choice(down)
    sim.restart(node)
    return f"restart node {node}"


def bounce(sim: Simulator) -> str | None:
    """A node crashes and comes straight back (a fast reboot): only what it persisted."""
    up = sim.up_nodes()
    if not up:
        return None
    node = sim.rng.choice(up)
    sim.crash(node)
    sim.restart(node)
    return f"bounce node {node}"


def transfer(sim: Simulator) -> str | None:
    leader = sim.current_leader()
    if not leader:
        return None
    target = sim.rng.choice([i for i in sim.ids if i != leader])
    try:
        sim.nodes[leader].core.transfer_leader(target)
    except Exception as e:  # a refused transfer is an outcome, not a failure
        return f"transfer {leader} -> {target} refused: {e}"
    sim.process(leader)
    line = f"transfer leadership {leader} -> {target}"
    if sim.rng.random() < 0.3:
        # Over a slow link: TIMEOUT_NOW may arrive after the transfer was given up.
        sim.slow_links[(leader, target)] = sim.now + 20 * sim.TICK
        line += " over a slow link"
    # The target's campaign (past stickiness, by design) cuts the leader's ears: it keeps
    # serving while the target wins, unless the transfer voided its lease.
    line += "; " + lease_window(sim)
    return line


def slow_leader_disk(sim: Simulator) -> str | None:
    """The leader's fsync becomes slow: followers then ack entries before it has them."""
    leader = sim.current_leader()
    if not leader:
        return None
    sim.nodes[leader].disk = DISK_PROFILES["slow"]
    return f"slow disk on leader {leader}"


def snapshot(sim: Simulator) -> str | None:
    """A node's state machine takes a snapshot; its core may then compact its log, and
    followers behind the compaction point get the snapshot streamed."""
    up = sim.up_nodes()
    if not up:
        return None
    node = sim.rng.choice(up)
    meta = sim.take_snapshot(node)
    return f"node {node} snapshots at {meta.index}@{meta.term}" if meta else None


def conf_change(sim: Simulator) -> str | None:
    """The leader proposes a membership change: add a learner (a fresh node), promote one,
    remove a voter (perhaps itself), a joint change of two voters at once, or demote a voter
    to learner through a joint config. A joint change is left automatically or, one
    time in three, only by an explicit empty change that a later draw proposes."""
    leader = sim.current_leader()
    if not leader:
        return None
    core = sim.nodes[leader].core
    cs = core.conf_state
    if cs.joint:
        return _leave_joint(sim, leader) if not cs.auto_leave else None
    rng = sim.rng
    T = ConfChangeType
    options = _change_options(sim, cs)
    if not options:
        return None
    changes = rng.choice(options)
    demotion = changes[0][0] == T.ADD_LEARNER and changes[0][1] in cs.voters
    joint = len(changes) > 1 or demotion
    transition = ConfChangeTransition.AUTO
    if joint:
        transition = (
            ConfChangeTransition.JOINT_EXPLICIT
            if rng.random() < 1 / 3
            else ConfChangeTransition.JOINT_IMPLICIT
        )
    for t, node in changes:
        if t != T.REMOVE_NODE:
            sim.ensure_node(node)
    cc = ConfChange(tuple(ConfChangeSingle(t, node) for t, node in changes), transition)
    text = ", ".join(
        f"{'demote' if demotion else t.name.lower()} {node}" for t, node in changes
    )
    kind = "demote" if demotion else ""
    if transition == ConfChangeTransition.JOINT_EXPLICIT:
        text += " (joint, explicit leave)"
        kind = kind or "joint_explicit"
    line = _propose(sim, leader, cc, text, kind)
    if "refused" not in line and rng.random() < 0.25:
        line += "; " + _lose_acks(sim, leader)
    more = _single_changes(sim, core.conf_state)
    if more and rng.random() < 0.3:
        # A second client asks for any other change at once: refused while the first is
        # pending (one change at a time keeps a quorum of each config in the next).
        line += "; then " + _propose_single(sim, leader, more, "at once")
    return line


def _single_changes(sim: Simulator, cs: ConfState) -> list[list[tuple[ConfChangeType, int]]]:
    """The one-node changes ``conf_change`` could draw against ``cs`` (none while joint)."""
    return [o for o in _change_options(sim, cs) if len(o) == 1] if not cs.joint else []


def _propose_single(sim: Simulator, leader: int,
                    options: list[list[tuple[ConfChangeType, int]]], when: str) -> str:
    """A client asks ``leader`` for one of ``options`` (``_single_changes``)."""
    (t, node), = sim.rng.choice(options)
    if t != ConfChangeType.REMOVE_NODE:
        sim.ensure_node(node)
    cc = ConfChange((ConfChangeSingle(t, node),))
    return _propose(sim, leader, cc, f"{t.name.lower()} {node} {when}")


def deafen(sim: Simulator, node: int) -> None:
    """Every link towards ``node`` is cut (one way): it goes on sending, and hears no one."""
    for i in sim.ids:
        if i != node:
            sim.cuts.add((i, node))


def _lose_acks(sim: Simulator, leader: int) -> str:
    """Right after a change: the leader stops hearing anyone (its appends, the change among
    them, still reach the followers), so the change does not commit before check-quorum
    deposes it; the next leader holds it uncommitted and is asked for another change at
    once (``change_at_takeover``)."""
    deafen(sim, leader)
    sim.takeover_change = (sim.nodes[leader].core.term, sim.now + 60 * sim.TICK)
    return f"leader {leader} hears no one"


def change_at_takeover(sim: Simulator, leader: int) -> str | None:
    """At a new leader's tick before an entry of its term committed, while armed by
    ``_lose_acks``: a client asks for a change. Its log may end with a change of an earlier
    term that it cannot know committed: it must refuse (one change at a time)."""
    term, until = sim.takeover_change
    core = sim.nodes[leader].core
    if until < sim.now:
        sim.takeover_change = (0, -1)
        return None
    if core.term <= term or core.log.term(core.log.committed) == core.term:
        return None
    sim.takeover_change = (0, -1)
    options = _single_changes(sim, core.conf_state)
    return _propose_single(sim, leader, options, "at a new leader") if options else None


def _change_options(sim: Simulator, cs: ConfState) -> list[list[tuple[ConfChangeType, int]]]:
    """The changes ``conf_change`` draws from, against config ``cs``."""
    voters, learners = sorted(cs.voters), sorted(cs.learners)
    fresh = sim.fresh_ids()
    rng = sim.rng
    T = ConfChangeType
    options: list[list[tuple[ConfChangeType, int]]] = []
    if fresh:
        options.append([(T.ADD_LEARNER, fresh[0])])
    if learners and len(voters) < 7:
        options.append([(T.ADD_VOTER, rng.choice(learners))])
    if len(voters) > 3:
        options.append([(T.REMOVE_NODE, rng.choice(voters))])
    if learners and len(voters) >= 3:
        options.append([(T.ADD_VOTER, rng.choice(learners)), (T.REMOVE_NODE, rng.choice(voters))])
    if fresh and len(voters) >= 3:
        options.append([(T.ADD_VOTER, fresh[0]), (T.REMOVE_NODE, rng.choice(voters))])
    if len(voters) > 3:
        # ADD_LEARNER of a voter demotes it; in a joint change it stays a voter of the
        # outgoing half and becomes a learner on leaving (perhaps the leader itself).
        options.append([(T.ADD_LEARNER, rng.choice(voters))])
    return options


def _leave_joint(sim: Simulator, leader: int) -> str | None:
    """The config is joint with auto-leave off: the leader proposes the empty change that
    leaves it (refused while the entering entry is not committed)."""
    return _propose(sim, leader, ConfChange(), "leave the joint config", "leave_joint")


def _propose(sim: Simulator, leader: int, cc: ConfChange, text: str, kind: str = "") -> str:
    try:
        index = sim.nodes[leader].core.propose_conf_change(cc)
    except DengineError as e:
        return f"conf change ({text}) refused: {e}"
    if kind:
        sim.count_event(kind)
    sim.process(leader)
    return f"conf change at leader {leader}: {text} (index {index})"


def net_profile(sim: Simulator) -> str:
    name = sim.rng.choice(sorted(NET_PROFILES))
    sim.net = NET_PROFILES[name]
    return f"network {name}"


def disk_profile(sim: Simulator) -> str:
    node = sim.rng.choice(sim.ids)
    name = sim.rng.choice(sorted(DISK_PROFILES))
    sim.nodes[node].disk = DISK_PROFILES[name]
    return f"disk of node {node} {name}"


def cut_from_leader(sim: Simulator) -> str | None:
    """One voter loses the leader only (both ways), and keeps every other link: it times
    out and asks the others for votes while they still hear the leader, inside its lease.
    Reads at the leader are probed right after, lease and ReadIndex alike."""
    leader = sim.current_leader()
    if not leader:
        return None
    voters = sorted(sim.nodes[leader].core.tracker.config.all_voters() - {leader})
    if not voters:
        return None
    victim = sim.rng.choice(voters)
    sim.cuts.add((leader, victim))
    sim.cuts.add((victim, leader))
    sim.probe(leader, 40)
    sim.reaction.arm(40, bounce=sim.rng.random() < 0.5)
    line = f"cut {victim} from leader {leader} only"
    if sim.rng.random() < 0.5:
        line += ", " + quiet(sim, 25)  # the victim's log stays up to date: its campaign may win
    others = [i for i in voters if i != victim and sim.nodes[i].up]
    if others and sim.rng.random() < 0.25:
        # A follower whose acks hold the lease restarts: the restart guard must keep it from
        # voting for the cut-off voter while the lease lasts.
        node = sim.rng.choice(others)
        sim.crash(node)
        sim.restart(node)
        line += f", bounce node {node}"
    return line


def crash_unsynced(sim: Simulator) -> str | None:
    """Crash, and restart at once, a node with writes on their way to disk: a fresh node
    (never synced a term: bootstrap, or a voter just added) when there is one."""
    waiting = [i for i in sim.up_nodes() if sim.nodes[i].disk_q or sim.nodes[i].turn]
    if not waiting:
        return None
    fresh = [i for i in waiting if sim.nodes[i].hard_state.term == 0]
    node = sim.rng.choice(fresh or waiting)
    sim.crash(node)
    sim.restart(node)
    return f"crash node {node} before its fsync{' (fresh)' if fresh else ''}, restart it"


def stalls(sim: Simulator) -> str:
    """Some messages (one in ten) are held back one to three election timeouts, as a stalled
    connection delivers its queue late: late vote answers, heartbeat answers of old rounds,
    and TIMEOUT_NOW after the transfer was given up. Drawn again: the stalls end."""
    sim.stall = 0.0 if sim.stall else 0.1
    return "stalls " + ("on" if sim.stall else "off")


def resend_from_back(sim: Simulator) -> str | None:
    """The leader resends an earlier part of its log to a follower whose log diverges from
    its own: an append of one entry from an index in their common prefix with the leader's
    commit index, or its latest snapshot. Figure 2 lets a leader start an append anywhere
    its log reaches (a leader with a conservative next index does: etcd after a rejection in
    REPLICATE); the follower must commit only what the append proves (AppendEntries rule 5)
    and never install a snapshot older than its commit. With no diverged follower now, the
    fault stays armed for 30 ticks and fires at the leader's ticks while one diverges (a
    follower's log diverges only briefly: from a leader change until its first append)."""
    leader = sim.current_leader()
    if not leader:
        return None
    sim.resend_until = sim.now + 30 * sim.TICK
    line = resend_to_diverged(sim, leader)
    if line:
        return line
    targets = _resend_targets(sim, leader)
    if not targets:
        return None
    lc = sim.nodes[leader].core
    compacted = [i for i in targets
                 if sim.nodes[i].core.log.first_index > max(lc.log.first_index, 2)]
    if compacted and sim.rng.random() < 0.5:
        line = _resend_old_snapshot(sim, leader, sim.rng.choice(compacted))
        if line:
            return line
    return _resend(sim, leader, sim.rng.choice(targets))


def _resend_old_snapshot(sim: Simulator, leader: int, node: int) -> str | None:
    """The leader resends from further back to a follower that compacted its log: a snapshot
    cut at an index the follower's log no longer holds, below its commit index (a snapshot
    stream that was delayed, or retried after its report was lost). The follower must not
    install it: its state machine would go back."""
    lc = sim.nodes[leader].core
    fc = sim.nodes[node].core
    lo, hi = max(lc.log.first_index - 1, 1), fc.log.first_index - 2
    if hi < lo:
        return None
    meta = sim.cut_snapshot(leader, sim.rng.randint(lo, hi))
    if meta is None:
        return None
    send_snapshot(sim, leader, node, meta)
    sim.count_event("old_snapshot_resent")
    return (f"leader {leader} resends a snapshot at {meta.index}@{meta.term} to {node}, "
            f"whose log starts at {fc.log.first_index}")


def send_snapshot(sim: Simulator, leader: int, node: int, meta: SnapshotMeta) -> None:
    """``leader`` sends ``node`` a snapshot it holds (its data streams with the message)."""
    lc = sim.nodes[leader].core
    sim.send([Message(MessageType.SNAPSHOT, node, leader, term=lc.term, snapshot=meta,
                      commit=lc.log.committed)])


def resend_to_diverged(sim: Simulator, leader: int) -> str | None:
    """Resend to a diverged follower of ``leader``, if one exists (see ``resend_from_back``)."""
    lc = sim.nodes[leader].core.log
    diverged = [i for i in _resend_targets(sim, leader)
                if _diverges(lc, sim.nodes[i].core.log)]
    if not diverged:
        return None
    return _resend(sim, leader, sim.rng.choice(diverged))


def resend_to(sim: Simulator, leader: int, node: int) -> str | None:
    """Resend to ``node`` one entry of its common prefix with ``leader`` (with the leader's
    commit index), as ``resend_from_back`` does, diverged or not."""
    return _resend(sim, leader, node)


def _resend_targets(sim: Simulator, leader: int) -> list[int]:
    lc = sim.nodes[leader].core
    return [i for i in lc.tracker.progress if i != leader and i in sim.nodes
            and sim.nodes[i].up and (leader, i) not in sim.cuts]


def _diverges(a: RaftLog, b: RaftLog) -> bool:
    """Whether two logs hold different terms at some index both hold."""
    lo = max(a.first_index, b.first_index)
    hi = min(a.last_index, b.last_index)
    ta, tb = a.index.maybe_term, b.index.maybe_term
    return any(ta(j) != tb(j) for j in range(hi, lo - 1, -1))


def _resend(sim: Simulator, leader: int, node: int) -> str | None:
    lc = sim.nodes[leader].core
    lg = lc.log
    fc = sim.nodes[node].core
    meta = lc.snapshot_meta
    if meta is None and sim.cfg.snapshots_and_membership and sim.rng.random() < 0.5:
        sim.take_snapshot(leader)  # one to resend later, once it is old
    pr = lc.tracker.progress[node]
    line = snapshot_at_divergence(sim, leader, node, sim.rng)
    if line:
        return line
    if meta is not None and sim.rng.random() < 0.5 and pr.state != ProgressState.SNAPSHOT \
            and sim.nodes[leader].snapshot == meta:
        send_snapshot(sim, leader, node, meta)
        return f"leader {leader} resends its snapshot {meta.index}@{meta.term} to {node}"
    lo = max(lg.first_index - 1, fc.log.first_index - 1, 0)
    hi = min(lg.last_index, fc.last_index) - 1
    common = [j for j in range(lo, hi + 1)
              if lg.index.maybe_term(j) >= 0 and lg.index.maybe_term(j) == fc.log.index.maybe_term(j)]
    if not common:
        return None
    # An append below the follower's commit index only hears that index back (and must not
    # vouch for more): mostly prefer one that starts in the follower's uncommitted part.
    above = [j for j in common if j >= fc.commit_index]
    below = [j for j in common[-8:] if j < fc.commit_index]
    j = sim.rng.choice(below if below and sim.rng.random() < 0.3 else above or common[-8:])
    entries = tuple(lg.entries(j + 1, j + 2))
    # A resend goes on a fresh connection: a slow link does not hold it back.
    sim.send([Message(MessageType.APPEND, node, leader, term=lc.term, index=j,
                      log_term=lg.term(j), entries=entries, commit=lg.committed)], fresh=True)
    return f"leader {leader} resends entry {j + 1} (commit {lg.committed}) to {node}"


def snapshot_at_divergence(sim: Simulator, leader: int, node: int,
                           rng: random.Random) -> str | None:
    """With snapshots, most of the time: the leader snapshots right at the last index where the
    follower's log still matches its own, when that index is above the follower's commit
    index and the follower holds other entries past it, and sends it that snapshot. The
    follower already holds the snapshot's point (etcd's fast-forward): it may vouch for that
    point, not for its diverged suffix. Run by ``resend_from_back``, and at every tick of
    the leader in the seeds that draw ``Simulator.snapshot_diverged``."""
    if not sim.cfg.snapshots_and_membership:
        return None
    lc, fc = sim.nodes[leader].core, sim.nodes[node].core
    lg, fl = lc.log, fc.log
    hi = min(lg.last_index, fl.last_index)
    lo = max(lg.first_index, fl.first_index, fc.commit_index + 1)
    top = next((j for j in range(hi, lo - 1, -1)
                if fl.index.maybe_term(j) >= 0 and fl.index.maybe_term(j) == lg.index.maybe_term(j)),
               0)
    if not top or top >= fl.last_index or top > lc.applied_index or rng.random() < 0.2:
        return None
    meta = sim.cut_snapshot(leader, top)
    if meta is None:
        return None
    send_snapshot(sim, leader, node, meta)
    # Snapshots stream on their own connection (etcd's rafthttp): the message stream may be
    # the slow one, and the appends that would repair the follower arrive after it.
    sim.slow_links[(leader, node)] = max(sim.slow_links.get((leader, node), -1),
                                         sim.now + 3 * sim.TICK)
    return (f"leader {leader} snapshots at {meta.index}@{meta.term}, where {node}'s log "
            f"diverges, and sends it (its appends slow)")


def slow_link(sim: Simulator) -> str:
    """One link delays every message 10 to 30 ticks, for 20 to 60 ticks."""
    a, b = sim.rng.sample(sim.ids, 2)
    ticks = sim.rng.randint(20, 60)
    sim.slow_links[(a, b)] = sim.now + ticks * sim.TICK
    return f"link {a} -> {b} slow for {ticks} ticks"


def late_copies(sim: Simulator) -> str:
    """Old messages arrive again, late (``sim_late.LateCopies``). Drawn again: they stop."""
    sim.late.on = not sim.late.on
    return "late copies " + ("on" if sim.late.on else "off")


def lease_window(sim: Simulator) -> str:
    """Arm a reaction to the next campaign under a live leader (``sim_late.CampaignReaction``):
    the leader stops hearing anyone, perhaps with a quorum of its followers bounced."""
    bounce = sim.rng.random() < 0.5
    sim.reaction.arm(60, bounce)
    return f"armed: the next campaign cuts the leader's ears{' and bounces' if bounce else ''}"


def newer_term(sim: Simulator) -> str | None:
    """On runs with a voter without pre-vote: it loses the leader only (both ways) while
    clients only read, so its log stays up to date and its campaigns carry terms newer than
    the leader's while the leader's lease holds; the lease's adversary is armed
    (``sim_late.NewerTerm``) and the leader's reads probed."""
    leader = sim.current_leader()
    c = sim.no_pre_vote
    if not leader or c == leader or c not in sim.nodes or not sim.nodes[c].up \
            or c not in sim.nodes[leader].core.tracker.config.voters:
        return None
    sim.cuts.add((leader, c))
    sim.cuts.add((c, leader))
    sim.probe(leader, 40)
    sim.newer.arm(60)
    return f"cut node {c} (no pre-vote) from leader {leader} only, {quiet(sim, 25)}; armed"


def quiet(sim: Simulator, at_least: int = 10) -> str:
    """Clients only read for a while: a voter cut from the leader then keeps an up-to-date
    log, and its campaign tests the rules that protect the leader's lease (stickiness, the
    restart guard) rather than the log comparison."""
    ticks = sim.rng.randint(at_least, 40)
    sim.workload.quiet_until = sim.now / sim.TICK + ticks
    return f"clients only read for {ticks} ticks"


def random_limits(rng: random.Random, raft: RaftConfig, snapshots: bool) -> RaftConfig:
    """Flow-control limits drawn from the seed: tiny ones split appends, fill inflight
    windows and make followers lag behind compaction."""
    return dataclasses.replace(
        raft,
        max_msg_entries=rng.choice((1, 2, 3, 8, 1024)),
        max_inflight_msgs=rng.choice((1, 2, 4, 256)),
        max_msg_bytes=rng.choice((1, 40, 100, 1 << 20)),
        compact_keep_entries=rng.choice((0, 1, 4, 16)) if snapshots else raft.compact_keep_entries,
    )


def campaign(sim: Simulator) -> str | None:
    """A follower times out early, as a clock running fast would make it. Off by default:
    lease reads assume clocks run at one rate, and this breaks that assumption on purpose."""
    up = [i for i in sim.up_nodes() if not sim.nodes[i].core.is_leader]
    if not up:
        return None
    node = sim.rng.choice(up)
    sim.nodes[node].core.campaign()
    sim.process(node)
    return f"node {node} campaigns"


#: name -> (weight, action)
FAULTS: dict[str, tuple[int, Action]] = {
    "partition": (4, partition),
    "one_way": (3, one_way),
    "isolate_leader": (2, isolate_leader),
    "heal": (5, heal),
    "crash": (3, crash),
    "restart": (4, restart),
    "bounce": (2, bounce),
    "transfer": (2, transfer),
    "net_profile": (3, net_profile),
    "disk_profile": (2, disk_profile),
    "campaign": (0, campaign),
    "slow_leader_disk": (1, slow_leader_disk),
    "cut_from_leader": (4, cut_from_leader),
    "crash_unsynced": (2, crash_unsynced),
    "stalls": (1, stalls),
    "resend_from_back": (2, resend_from_back),
    "late_copies": (2, late_copies),
    "lease_window": (3, lease_window),
    "quiet": (2, quiet),
    "slow_link": (1, slow_link),
    "split_with_follower": (3, split_with_follower),
}

#: Snapshots and compaction, membership changes: added to FAULTS by
#: ``SimConfig(snapshots_and_membership=True)``.
SNAPSHOTS_AND_MEMBERSHIP: dict[str, tuple[int, Action]] = {
    "snapshot": (8, snapshot),
    "conf_change": (12, conf_change),
    "resend_from_back": (5, resend_from_back),  # with snapshots to resend, more often
}

#: Runs with a voter without pre-vote (``SimConfig.no_pre_vote``): added to FAULTS.
NO_PRE_VOTE: dict[str, tuple[int, Action]] = {
    "newer_term": (8, newer_term),
}

#: A schedule heavy in leader churn (isolation, crashes, slow leader disks) for small
#: clusters: what it takes to reach figure-8 and stale-leader states often.
CHURN: dict[str, tuple[int, Action]] = {
    "crash": (6, crash),
    "restart": (6, restart),
    "bounce": (2, bounce),
    "isolate_leader": (4, isolate_leader),
    "heal": (4, heal),
    "partition": (2, partition),
    "slow_leader_disk": (3, slow_leader_disk),
    "disk_profile": (1, disk_profile),
    "transfer": (1, transfer),
}
