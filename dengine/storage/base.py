"""The log store seam: what the Raft core reads and what the node persists.

Theory of operation. A log store holds a contiguous run of entries ``first_index() ..
last_index()`` plus an *anchor*: the index and term of the entry just before the first one
(``first_index() - 1``), which is the last entry covered by a snapshot once the prefix has been
compacted. A fresh store has anchor ``(0, 0)``, so ``first_index() == 1`` and
``last_index() == 0``. Every method that returns has done its work durably (when the store was
opened with ``sync=True``): the caller never needs a separate flush.

* ``append(entries)``: a contiguous batch with non-decreasing terms. Its first index may be
  anywhere in ``first_index() .. last_index() + 1``; an entry at index i replaces the held
  suffix from i (Raft's conflict rule, thesis §3.5). Entries at or below the anchor are
  covered by the snapshot and skipped. Anything else is :class:`InvalidAppend` and nothing is
  written.
* ``truncate_suffix(index)`` drops entries ``>= index``; below the first index it raises
  :class:`Compacted` (compacted entries are committed and must never be dropped).
* ``compact(index)`` drops entries ``<= index``; the anchor becomes ``(index, term(index))``.
* ``reset(index, term)`` drops everything and sets the anchor, for installing a snapshot.
* ``entries(lo, hi, max_bytes)``, ``term(index)``, ``first_index()``, ``last_index()`` are the
  reader the Raft core uses; they raise :class:`Compacted` below the anchor and
  :class:`IndexOutOfRange` past the end. ``max_bytes`` counts payload bytes; a non-empty
  range always yields at least one entry.

Hard state, the latest snapshot's metadata and the identity (cluster id, node id) are small
records kept beside the log, each replaced atomically.

``sync=False`` at open (benchmarks, or a caller that groups many writes under one fsync) makes
writes return before they are durable; ``sync()`` then makes everything written so far durable
with one fsync. With ``sync=True`` ``sync()`` costs nothing: there is nothing left to sync.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from dengine._core import LogIndex
from dengine.errors import ClusterMismatch, Compacted, IndexOutOfRange, InvalidAppend
from dengine.raft.log import LogReader  # the read side the Raft core uses; one definition
from dengine.raft.types import Entry, HardState, SnapshotMeta


@runtime_checkable
class LogStore(LogReader, Protocol):
    """A durable Raft log with its hard state, snapshot metadata and identity."""

    def append(self, entries: Sequence[Entry]) -> None: ...
    def truncate_suffix(self, index: int) -> None: ...
    def compact(self, index: int) -> None: ...
    def reset(self, index: int, term: int) -> None: ...
    def hard_state(self) -> HardState: ...
    def save_hard_state(self, hs: HardState) -> None: ...
    def snapshot_meta(self) -> SnapshotMeta | None: ...
    def save_snapshot_meta(self, meta: SnapshotMeta) -> None: ...
    def identity(self) -> tuple[int, int] | None: ...
    def bind_identity(self, cluster_id: int, node_id: int) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...


def entry_bytes(e: Entry) -> int:
    """What one entry counts for against a read budget: its payload (as the Raft core counts)."""
    return len(e.data)


def check_batch(
    entries: Sequence[Entry], first: int, last: int, last_term_of
) -> Sequence[Entry]:
    """Refuse a batch that would break the log; return the part to write.

    Indexes must rise by one and terms must not fall, inside the batch and against the entry
    held just before it. Entries at or below the anchor (``first - 1``) are already covered
    by the snapshot and are left out, as etcd's storage does; the rest must start in
    ``first .. last + 1``. ``last_term_of(i)`` is the held term at i.
    """
    prev = entries[0]
    for e in entries:
        if e.term <= 0 or e.term >= 1 << 64 or e.kind < 0 or e.kind > 255:
            raise InvalidAppend(f"entry {e.index} has a term or kind out of range")
        if e is not prev and e.index != prev.index + 1:
            raise InvalidAppend(f"entry index {e.index} does not follow {prev.index}")
        if e.term < prev.term:
            raise InvalidAppend(f"entry {e.index} has term {e.term} below the previous {prev.term}")
        prev = e
    if entries[0].index < first:
        entries = [e for e in entries if e.index >= first]
        if not entries:
            return entries
    start = entries[0].index
    if start > last + 1:
        raise InvalidAppend(f"first entry index {start} leaves a gap after last index {last}")
    held = last_term_of(start - 1)
    if entries[0].term < held:
        raise InvalidAppend(f"entry {start} has term {entries[0].term} below the held {held}")
    return entries


def check_range(lo: int, hi: int, first: int, last: int) -> None:
    """Validate a read of ``[lo, hi)`` against the held entries."""
    if lo > hi:
        raise ValueError(f"entries({lo}, {hi}): lo is above hi")
    if lo < first:
        raise Compacted(lo, first)
    if hi > last + 1:
        raise IndexOutOfRange(hi - 1, last)


def check_identity(held: tuple[int, int] | None, cluster_id: int, node_id: int) -> None:
    """Raise ClusterMismatch when the directory belongs to another cluster or node."""
    if held is None:
        return
    if held[0] != cluster_id:
        raise ClusterMismatch(held[0], cluster_id, "data directory cluster id")
    if held[1] != node_id:
        raise ClusterMismatch(held[1], node_id, "data directory node id")


def budget(entries: list[Entry], max_bytes: int | None) -> list[Entry]:
    """Cut a read to ``max_bytes``, always keeping at least the first entry (etcd's rule)."""
    if max_bytes is None or not entries:
        return entries
    total = 0
    for n, e in enumerate(entries):
        total += entry_bytes(e)
        if total > max_bytes and n > 0:
            return entries[:n]
    return entries


class IndexedLog:
    """What a store's term index answers: positions, terms, and the checks before a write.

    A store sets ``self._index`` to a :class:`~dengine._core.LogIndex` whose snapshot point is
    its anchor and keeps it in step with what it holds; ``entries`` and the writes stay the
    store's own. The kernel refuses an index outside 64 bits with OverflowError; the reader
    promised Compacted below the anchor and IndexOutOfRange past the end, so those are what
    ``term`` raises.
    """

    __slots__ = ()
    _index: LogIndex

    def first_index(self) -> int:
        return self._index.first_index

    def last_index(self) -> int:
        return self._index.last_index

    def term(self, index: int) -> int:
        try:
            return self._index.term(index)
        except OverflowError:
            if index < 0:
                raise Compacted(index, self._index.first_index) from None
            raise IndexOutOfRange(index, self._index.last_index) from None

    def _batch_to_write(self, entries: Sequence[Entry]) -> Sequence[Entry]:
        """The part of an ``append`` batch to write (see :func:`check_batch`); may be empty."""
        if not entries:
            return entries
        return check_batch(entries, self._index.first_index, self._index.last_index, self.term)

    def _suffix_to_drop(self, index: int) -> bool:
        """True when ``truncate_suffix(index)`` has entries to drop; Compacted below the first."""
        first = self._index.first_index
        if index < first:
            raise Compacted(index, first)
        return index <= self._index.last_index


class NullLogger:
    """Stands in when no structlog logger is passed: says nothing."""

    def bind(self, **_kw: object) -> NullLogger:
        return self

    def _drop(self, *_a: object, **_kw: object) -> None:
        return None

    debug = info = warning = error = critical = _drop
