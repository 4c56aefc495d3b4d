"""A simulated node's shell: the I/O steps ``raft.driver.drive_ready`` calls (``SimIO``).

In the node's order a turn's ``persist`` returns a :class:`DiskWait`, and the turn (a coroutine)
waits on it until the simulator's disk event resumes it; in the pipelined order it returns
``PERSIST_LATER`` and the disk event reports durability itself.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

from dengine.raft.driver import PERSIST_LATER, PersistLater
from dengine.raft.messages import Message
from dengine.raft.ready import ReadState, Ready
from dengine.raft.types import ConfState, Entry, SnapshotMeta

if TYPE_CHECKING:
    from dengine.testing.sim import SimNode, Simulator

__all__ = ["DiskWait", "SimIO"]


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
        self.sim._install_snapshot(self.n, meta)

    def observe(self, rd: Ready) -> None:
        n = self.n
        self.sim.trace.append((self.sim.now, "ready", n.id, rd))
        if rd.messages:
            self.sim.contract.check_leaving(rd.messages, exact=True)
        if rd.entries:
            prev = n.core.log.term(rd.entries[0].index - 1)
            self.sim.inv.on_entries(n.id, rd.entries, prev)

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
        self.sim._schedule_disk(n)
        return PERSIST_LATER if pipelined else DiskWait()

    def apply(self, entries: list[Entry], read_states: list[ReadState]) -> None:
        self.sim._apply(self.n, entries, read_states)

    def compact(self, index: int, conf_state: ConfState) -> None:
        self.n.storage.compact(index, conf_state)
