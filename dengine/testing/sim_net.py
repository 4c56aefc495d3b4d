"""The simulated network: messages lost, duplicated, delayed (and so reordered) by the profile
in force, cut by partitions, held back by stalls and slow links; snapshot streams bound to
their message and reported to the sender exactly once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dengine.raft.messages import Message, MessageType
from dengine.testing.sim_events import TICK, Deliver, SnapshotArrives, SnapshotFails

if TYPE_CHECKING:
    from dengine.testing.sim import Simulator

__all__ = ["deliver", "send", "snapshot_arrives", "snapshot_fails"]

_FROM_LEADER = frozenset({MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT})


def stream_snapshot(sim: Simulator, m: Message, lost: bool) -> None:
    """A SNAPSHOT message carries the sender's snapshot data (the shell streams it); its
    outcome is reported to the sender exactly once (never duplicated). A transfer may
    also fail on its own (``SimConfig.snapshot_fail``)."""
    sender = sim.nodes[m.from_]
    meta = m.snapshot
    if lost or meta is None or meta not in sender.kept:
        sim._at(sim.now + 1, SnapshotFails(m))
        return
    lo, hi = sim.net[2], sim.net[3]
    later = sim.now + sim.rng.randint(lo, hi) * 3
    fail = sim.rng.random() < sim.cfg.snapshot_fail
    if fail and sim.rng.random() < 0.5:
        sim.count_event("snapshot_aborted")
        sim._at(later, SnapshotFails(m))  # aborted midway
        return
    if fail:
        sim.count_event("snapshot_ack_lost")
    data = dict(sender.kept[meta])
    sim._at(later, SnapshotArrives(m, data, not fail))


def deliver(sim: Simulator, ev: Deliver) -> None:
    m = ev.msg
    n = sim.nodes[m.to]
    if not n.up or ((m.from_, m.to) in sim.cuts and not ev.late):
        return
    sim.delivered += 1
    sim.trace.append((sim.now, "msg", m))
    sim.contract.on_deliver(m)
    if m.type in _FROM_LEADER:
        told(sim, m.to, m.term)
    elif m.type == MessageType.READ_INDEX:
        told(sim, m.from_, n.core.term)
    n.core.step(m)
    sim.process(m.to)


def told(sim: Simulator, i: int, term: int) -> None:
    if term > sim.told_term.get(i, 0):
        sim.told_term[i] = term


def snapshot_fails(sim: Simulator, ev: SnapshotFails) -> None:
    snapshot_ends(sim, ev.msg, None, False, arrived=False)


def snapshot_arrives(sim: Simulator, ev: SnapshotArrives) -> None:
    snapshot_ends(sim, ev.msg, ev.data, ev.report_ok, arrived=True)


def snapshot_ends(sim: Simulator, m: Message, data: dict | None, report_ok: bool,
                   arrived: bool) -> None:
    n = sim.nodes[m.to]
    ok = arrived and n.up and (m.from_, m.to) not in sim.cuts
    if ok:
        assert m.snapshot is not None and data is not None, "an arrived snapshot has both"
        sim.delivered += 1
        sim.trace.append((sim.now, "msg", m))
        n.incoming = (m.snapshot, data)
        told(sim, m.to, m.term)
        n.core.step(m)
        sim.process(m.to)
    ok = ok and report_ok
    sender = sim.nodes[m.from_]
    if sender.up:
        late = " (delivered; its ack lost)" if not report_ok and arrived else ""
        sim.trace_note(f"snapshot {m.from_}->{m.to} {'sent' if ok else 'FAILED'}{late}")
        sender.core.report_snapshot(m.to, ok)
        sim.process(m.from_)


def send(sim: Simulator, msgs: list[Message], fresh: bool = False) -> None:
    drop, dup, lo, hi = sim.net
    rng = sim.rng
    for m in msgs:
        if m.to in sim.nodes:
            sim.late.record(m)
            sim.newer.record(m)
        lost = (
            m.to not in sim.nodes
            or (m.from_, m.to) in sim.cuts
            or (sim.drop_if is not None and sim.drop_if(m))
            or (drop and rng.random() < drop)
        )
        if m.type == MessageType.SNAPSHOT:
            stream_snapshot(sim, m, bool(lost))
            continue
        if lost:
            continue
        delay = rng.randint(lo, hi)
        if sim.stall and not fresh and rng.random() < sim.stall:
            delay += rng.randint(10, 30) * TICK
        if not fresh and sim.slow_links.get((m.from_, m.to), -1) >= sim.now:
            delay += rng.randint(10, 30) * TICK
        sim._at(sim.now + delay, Deliver(m))
        if dup and rng.random() < dup:
            sim._at(sim.now + rng.randint(lo, hi), Deliver(m))
