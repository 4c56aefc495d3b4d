"""The one Ready driver: the order in which every shell does a Ready's work.

Theory of operation. A shell (the node, the simulator, the scenario-test network) implements
:class:`ReadyIO`, a handful of I/O steps, and hands each Ready to :func:`drive_ready`, which
calls them in the order the core's contract gives (the ``core`` module docstring lists the same
order, and a test checks the two agree)::

    install_snapshot(rd.snapshot)         if any: state machine and LogStore reset to its point
    observe(rd)                           bookkeeping: soft state, new entries, dropped messages
    reconnect(rd.conf_state)              if the members changed: before anything is sent
    send(rd.messages)                     at once, while the fsync runs
    persist(rd)                           append + hard state + fsync (may run in background)
    apply(rd.committed_entries, rd.read_states)   already durable: while the fsync runs
    core.on_persisted(rd.number)          once persist is done
    send(rd.persisted_messages)           only after the fsync (votes, append acks)
    core.advance(rd)
    compact(rd.compact_to, conf_state)    if non-zero: the LogStore may drop up to there

``drive_ready`` is a coroutine that awaits only what a step returns: an I/O step returns None
when it is done, or an awaitable to wait for (the node's fsync in a worker thread). A shell with
synchronous I/O runs it with :func:`run_now`, which fails loudly if it would suspend. ``persist``
may also return :data:`PERSIST_LATER`: the shell then reports durability itself later, by
:func:`on_durable` (pipelined fsyncs: the core allows ``ready()`` again before the previous
Ready is durable); everything else goes on in the same order.

No asyncio here: a coroutine is a language feature, and whoever runs it (asyncio in the node,
the simulator's event queue, ``run_now``) chooses how to wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, Final, Protocol

from dengine.raft.messages import Message
from dengine.raft.ready import ReadState, Ready
from dengine.raft.types import ConfState, Entry, SnapshotMeta

if TYPE_CHECKING:
    from dengine.raft.core import RaftCore

__all__ = ["PERSIST_LATER", "PersistLater", "ReadyIO", "STEPS", "drive_ready", "on_durable", "run_now"]


class PersistLater:
    """The type of :data:`PERSIST_LATER`, its one instance."""

    def __repr__(self) -> str:
        return "PERSIST_LATER"


#: Returned by ``ReadyIO.persist``: the shell calls :func:`on_durable` itself once durable.
PERSIST_LATER: Final = PersistLater()

#: The steps of one Ready, in order (``send_persisted`` is ``send(rd.persisted_messages)``).
STEPS = ("install_snapshot", "observe", "reconnect", "send", "persist", "apply",
         "on_persisted", "send_persisted", "advance", "compact")


class ReadyIO(Protocol):
    """The I/O a shell does for the core. A step returns None when done, or an awaitable."""

    def install_snapshot(self, meta: SnapshotMeta) -> Awaitable[None] | None:
        """Restore the state machine from the received snapshot; reset the LogStore to it."""
        ...

    def observe(self, rd: Ready) -> None:
        """Bookkeeping before any I/O: soft state, new entries, dropped messages, traces."""
        ...

    def reconnect(self, conf_state: ConfState) -> None:
        """The members in force changed: connect to new peers, drop old ones."""
        ...

    def send(self, messages: list[Message]) -> None:
        """Hand messages to the transport (SNAPSHOT ones: stream our latest snapshot)."""
        ...

    def persist(self, rd: Ready) -> Awaitable[None] | PersistLater | None:
        """Append ``rd.entries`` (replacing any suffix), save ``rd.hard_state``, sync.

        None: durable now, with every earlier Ready. An awaitable: durable once it completes
        (apply runs meanwhile). ``PERSIST_LATER``: the shell reports it with ``on_durable``
        when it is (and must, while an earlier Ready is still on its way to disk: reporting
        this one durable vouches for every Ready numbered below it).
        """
        ...

    def apply(self, entries: list[Entry], read_states: list[ReadState]) -> None:
        """Apply committed entries in order, then serve the read states."""
        ...

    def compact(self, index: int, conf_state: ConfState) -> None:
        """Drop log entries up to ``index``; ``conf_state`` is the membership there."""
        ...


async def _wait(step: Awaitable[None] | None) -> None:
    if step is not None:
        await step


async def drive_ready(core: RaftCore, rd: Ready, io: ReadyIO) -> None:
    """Do everything ``rd`` asks, through ``io``, in the contract's order (module docstring)."""
    if rd.snapshot is not None:
        await _wait(io.install_snapshot(rd.snapshot))
    io.observe(rd)
    if rd.conf_state is not None:
        io.reconnect(rd.conf_state)
    if rd.messages:
        io.send(rd.messages)
    persisting = io.persist(rd)
    later = isinstance(persisting, PersistLater)
    try:
        # Committed entries are durable already (the core hands out only what is persisted
        # here and on a quorum): apply them while this Ready's fsync runs.
        if rd.committed_entries or rd.read_states:
            io.apply(rd.committed_entries, rd.read_states)
    finally:
        if not isinstance(persisting, PersistLater):
            await _wait(persisting)
    if not later:
        on_durable(core, rd.number, rd.persisted_messages, io)
    core.advance(rd)
    if rd.compact_to:
        io.compact(rd.compact_to, core.conf_state_at(rd.compact_to))


def on_durable(core: RaftCore, number: int, persisted_messages: list[Message],
               io: ReadyIO, send_first: bool = False) -> None:
    """Every Ready numbered ``<= number`` is durable: tell the core, send what waited.

    ``send_first`` sends before telling the core (etcd's async storage writes): the contract
    allows it, since those messages need only the fsync done, not the core told.
    """
    if send_first and persisted_messages:
        io.send(persisted_messages)
    core.on_persisted(number)
    if persisted_messages and not send_first:
        io.send(persisted_messages)


def run_now(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that must not suspend (a shell whose I/O steps return None)."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("drive_ready suspended under run_now: an I/O step returned an awaitable")
