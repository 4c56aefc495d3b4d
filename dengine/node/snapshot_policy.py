"""When to take a snapshot: by applied entries, by applied bytes, or by time (first one due).

A count of entries alone lets a log of large entries grow far before anything is compacted,
and a trickle of writes keeps a long log for hours; so, as d-engine's composite policy does,
a snapshot is due once any of three limits is reached since the last one:

* ``raft.snapshot_interval_entries`` entries applied;
* ``raft.snapshot_interval_bytes`` bytes of entry payload applied (what the log holds);
* ``raft.snapshot_interval_s`` seconds passed, if at least one entry was applied (0: off).

It also bounds the tail of entries kept behind a snapshot for slow followers in bytes
(``raft.compaction_tail_bytes``) as well as in entries: a tail of a thousand 300 KB batches
would otherwise hold 300 MB of log that the state machine already holds.

The policy only counts; the node decides what a snapshot costs. A state machine that persists
its own data and applied index (the RocksDB KV machine) is its own snapshot, so "taking" one
is an fsync of its WAL and a metadata record, O(changes); a memory machine writes a full file.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

from dengine.raft.types import Entry

__all__ = ["SnapshotPolicy"]


class SnapshotPolicy:
    """Counts what was applied since the last snapshot and says when the next one is due."""

    __slots__ = ("max_entries", "max_bytes", "max_seconds", "tail_bytes", "_clock", "_index",
                 "_bytes", "_since", "_total", "_marks")

    def __init__(self, max_entries: int, max_bytes: int, max_seconds: float,
                 clock: Callable[[], float] = time.monotonic, tail_bytes: int = 0) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.tail_bytes = tail_bytes  # 0: no byte bound on the kept tail
        self._clock = clock
        self._index = 0
        self._bytes = 0
        self._since = clock()
        self._total = 0  # payload bytes applied since start
        #: (last index of an applied batch, ``_total`` after it), oldest first.
        self._marks: deque[tuple[int, int]] = deque()

    @classmethod
    def from_config(cls, raft) -> SnapshotPolicy:
        return cls(raft.snapshot_interval_entries, raft.snapshot_interval_bytes,
                   raft.snapshot_interval_s, tail_bytes=raft.compaction_tail_bytes)

    def on_applied(self, entries: Sequence[Entry]) -> None:
        """Count the payload bytes of entries just handed to the state machine."""
        if not entries:
            return
        n = 0
        for e in entries:
            n += len(e.data)
        self._bytes += n
        self._total += n
        if self.tail_bytes:
            self._marks.append((entries[-1].index, self._total))

    def keep_entries(self, index: int) -> int | None:
        """How many entries behind a snapshot at ``index`` fit in ``tail_bytes`` (at batch
        granularity, rounding down), or None when that is not bounded or not known."""
        if not self.tail_bytes or not self._marks:
            return None
        marks = self._marks
        at = None
        for last, total in reversed(marks):
            if last <= index:
                at = total
                break
        if at is None:
            return None
        keep_from = index
        for last, total in reversed(marks):
            if last > index:
                continue
            if at - total > self.tail_bytes:
                break
            keep_from = last
        # Batches wholly older than what is kept are never needed again.
        while len(marks) > 1 and marks[1][0] <= keep_from:
            marks.popleft()
        return index - keep_from

    def due(self, applied_index: int) -> bool:
        """True when a snapshot at ``applied_index`` should be taken now."""
        grown = applied_index - self._index
        if grown <= 0:
            return False
        if grown >= self.max_entries or self._bytes >= self.max_bytes:
            return True
        return bool(self.max_seconds) and self._clock() - self._since >= self.max_seconds

    def taken(self, index: int) -> None:
        """A snapshot at ``index`` was taken (or installed): start counting again."""
        if index >= self._index:
            self._index = index
            self._bytes = 0
            self._since = self._clock()
