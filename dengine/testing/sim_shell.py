"""A simulated node's shell: the I/O steps ``raft.driver.drive_ready`` calls (``SimIO``), and
the simulator's side of them: running Ready turns (``process``), the disk queue and its fsync
events, applying committed entries, installing snapshots.

In the node's order a turn's ``persist`` returns a :class:`DiskWait`, and the turn (a coroutine)
waits on it until the simulator's disk event resumes it; in the pipelined order it returns
``PERSIST_LATER`` and the disk event reports durability itself.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

from dengine.raft.driver import PERSIST_LATER, PersistLater, drive_ready, on_durable
from dengine.raft.messages import Message
from dengine.raft.ready import ReadState, Ready
from dengine.raft.types import ConfState, Entry, SnapshotMeta
from dengine.testing.sim_checks import InvariantBroken
from dengine.testing.sim_events import TICK, DiskDone

if TYPE_CHECKING:
    from dengine.testing.sim import SimNode, Simulator

__all__ = ["DiskWait", "SimIO", "disk_done", "process", "schedule_disk"]


class DiskWait:
    """What a "node"-order turn awaits: the simulator resumes it when the fsync completes."""

    def __await__(self) -> Generator[object, None, None]:
        yield self


class SimIO:
    """The I/O steps of one simulated node's shell, for ``drive_ready``."""

    def __init__(self, sim: Simulator, n: SimNode) -> None:
        self.sim = sim
        self.n = n

    def install_snapshot(self, meta: SnapshotMeta) -> None:
        install_snapshot(self.sim, self.n, meta)

    def observe(self, rd: Ready) -> None:
        n = self.n
        self.sim.trace.append((self.sim.now, "ready", n.id, rd))
        if rd.messages:
            self.sim.contract.check_leaving(rd.messages, exact=True)
        if rd.entries:
            prev = n.core.log.term(rd.entries[0].index - 1)
            self.sim.inv.on_entries(n.id, rd.entries, prev)
            self.sim.contract.check_overwrite(n, rd.entries)
            if n.core.is_leader:
                self.sim.contract.check_one_change(n.id, rd.entries)

    def reconnect(self, conf_state: ConfState) -> None:
        return None  # every node is reachable through the simulated network

    def send(self, messages: list[Message]) -> None:
        self.sim.send(messages)

    def persist(self, rd: Ready) -> DiskWait | PersistLater | None:
        n = self.n
        pipelined = self.sim.cfg.shell_order in ("pipelined", "async")
        if not (rd.must_persist or rd.persisted_messages):
            # Nothing to write; pipelined, earlier Readies may still be on their way to disk,
            # and on_persisted(number) would vouch for them too.
            return PERSIST_LATER if pipelined else None
        n.disk_q.append((rd.number, rd.entries, rd.hard_state, rd.persisted_messages))
        schedule_disk(self.sim, n)
        return PERSIST_LATER if pipelined else DiskWait()

    def apply(self, entries: list[Entry], read_states: list[ReadState]) -> None:
        apply(self.sim, self.n, entries, read_states)

    def compact(self, index: int, conf_state: ConfState) -> None:
        self.n.storage.compact(index, conf_state)


# -- the Ready loop and the disk, driven by the simulator ---------------------------------------
def run_turn(sim: Simulator, n: SimNode, turn: Coroutine[Any, Any, None]) -> None:
    """Run a Ready turn until it ends or waits for the disk (then ``_disk_done`` resumes
    it)."""
    n.turn = None
    try:
        turn.send(None)
    except StopIteration:
        return
    n.turn = turn


def install_snapshot(sim: Simulator, n: SimNode, meta: SnapshotMeta) -> None:
    """Make what is queued durable first (so no stale suffix lands after the snapshot
    point), then replace the log and the state machine, durably."""
    if n.incoming is None or n.incoming[0] != meta:
        raise InvariantBroken(
            f"node {n.id} installs snapshot {meta.index}@{meta.term} that it never received"
        )
    if n.disk_q:
        number, after = write(sim, n, len(n.disk_q))
        durable(sim, n, number, after)
    data = n.incoming[1]
    n.incoming = None
    n.storage.apply_snapshot(meta)
    sim.inv.on_state_machine_reset(n.id, meta.index)
    n.sm.data = dict(data)
    n.sm_applied = meta.index
    sim.workload.on_snapshot(n.id, meta.index)
    n.kept.clear()  # its state machine was replaced
    n.sm_history.clear()
    n.keep(meta, data)
    sim.snapshots_installed += 1
    sim.trace_note(f"node {n.id} installs snapshot {meta.index}@{meta.term}")


def apply(sim: Simulator, n: SimNode, entries: list[Entry], read_states: list[ReadState]) -> None:
    for e in entries:
        if sim.inv.on_apply(n.id, e):
            sim.contract.on_apply(n.id, e)
            result = n.sm.apply(e)
            n.sm_applied = e.index
            if sim.cfg.snapshots_and_membership:
                n.sm_history.append((e.index, dict(n.sm.data)))
            acked = sim.workload.on_apply(n.id, e, result)
            if acked is not None:
                sim.inv.on_ack(acked)
    for rs in read_states:
        sim.workload.on_read_state(sim, n.id, rs)


def schedule_disk(sim: Simulator, n: SimNode) -> None:
    if n.disk_busy or not n.disk_q:
        return
    n.disk_busy = True
    lo, hi = n.disk
    sim._at(sim.now + sim.rng.randint(lo, hi), DiskDone(n.id, n.gen))


def disk_done(sim: Simulator, ev: DiskDone) -> None:
    i = ev.node
    n = sim.nodes[i]
    if not n.up or n.gen != ev.gen:
        return
    if n.disk_held:  # a stalled disk (``sim_rewrite``): this write completes later
        sim._at(sim.now + TICK, ev)
        return
    n.disk_busy = False
    # One fsync, several Readies (only one waits at a time in the node's order).
    number, after = write(sim, n, sim.rng.randint(1, len(n.disk_q)))
    if n.turn is not None:
        sim._touched.add(i)
        run_turn(sim, n, n.turn)  # on_persisted, persisted_messages, advance, compact
    else:
        durable(sim, n, number, after)
    process(sim, i)
    schedule_disk(sim, n)


def durable(sim: Simulator, n: SimNode, number: int, after: list[Message]) -> None:
    """Readies through ``number`` are durable. The "async" order sends the messages that
    waited for them before telling the core (``on_durable``'s ``send_first``)."""
    on_durable(n.core, number, after, n.io, send_first=sim.cfg.shell_order == "async")


def write(sim: Simulator, n: SimNode, k: int) -> tuple[int, list[Message]]:
    """Make the first ``k`` queued Readies durable; their number and waiting messages."""
    after: list[Message] = []
    number = 0
    for _ in range(k):
        number, entries, hs, msgs = n.disk_q.popleft()
        n.storage.append(entries)
        if hs is not None:
            sim.inv.on_persist_hard_state(n.id, hs.term, hs.vote)
            sim.contract.on_persist_hard_state(n.id, hs.term, hs.vote)
            n.hard_state = hs
        sim.contract.check_leaving(msgs, exact=False)
        after += msgs
    sim.trace.append((sim.now, "note", f"node {n.id} fsync through ready#{number}"))
    return number, after


def process(sim: Simulator, i: int) -> None:
    """Run node ``i``'s Ready turns until it has nothing to do or waits for its disk."""
    n = sim.nodes[i]
    if not n.up:
        return
    sim._touched.add(i)
    core = n.core
    while n.turn is None and core.has_ready():
        run_turn(sim, n, drive_ready(core, core.ready(), n.io))
