"""Append + sync throughput of each log store beside the raw floor of this disk.

Each timed call appends ``REPS`` batches of ``batch`` entries of 256 bytes, each made durable
before the next.
``raw`` is the floor: one ``os.write`` of the same payload bytes and one ``os.fdatasync``, in
the same run. Goals (issue 5): with batches of 256, each durable adapter within 2x of the raw
floor per byte; with batches of 1, within 1.5x of the raw floor per sync. Since a call writes
the same bytes and does one sync in every adapter, both ratios are ``time(adapter) / time(raw)``.

``rocksdb_sync_call`` is the RocksDB store opened with ``sync=False`` and made durable by one
``sync()`` (a WAL fsync) after each batch, which is how the node groups a Ready's writes.

``python asv_bench/benchmarks/storage.py`` runs the same cases outside asv and prints the
ratios from one process, interleaving the adapters so that disk noise hits them alike.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from dengine.raft.types import Entry
from dengine.storage import FileLogStore, MemoryLogStore
from dengine.storage.rocksdb import RocksLogStore

PAYLOAD_BYTES = 256
REPS = 20  # durable appends per timed call, so that ``asv run --quick`` (one call) means something
BATCHES = [1, 16, 256]
ADAPTERS = ["raw", "file", "rocksdb", "rocksdb_sync_call", "memory"]


class _Raw:
    """The floor: the payload bytes, one write and one fdatasync per batch."""

    def __init__(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.fd = os.open(os.path.join(path, "raw"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._last = 0

    def last_index(self) -> int:
        return self._last

    def append(self, entries) -> None:
        os.write(self.fd, b"".join(e.data for e in entries))
        os.fdatasync(self.fd)
        self._last = entries[-1].index

    def close(self) -> None:
        os.close(self.fd)


def open_adapter(kind: str, path: str):
    if kind == "raw":
        return _Raw(path)
    if kind == "file":
        return FileLogStore(path)
    if kind == "rocksdb":
        return RocksLogStore(path)
    if kind == "rocksdb_sync_call":
        return _SyncCall(RocksLogStore(path, sync=False))
    return MemoryLogStore()


class _SyncCall:
    """A store opened with sync off, made durable by one ``sync()`` after each append."""

    def __init__(self, store) -> None:
        self.store = store

    def last_index(self) -> int:
        return self.store.last_index()

    def append(self, entries) -> None:
        self.store.append(entries)
        self.store.sync()

    def close(self) -> None:
        self.store.close()


class AppendSync:
    """Time of one durable append of a batch, per adapter and batch size."""

    params = (ADAPTERS, BATCHES)
    param_names = ["adapter", "batch"]
    timeout = 120

    def setup(self, adapter: str, batch: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="dengine-bench-")
        self.store = open_adapter(adapter, os.path.join(self.dir, "log"))
        self.payload = os.urandom(PAYLOAD_BYTES)
        self.batch = batch

    def teardown(self, adapter: str, batch: int) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def time_append_sync(self, adapter: str, batch: int) -> None:
        p = self.payload
        for _ in range(REPS):
            start = self.store.last_index() + 1
            self.store.append([Entry(1, start + i, 0, p) for i in range(batch)])


def _measure(rounds: int, calls: int = 2) -> dict[tuple[str, int], list[float]]:
    """Seconds per batch of every (adapter, batch) in each round; adapters interleaved."""
    import time

    samples: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for batch in BATCHES:
            for adapter in ADAPTERS:
                b = AppendSync()
                b.setup(adapter, batch)
                try:
                    b.time_append_sync(adapter, batch)  # warm up
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        b.time_append_sync(adapter, batch)
                    per_batch = (time.perf_counter() - t0) / (calls * REPS)
                    samples.setdefault((adapter, batch), []).append(per_batch)
                finally:
                    b.teardown(adapter, batch)
    return samples


def main() -> None:
    """Print each adapter's time per batch and its ratio to the raw floor of the same round
    (median over rounds, with the lowest and highest round's ratio)."""
    import statistics
    import sys

    from dengine import core_info

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    samples = _measure(rounds)
    print(core_info(), f"- {rounds} rounds of {2 * REPS} batches per case")
    print(f"{'adapter':>18} {'batch':>5} {'us/batch':>9} {'MB/s':>7} {'x raw':>6} {'range':>11}")
    for batch in BATCHES:
        raw = samples[("raw", batch)]
        for adapter in ADAPTERS:
            t = statistics.median(samples[(adapter, batch)])
            ratios = [a / r for a, r in zip(samples[(adapter, batch)], raw, strict=True)]
            mbs = batch * PAYLOAD_BYTES / t / 1e6
            lo, hi = min(ratios), max(ratios)
            print(
                f"{adapter:>18} {batch:>5} {t * 1e6:9.1f} {mbs:7.1f} "
                f"{statistics.median(ratios):6.2f} {lo:5.2f}-{hi:<5.2f}"
            )


if __name__ == "__main__":
    main()
