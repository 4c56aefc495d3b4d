"""The Raft log as the core sees it: what the shell persisted, plus what it has not yet.

Theory of operation. The log is ``[first_index, last_index]`` after a snapshot point. Terms of
every held index live in a :class:`~dengine._core.LogIndex` kernel (term lookups are the hot
path of every consistency check). Entry payloads live in two places:

- ``storage``: a read-only :class:`LogReader` view of the entries the shell has durably
  persisted (the node's LogStore). The core never writes through it.
- ``unstable``: entries the core appended (as leader) or accepted (as follower) that the shell
  has not yet reported persisted. They go out in a Ready; ``on_persisted`` drops them from here
  once the shell says they are durable (``stable_to``). ``handed_to`` marks how far they were
  already handed out, so a Ready never asks twice.

A follower that truncates a conflicting suffix may truncate below the persisted boundary: the
unstable part then restarts at the conflict, and the shell's next append replaces the stored
suffix (a LogStore ``append`` replaces everything from its first index on).

Invariants: ``first_index - 1 <= applied <= committed <= last_index``; ``applied`` counts
entries handed out to apply; committed entries are handed out only once persisted locally
(``persisted_index``), so a restarted node never holds an applied index past its own log.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from itertools import accumulate
from operator import itemgetter
from typing import Protocol, runtime_checkable

from dengine._core import LogIndex
from dengine.errors import Compacted, IndexOutOfRange, InvariantViolation
from dengine.raft.types import ConfState, Entry, SnapshotMeta

__all__ = ["LogReader", "MemoryStorage", "RaftLog", "iter_chunks", "limit_size"]

_DATA = itemgetter(3)  # Entry.data


@runtime_checkable
class LogReader(Protocol):
    """Read-only view of the persisted log that the shell gives the core.

    ``first_index() - 1`` is the snapshot point; ``term`` must answer for it too. When the
    log is empty, ``last_index() == first_index() - 1``. Reads of compacted indexes raise
    :class:`~dengine.errors.Compacted`, past the end :class:`~dengine.errors.IndexOutOfRange`.
    """

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries in ``[lo, hi)``, stopping once ``max_bytes`` of payload is reached (always
        at least one entry when the range is not empty)."""
        ...

    def term(self, index: int) -> int:
        """Term of the entry at ``index`` (or of the snapshot point, ``first_index() - 1``)."""
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...


def iter_chunks(
    reader: LogReader, lo: int, hi: int, max_bytes: int = 16 << 20
) -> Iterator[list[Entry]]:
    """Entries ``[lo, hi)`` read a bounded batch at a time (a restart must not load a whole
    large log into memory at once)."""
    while lo < hi:
        chunk = reader.entries(lo, hi, max_bytes)
        if not chunk:
            return
        yield chunk
        lo = chunk[-1].index + 1


def limit_size(entries: list[Entry], max_bytes: int | None) -> list[Entry]:
    """The longest prefix of ``entries`` within ``max_bytes`` of payload (at least one)."""
    if max_bytes is None or not entries:
        return entries
    # Running totals in C (map/accumulate), then a binary search: this is on the hot path.
    totals = list(accumulate(map(len, map(_DATA, entries))))
    if totals[-1] <= max_bytes:
        return entries
    return entries[: max(bisect_right(totals, max_bytes), 1)]


