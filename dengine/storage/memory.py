"""A log store in memory: for tests, and for users who want no durability at all.

Nothing survives the process: a restart starts from an empty log. It follows the same contract
as the durable adapters (see :mod:`dengine.storage.base`) so that the conformance suite and the
Raft tests can use it in their place.
"""

from __future__ import annotations

from collections.abc import Sequence

from dengine.errors import Compacted, IndexOutOfRange
from dengine.raft.types import Entry, HardState, SnapshotMeta
from dengine.storage.base import budget, check_batch, check_identity, check_range


class MemoryLogStore:
    """Entries in a list; ``_anchor`` is (index, term) of the entry before the first held."""

    durable = False

    def __init__(self, cluster_id: int | None = None, node_id: int | None = None) -> None:
        self._entries: list[Entry] = []
        self._anchor = (0, 0)
        self._hard_state = HardState()
        self._snapshot_meta: SnapshotMeta | None = None
        self._identity: tuple[int, int] | None = None
        if cluster_id is not None and node_id is not None:
            self.bind_identity(cluster_id, node_id)

    # -- reader ------------------------------------------------------------------------------
    def first_index(self) -> int:
        return self._anchor[0] + 1

    def last_index(self) -> int:
        return self._anchor[0] + len(self._entries)

    def term(self, index: int) -> int:
        anchor_index, anchor_term = self._anchor
        if index == anchor_index:
            return anchor_term
        if index < anchor_index:
            raise Compacted(index, anchor_index + 1)
        if index > self.last_index():
            raise IndexOutOfRange(index, self.last_index())
        return self._entries[index - anchor_index - 1].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        check_range(lo, hi, self.first_index(), self.last_index())
        base = self._anchor[0] + 1
        return budget(self._entries[lo - base : hi - base], max_bytes)

    # -- writer ------------------------------------------------------------------------------
    def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        entries = check_batch(entries, self.first_index(), self.last_index(), self.term)
        if not entries:
            return
        del self._entries[entries[0].index - self.first_index() :]
        self._entries.extend(Entry(e.term, e.index, e.kind, bytes(e.data)) for e in entries)

    def truncate_suffix(self, index: int) -> None:
        if index < self.first_index():
            raise Compacted(index, self.first_index())
        del self._entries[index - self.first_index() :]

    def compact(self, index: int) -> None:
        if index < self._anchor[0]:
            return
        term = self.term(index)
        del self._entries[: index - self._anchor[0]]
        self._anchor = (index, term)

    def reset(self, index: int, term: int) -> None:
        self._entries = []
        self._anchor = (index, term)

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
