"""The simulator's fault schedule: a table of seeded actions, drawn by weight.

Each action takes the simulator and returns a line for the trace (or None when it did nothing).
The table is plain data so that later parts add rows (membership changes, compaction and
snapshot transfers) without touching the engine: ``FAULTS["conf_change"] = (3, fn)``.

Network profiles set the drop and duplicate probabilities and the delay range of every message
sent while they hold; partitions cut links both ways or one way; crashes lose what a node had
not persisted; disk profiles set how long a node's fsync takes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dengine.errors import DengineError
from dengine.raft.confchange import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
)

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
    return f"isolate leader {leader}"


def heal(sim: Simulator) -> str:
    sim.cuts.clear()
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
    return f"transfer leadership {leader} -> {target}"


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
    return _propose(sim, leader, cc, text, kind)


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
}

#: Snapshots and compaction, membership changes: added to FAULTS by
#: ``SimConfig(snapshots_and_membership=True)``.
SNAPSHOTS_AND_MEMBERSHIP: dict[str, tuple[int, Action]] = {
    "snapshot": (8, snapshot),
    "conf_change": (6, conf_change),
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