class MemoryStorage:
    """An in-memory persisted log: a :class:`LogReader` plus the writes a shell would do.

    Used by the scenario tests, the simulator and the benchmark. ``append`` replaces any held
    suffix from the first appended index, as a LogStore does.
    """

    def __init__(self, snapshot: SnapshotMeta | None = None) -> None:
        self.snapshot = snapshot or SnapshotMeta()
        self._entries: list[Entry] = []
        self.hard_state = None

    def first_index(self) -> int:
        return self.snapshot.index + 1

    def last_index(self) -> int:
        return self.snapshot.index + len(self._entries)

    def term(self, index: int) -> int:
        base = self.snapshot.index
        if index == base:
            return self.snapshot.term
        if index < base:
            raise Compacted(index, base + 1)
        if index > self.last_index():
            raise IndexOutOfRange(index, self.last_index())
        return self._entries[index - base - 1].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        base = self.snapshot.index
        if lo <= base:
            raise Compacted(lo, base + 1)
        if hi > self.last_index() + 1:
            raise IndexOutOfRange(hi - 1, self.last_index())
        return limit_size(self._entries[lo - base - 1 : hi - base - 1], max_bytes)

    def append(self, entries: Sequence[Entry]) -> None:
        """Persist ``entries``; any held entry at or after ``entries[0].index`` is replaced."""
        if not entries:
            return
        base = self.snapshot.index
        first = entries[0].index
        if first > self.last_index() + 1:
            raise IndexOutOfRange(first, self.last_index())
        if first <= base:
            # Already covered by the snapshot: keep only what lies after it.
            entries = [e for e in entries if e.index > base]
            if not entries:
                return
            first = entries[0].index
        del self._entries[first - base - 1 :]
        self._entries.extend(entries)

    def compact(self, index: int, conf_state: ConfState | None = None) -> None:
        """Drop entries up to ``index``, which becomes the snapshot point; ``conf_state`` is
        the membership there (``RaftCore.conf_state_at``), kept for a restart."""
        base = self.snapshot.index
        if index <= base:
            return
        term = self.term(index)
        del self._entries[: index - base]
        self.snapshot = SnapshotMeta(index, term, conf_state or self.snapshot.conf_state)

    def apply_snapshot(self, meta: SnapshotMeta) -> None:
        """Replace the whole log by a snapshot point."""
        self.snapshot = meta
        self._entries = []


