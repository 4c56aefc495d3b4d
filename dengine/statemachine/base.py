"""The state machine seam: what the node applies committed entries to.

Theory of operation. The node hands :meth:`StateMachine.apply` each run of committed entries in
log order, exactly once per index across restarts: a machine records the index (and term) it
has applied *atomically with* the effects of those entries, so after a crash it reports the
index it really reached and the node resumes from the next one. ``apply`` returns one result per
entry; a command that cannot be executed yields a deterministic result (an exception instance,
never a raised one) so that every replica stays identical.

A snapshot is a consistent point-in-time copy: :meth:`StateMachine.snapshot` pins it at once
and returns a :class:`SnapshotSource` whose chunks may be read later while ``apply`` goes on.
:meth:`StateMachine.restore` replaces the whole state from chunks and must be atomic: a crash
in the middle leaves the old state or the new one. The helpers below move chunks through a
:class:`~dengine.storage.snapshot.SnapshotStore`, which checksums each chunk and the whole file
and verifies all of it before :meth:`restore` sees a byte.

Optionally a machine says it is ``durable`` (its data and applied index survive a restart,
written atomically together) and offers ``sync()`` (make all applied so far durable). Such a
machine is its own snapshot: the node compacts the log behind its applied index after one
``sync()`` and writes no snapshot file; followers that need a snapshot are sent a stream of
:meth:`StateMachine.snapshot` made when they need it. A machine without these is copied to a
snapshot file at each snapshot point (a full copy: O(data) per snapshot), which a restart
restores from when the log no longer reaches back to its applied index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, TypeGuard, runtime_checkable

from dengine.raft.types import ConfState, Entry, SnapshotMeta
from dengine.storage.snapshot import SnapshotReader, SnapshotStore


@runtime_checkable
class SnapshotSource(Protocol):
    """A pinned point-in-time copy: ``index``/``term`` it covers, its chunks, then close."""

    index: int
    term: int

    def chunks(self) -> Iterator[bytes]: ...
    def close(self) -> None: ...


@runtime_checkable
class StateMachine(Protocol):
    """What a replicated state machine offers the node (see the module docstring)."""

    def apply(self, entries: Sequence[Entry]) -> list[object]: ...
    def applied_index(self) -> int: ...
    def applied_term(self) -> int: ...
    def snapshot(self) -> SnapshotSource: ...
    def restore(self, chunks: Iterable[bytes]) -> None: ...
    def close(self) -> None: ...


class DurableStateMachine(StateMachine, Protocol):
    """A machine that persists its own data and applied index (see the module docstring)."""

    @property
    def durable(self) -> bool: ...
    def sync(self) -> None: ...


def is_durable(sm: object) -> TypeGuard[DurableStateMachine]:
    """True when ``sm`` persists its own data and applied index (see the module docstring)."""
    return bool(getattr(sm, "durable", False)) and callable(getattr(sm, "sync", None))


def take_snapshot(
    sm: StateMachine, store: SnapshotStore, conf_state: ConfState, keep: int = 1
) -> tuple[SnapshotMeta, str]:
    """Write ``sm``'s current state as a snapshot file; returns its metadata and path."""
    source = sm.snapshot()
    try:
        meta = SnapshotMeta(source.index, source.term, conf_state)
        path = store.write(meta, source.chunks(), keep=keep)
    finally:
        source.close()
    return meta, path


def restore_snapshot(sm: StateMachine, reader: SnapshotReader) -> SnapshotMeta:
    """Verify every checksum of the file, then restore ``sm`` from it; returns its metadata."""
    reader.verify()
    sm.restore(reader.chunks())
    return reader.meta
