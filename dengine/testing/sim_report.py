"""What a failing simulation prints: the seed, the command that replays it, each node's state
and the last events of the run, in the canonical short forms of ``dengine.raft.describe``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dengine.raft.describe import describe_entries, describe_message, describe_ready

if TYPE_CHECKING:
    from dengine.testing.sim import Simulator

__all__ = ["describe_event", "replay_command", "report"]

TICK = 100  # sim.TICK, repeated to avoid an import cycle


def replay_command(seed: int, snapshots_and_membership: bool = False) -> str:
    """The one-line command that replays ``seed`` through ``tests/sim/test_sim.py``."""
    test = "test_snapshots_and_membership_seed" if snapshots_and_membership else "test_seed"
    return f"DENGINE_SIM_SEED_START={seed} DENGINE_SIM_SEEDS=1 pytest tests/sim -x -k {test}"


def report(sim: Simulator, what: str) -> str:
    lines = [
        f"simulation seed {sim.seed} failed at tick {sim.now / TICK:.2f} "
        f"({sim.phase}, {len(sim.ids)} nodes): {what}",
        f"replay: {replay_command(sim.seed, sim.cfg.snapshots_and_membership)}",
        f"members (the leader's config): {sorted(sim.members())}",
        "nodes:",
    ]
    for i in sim.ids:
        n = sim.nodes[i]
        c = n.core
        lines.append(
            f"  {i}: {'up' if n.up else 'DOWN'} {c.role.name.lower()} t{c.term} v{c.vote} "
            f"lead{c.leader_id} c{c.commit_index} a{n.sm_applied} "
            f"log{describe_entries(c.entries_for_test())}"
        )
    lines.append(f"last {len(sim.trace)} events (time in ticks):")
    lines += [describe_event(ev) for ev in sim.trace]
    return "\n".join(lines)


def describe_event(ev: tuple) -> str:
    """One trace event: a delivered message, a node's Ready, or a note (faults, clients)."""
    t = f"{ev[0] / TICK:8.2f}"
    if ev[1] == "msg":
        return f"{t} deliver {describe_message(ev[2])}"
    if ev[1] == "ready":
        text = describe_ready(ev[3]).replace("\n", "\n" + " " * 14)
        return f"{t} node {ev[2]} {text}"
    return f"{t} {ev[2]}"