class RaftLog:
    """Unstable entries, the term index, and the persisted view; commit and apply positions."""

    __slots__ = (
        "storage",
        "index",
        "unstable",
        "unstable_offset",
        "handed_to",
        "committed",
        "applied",
        "last_conflict",
    )

    def __init__(self, storage: LogReader, committed: int = 0, applied: int = 0) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.index = LogIndex(first - 1, storage.term(first - 1))
        for chunk in iter_chunks(storage, first, last + 1):
            self.index.extend([e.term for e in chunk])
        #: Entries not yet reported durable; ``unstable[0]`` is at ``unstable_offset``.
        self.unstable: list[Entry] = []
        #: ``first_index <= unstable_offset <= last_index + 1``; below it, ``storage`` holds them.
        self.unstable_offset = last + 1
        #: Handed out in a Ready up to here: ``unstable_offset - 1 <= handed_to <= last_index``
        #: (``handed_out`` checks the upper bound).
        self.handed_to = last
        snap = first - 1
        # Applied entries were committed, even if the saved commit index lags (it is saved
        # lazily): never hand them out to apply twice.
        #: ``applied <= committed <= last_index``, never back (``commit_to`` checks).
        self.committed = min(max(committed, applied, snap), last)
        #: ``first_index - 1 <= applied <= committed``, never back (``applied_to`` checks).
        self.applied = min(max(applied, snap), self.committed)
        #: First index the last ``maybe_append`` wrote (0 when it wrote nothing new).
        self.last_conflict = 0

    # -- positions -------------------------------------------------------------------------
    @property
    def first_index(self) -> int:
        return self.index.first_index

    @property
    def last_index(self) -> int:
        return self.index.last_index

    @property
    def last_term(self) -> int:
        return self.index.last_term

    @property
    def persisted_index(self) -> int:
        """Last index the shell has reported durable."""
        return self.unstable_offset - 1

    def term(self, index: int) -> int:
        """Term at ``index``; -1 when compacted, -2 when past the end (kernel sentinels)."""
        return self.index.maybe_term(index)

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: is a candidate's log at least as up to date as ours?"""
        my_term = self.index.last_term
        return last_term > my_term or (last_term == my_term and last_index >= self.last_index)

    # -- reads -----------------------------------------------------------------------------
    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)`` from storage and then the unstable part, within ``max_bytes``."""
        if lo < self.first_index:
            raise Compacted(lo, self.first_index)
        hi = min(hi, self.last_index + 1)
        if lo >= hi:
            return []
        off = self.unstable_offset
        if lo >= off:
            return limit_size(self.unstable[lo - off : hi - off], max_bytes)
        stored = self.storage.entries(lo, min(hi, off), max_bytes)
        if hi <= off or len(stored) < min(hi, off) - lo:
            return stored
        if max_bytes is not None:
            used = sum(len(e.data) for e in stored)
            if used >= max_bytes:
                return stored
            return stored + limit_size(self.unstable[: hi - off], max_bytes - used)
        return stored + self.unstable[: hi - off]

    # -- writes ----------------------------------------------------------------------------
    def append(self, entries: Sequence[Entry]) -> int:
        """Append entries that follow the last one (a leader's proposals); new last index."""
        self.unstable.extend(entries)
        return self.index.extend([e.term for e in entries])

    def maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: Sequence[Entry]
    ) -> int:
        """A follower's AppendEntries consistency check and conflict resolution (Raft §5.3).

        Returns the last index now known to match the leader, or -1 when the entry before
        ``entries`` does not match ours (the caller rejects with a hint).
        """
        self.last_conflict = 0
        if self.index.maybe_term(prev_index) != prev_term:
            return -1
        last_new = prev_index + len(entries)
        if entries:
            terms = [e.term for e in entries]
            conflict = self.index.find_conflict(prev_index + 1, terms)
            if conflict:
                if conflict <= self.committed:
                    # Never truncate committed entries; a correct leader cannot ask it.
                    return -1
                k = conflict - prev_index - 1
                self._truncate_and_append(entries[k:], terms[k:])
                self.last_conflict = conflict
        if commit > self.committed:
            self.commit_to(min(commit, last_new))
        return last_new

    def _truncate_and_append(self, entries: Sequence[Entry], terms: list[int]) -> None:
        first = entries[0].index
        if first <= self.index.last_index:
            self.index.truncate_after(first - 1)
        self.index.extend(terms)
        off = self.unstable_offset
        if first >= off:
            del self.unstable[first - off :]
            self.unstable.extend(entries)
        else:
            self.unstable = list(entries)
            self.unstable_offset = first
        if self.handed_to >= first:
            self.handed_to = first - 1

    def commit_to(self, index: int) -> bool:
        """Move the commit index forward (never back); True when it moved.

        Raises InvariantViolation past the last index: nothing commits that we do not hold.
        """
        if index > self.committed:
            if index > self.index.last_index:
                raise InvariantViolation(
                    f"commit index {index} is past the last index {self.index.last_index}")
            self.committed = index
            return True
        return False

    # -- the Ready cycle -------------------------------------------------------------------
    def unstable_to_hand_out(self) -> list[Entry]:
        """Unstable entries not yet handed out in a Ready."""
        start = self.handed_to + 1 - self.unstable_offset
        if start >= len(self.unstable):
            return []
        return self.unstable[start:]

    def handed_out(self, index: int) -> None:
        """The unstable entries up to ``index`` went out in a Ready, for the shell to persist.

        Raises InvariantViolation past the last index: nothing is handed out that we do not hold.
        """
        if index > self.index.last_index:
            raise InvariantViolation(
                f"entries handed out up to {index}, past the last index {self.index.last_index}")
        self.handed_to = index

    def stable_to(self, index: int, term: int) -> None:
        """The shell persisted entries up to ``index`` (whose term was ``term`` then)."""
        if index < self.unstable_offset or self.index.maybe_term(index) != term:
            return
        del self.unstable[: index - self.unstable_offset + 1]
        self.unstable_offset = index + 1

    def has_next_committed(self) -> bool:
        return min(self.committed, self.persisted_index) > self.applied

    def next_committed(self, max_bytes: int | None) -> list[Entry]:
        """Committed, persisted entries not yet handed out to apply."""
        hi = min(self.committed, self.persisted_index)
        if hi <= self.applied:
            return []
        return self.entries(self.applied + 1, hi + 1, max_bytes)

    def applied_to(self, index: int) -> None:
        """Entries up to ``index`` were handed out to apply (never back).

        Raises InvariantViolation past the commit index: nothing uncommitted is applied.
        """
        if index > self.applied:
            if index > self.committed:
                raise InvariantViolation(
                    f"applied index {index} is past the commit index {self.committed}")
            self.applied = index

    def compact(self, index: int) -> None:
        """Forget the entries up to ``index`` (applied ones only): they live in a snapshot."""
        if index < self.first_index or index > self.applied:
            return
        self.index.compact(index)

    def restore(self, meta: SnapshotMeta) -> None:
        """Forget the whole log and start after a snapshot."""
        self.index.reset(meta.index, meta.term)
        self.unstable = []
        self.unstable_offset = meta.index + 1
        self.handed_to = meta.index
        self.committed = meta.index
        self.applied = meta.index
