"""The in-memory index of the Raft log: the term of every index from the snapshot to the end.

The log is ``[snapshot_index + 1, last_index]``; the term of ``snapshot_index`` itself is kept
(``snapshot_term``) so that consistency checks against the entry just before the first kept one
still work, as etcd's dummy entry does. Terms never decrease along the log.

Lookups of a compacted index answer :data:`TERM_COMPACTED`, of an index past the end
:data:`TERM_UNAVAILABLE` (``maybe_term``), or raise :class:`~dengine.errors.Compacted` /
:class:`~dengine.errors.IndexOutOfRange` (``term``).
"""

from __future__ import annotations

from collections.abc import Sequence

from dengine.errors import Compacted, IndexOutOfRange

TERM_COMPACTED = -1
TERM_UNAVAILABLE = -2
MAX_U64 = (1 << 64) - 1


def _check_u64(name: str, value: int) -> None:
    if not 0 <= value <= MAX_U64:
        raise OverflowError(f"{name}={value} is outside the unsigned 64-bit range")


class LogIndex:
    """Terms of the log entries after a snapshot point; reference implementation."""

    __slots__ = ("_snapshot_index", "_snapshot_term", "_terms")

    def __init__(self, snapshot_index: int = 0, snapshot_term: int = 0) -> None:
        _check_u64("snapshot_index", snapshot_index)
        _check_u64("snapshot_term", snapshot_term)
        self._snapshot_index = snapshot_index
        self._snapshot_term = snapshot_term
        self._terms: list[int] = []

    # -- positions -------------------------------------------------------------------------
    @property
    def snapshot_index(self) -> int:
        return self._snapshot_index

    @property
    def snapshot_term(self) -> int:
        return self._snapshot_term

    @property
    def first_index(self) -> int:
        """The first index still held (one past the snapshot), even when the log is empty."""
        return self._snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self._snapshot_index + len(self._terms)

    @property
    def last_term(self) -> int:
        return self._terms[-1] if self._terms else self._snapshot_term

    def __len__(self) -> int:
        return len(self._terms)

    # -- lookups ---------------------------------------------------------------------------
    def maybe_term(self, index: int) -> int:
        """Term at ``index``; TERM_COMPACTED below the snapshot, TERM_UNAVAILABLE past the end."""
        _check_u64("index", index)
        return self._term_at(index)

    def _term_at(self, index: int) -> int:
        if index < self._snapshot_index:
            return TERM_COMPACTED
        if index == self._snapshot_index:
            return self._snapshot_term
        if index > self.last_index:
            return TERM_UNAVAILABLE
        return self._terms[index - self._snapshot_index - 1]

    def term(self, index: int) -> int:
        """Term at ``index``; raises Compacted or IndexOutOfRange when it is not held."""
        t = self.maybe_term(index)
        if t == TERM_COMPACTED:
            raise Compacted(index, self.first_index)
        if t == TERM_UNAVAILABLE:
            raise IndexOutOfRange(index, self.last_index)
        return t

    def match_term(self, index: int, term: int) -> bool:
        """True when the entry at ``index`` is held (or is the snapshot point) with ``term``."""
        _check_u64("index", index)
        _check_u64("term", term)
        return self.maybe_term(index) == term

    # -- mutation --------------------------------------------------------------------------
    def append(self, term: int) -> int:
        """Append one entry of ``term`` at ``last_index + 1``; returns its index."""
        _check_u64("term", term)
        if term < self.last_term:
            raise ValueError(f"term {term} is below the last term {self.last_term}")
        _check_u64("index", self.last_index + 1)
        self._terms.append(term)
        return self.last_index

    def extend(self, terms: Sequence[int]) -> int:
        """Append entries with these terms in order; returns the new last index."""
        for t in terms:
            self.append(t)
        return self.last_index

    def truncate_after(self, index: int) -> None:
        """Drop every entry after ``index`` (a suffix); ``index`` may be the snapshot point."""
        _check_u64("index", index)
        if index < self._snapshot_index:
            raise Compacted(index, self.first_index)
        if index > self.last_index:
            raise IndexOutOfRange(index, self.last_index)
        del self._terms[index - self._snapshot_index :]

    def compact(self, index: int) -> None:
        """Drop every entry up to and including ``index``; it becomes the snapshot point."""
        _check_u64("index", index)
        if index < self._snapshot_index:
            raise Compacted(index, self.first_index)
        if index > self.last_index:
            raise IndexOutOfRange(index, self.last_index)
        term = self._term_at(index)
        del self._terms[: index - self._snapshot_index]
        self._snapshot_index = index
        self._snapshot_term = term

    def reset(self, snapshot_index: int, snapshot_term: int) -> None:
        """Forget the whole log and start after a snapshot at (index, term)."""
        _check_u64("snapshot_index", snapshot_index)
        _check_u64("snapshot_term", snapshot_term)
        self._snapshot_index = snapshot_index
        self._snapshot_term = snapshot_term
        self._terms = []

    # -- searches --------------------------------------------------------------------------
    def find_conflict(self, first_index: int, terms: Sequence[int]) -> int:
        """First index of the incoming entries ``terms`` (starting at ``first_index``) whose
        term differs from the local log or that lies past its end; 0 when every entry is
        already held with the same term.

        Entries at or below the snapshot point count as matching: they are committed, and
        committed entries agree everywhere (Log Matching, Raft §5.3). Every term is checked
        to be a u64, even past the conflict.
        """
        _check_u64("first_index", first_index)
        conflict = 0
        for offset, t in enumerate(terms):
            _check_u64("term", t)
            index = first_index + offset
            if conflict or index <= self._snapshot_index:
                continue
            if self._term_at(index) != t:
                conflict = index
        return conflict

    def last_index_with_term_at_most(self, term: int, max_index: int) -> int:
        """Largest index ``i <= max_index`` held in the log whose term is ``<= term``.

        Used by fast backtracking (etcd's findConflictByTerm). The snapshot point is the
        floor: when no held entry qualifies, ``snapshot_index`` is returned.
        """
        _check_u64("term", term)
        _check_u64("max_index", max_index)
        i = min(max_index, self.last_index)
        while i > self._snapshot_index:
            if self._term_at(i) <= term:
                return i
            i -= 1
        return self._snapshot_index

    def first_index_of_term(self, term: int) -> int:
        """Smallest held index whose term equals ``term``; 0 when no held entry has it."""
        _check_u64("term", term)
        for offset, t in enumerate(self._terms):
            if t == term:
                return self._snapshot_index + 1 + offset
        return 0

    def terms(self, lo: int, hi: int) -> list[int]:
        """Terms of the held entries in ``[lo, hi)``; raises when the range is not held."""
        _check_u64("lo", lo)
        _check_u64("hi", hi)
        if lo < self.first_index:
            raise Compacted(lo, self.first_index)
        if hi > self.last_index + 1:
            raise IndexOutOfRange(hi - 1, self.last_index)
        if hi <= lo:
            return []
        base = self._snapshot_index + 1
        return self._terms[lo - base : hi - base]
