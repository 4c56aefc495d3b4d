"""The simulator's events: frozen dataclasses, one per kind, run by ``Simulator``'s handler
table (``Simulator.HANDLERS``) in simulated-time order."""

from __future__ import annotations

from dataclasses import dataclass, field

from dengine.raft.messages import Message

__all__ = ["ClientStep", "Deliver", "DiskDone", "Event", "Fault", "NODE_EVENTS",
           "SnapshotArrives", "SnapshotFails", "StopFaults", "TICK", "Tick"]

#: Simulated time units per tick (here, beside the events, so that every simulator module can
#: import it without an import cycle through ``sim``).
TICK = 100


@dataclass(frozen=True, slots=True)
class Tick:
    """Node ``node``'s clock ticks (ignored once the node restarted: ``gen`` changed)."""

    node: int
    gen: int


@dataclass(frozen=True, slots=True)
class Deliver:
    """A message reaches its destination (``late``: a copy the network held back, which a
    cut made after it was sent does not stop)."""

    msg: Message
    late: bool = False


@dataclass(frozen=True, slots=True)
class SnapshotArrives:
    """A snapshot stream ends at its receiver with ``data``; the sender hears ``report_ok``."""

    msg: Message
    data: dict = field(compare=False)
    report_ok: bool = True


@dataclass(frozen=True, slots=True)
class SnapshotFails:
    """A snapshot stream broke: the sender hears it failed."""

    msg: Message


@dataclass(frozen=True, slots=True)
class DiskDone:
    """Node ``node``'s fsync completes (ignored after a crash: ``gen`` changed)."""

    node: int
    gen: int


@dataclass(frozen=True, slots=True)
class ClientStep:
    """The clients act (every tick)."""


@dataclass(frozen=True, slots=True)
class Fault:
    """The fault schedule picks the next fault."""


@dataclass(frozen=True, slots=True)
class StopFaults:
    """The fault phase ends: links heal, every node comes back."""


Event = Tick | Deliver | SnapshotArrives | SnapshotFails | DiskDone | ClientStep | Fault | StopFaults

#: The events scripted scenarios run (``Simulator.run_until``): no clients, no faults.
NODE_EVENTS = (Tick, Deliver, SnapshotArrives, SnapshotFails, DiskDone)
