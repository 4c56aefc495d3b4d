"""A log store in memory: for tests, and for users who want no durability at all.

Nothing survives the process: a restart starts from an empty log. It follows the same contract
as the durable adapters (see :mod:`dengine.storage.base`) so that the conformance suite and the
Raft tests can use it in their place.
"""

from __future__ import annotations

from collections.abc import Sequence

from dengine._core import LogIndex
from dengine.raft.types import Entry, HardState, SnapshotMeta
from dengine.storage.base import IndexedLog, budget, check_identity, check_range


class MemoryLogStore(IndexedLog):
    """Entries in a list; ``_index`` holds their terms, its snapshot point is the anchor."""

    durable = False

    def __init__(self, cluster_id: int | None = None, node_id: int | None = None) -> None:
        self._entries: list[Entry] = []
        self._index = LogIndex()
        self._hard_state = HardState()
        self._snapshot_meta: SnapshotMeta | None = None
        self._identity: tuple[int, int] | None = None
        if cluster_id is not None and node_id is not None:
            self.bind_identity(cluster_id, node_id)

    # -- reader (first_index, last_index and term come from IndexedLog) ----------------------
    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        check_range(lo, hi, self.first_index(), self.last_index())
        base = self._index.first_index
        return budget(self._entries[lo - base : hi - base], max_bytes)

    # -- writer ------------------------------------------------------------------------------
    def append(self, entries: Sequence[Entry]) -> None:
        entries = self._batch_to_write(entries)
        if not entries:
            return
        held = [Entry(e.term, e.index, e.kind, bytes(e.data)) for e in entries]
        start = held[0].index
        del self._entries[start - self.first_index() :]
        self._index.truncate_after(start - 1)
        self._entries.extend(held)
        self._index.extend([e.term for e in held])

    def truncate_suffix(self, index: int) -> None:
        if not self._suffix_to_drop(index):
            return
        del self._entries[index - self.first_index() :]
        self._index.truncate_after(index - 1)

    def compact(self, index: int) -> None:
        if index <= self._index.snapshot_index:
            return
        self.term(index)  # IndexOutOfRange past the end, before anything changes
        del self._entries[: index - self._index.snapshot_index]
        self._index.compact(index)

    def reset(self, index: int, term: int) -> None:
        self._index.reset(index, term)
        self._entries = []

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass

    # -- small records -----------------------------------------------------------------------
    def hard_state(self) -> HardState:
        return self._hard_state

    def save_hard_state(self, hs: HardState) -> None:
        self._hard_state = hs

    def snapshot_meta(self) -> SnapshotMeta | None:
        return self._snapshot_meta

    def save_snapshot_meta(self, meta: SnapshotMeta) -> None:
        self._snapshot_meta = meta

    def identity(self) -> tuple[int, int] | None:
        return self._identity

    def bind_identity(self, cluster_id: int, node_id: int) -> None:
        check_identity(self._identity, cluster_id, node_id)
        self._identity = (cluster_id, node_id)
