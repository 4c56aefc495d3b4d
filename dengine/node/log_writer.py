"""Writing a Ready's entries and hard state to the log store, with one sync per turn.

A :class:`LogWriter` owns what the node knows of its own writes: the term and vote last
synced, and a hard state whose only change is the commit index, held back until the next write
that needs a sync anyway (the commit index may be persisted lazily: a restart re-learns it from
the leader, and never below what the state machine applied). The fsync runs in a worker thread
(group commit: whatever arrives meanwhile waits for the next turn and shares the next sync).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from dengine.observability import timeline as _tl
from dengine.observability.metrics import NodeMetrics
from dengine.raft.ready import Ready
from dengine.raft.types import Entry, HardState
from dengine.storage.base import LogStore

__all__ = ["LogWriter"]


class LogWriter:
    """Owns the node's log writes (see the module docstring); ``sync`` is storage.sync."""

    def __init__(self, log_store: LogStore, sync: bool, metrics: NodeMetrics) -> None:
        self._store = log_store
        self._sync = sync
        self._metrics = metrics
        #: (term, vote) of the hard state last written with a sync.
        self._synced_term_vote: tuple[int, int] = (-1, -1)
        #: A hard state whose term and vote are synced already: written with the next sync.
        self._deferred_hs: Any = None

    def recovered(self, hard_state: HardState) -> None:
        """The hard state read back from storage at start is the one synced."""
        self._synced_term_vote = (hard_state.term, hard_state.vote)

    def persist(self, rd: Ready) -> asyncio.Future | None:
        """Write the Ready's entries and hard state; the fsync runs in a worker thread.

        A hard state whose term and vote did not change (only the commit index moved) is not
        written at once: the commit index may be persisted lazily (a restart re-learns it from
        the leader, and never below what the state machine applied), so it rides along with the
        next write that needs a sync instead of costing one (or, on the file engine, blocking
        the loop on a synced record write).
        """
        hs = rd.hard_state
        if not rd.entries and (hs is None or (hs.term, hs.vote) == self._synced_term_vote):
            if hs is not None:
                self._deferred_hs = hs
            return None
        if hs is None:
            hs = self._deferred_hs
        self._deferred_hs = None
        if hs is not None:
            self._synced_term_vote = (hs.term, hs.vote)
        if not getattr(self._store, "durable", True):
            self._persist(rd.entries, hs)  # nothing to wait for: no thread hop
            return None
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, self._persist, rd.entries, hs)

    def _persist(self, entries: list[Entry], hard_state: Any) -> None:
        store = self._store
        if _tl.ON:
            _tl.mark("n.write0", entries[-1].index if entries else 0)
        if entries:
            store.append(entries)
            self._metrics.persist_batch.observe(len(entries))
        if hard_state is not None:
            store.save_hard_state(hard_state)
        if self._sync:
            if _tl.ON:
                _tl.mark("n.fsync0", entries[-1].index if entries else 0)
            t0 = time.perf_counter()
            store.sync()
            self._metrics.fsync.observe(time.perf_counter() - t0)
            if _tl.ON:
                _tl.mark("n.fsync1", entries[-1].index if entries else 0)

    def flush(self) -> None:
        """At stop: write the hard state held back, and sync."""
        if self._deferred_hs is not None:
            self._store.save_hard_state(self._deferred_hs)
        self._store.sync()
