"""Log compaction gives disk space back while the store runs, not only after a restart."""

from __future__ import annotations

import os
import time

import pytest

from dengine.raft.types import Entry, HardState
from dengine.storage.file import FileLogStore
from dengine.storage.rocksdb import RocksLogStore

N = 20_000
PAYLOAD = os.urandom(1024)  # incompressible


def disk_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except FileNotFoundError:
                pass
    return total


def fill(store) -> None:
    for lo in range(1, N + 1, 500):
        store.append([Entry(1, i, 0, PAYLOAD) for i in range(lo, min(N, lo + 499) + 1)])
        store.save_hard_state(HardState(1, 1, lo))  # as the node does, every batch
    store.sync()


@pytest.mark.parametrize("engine", ["rocksdb", "file"])
def test_disk_use_falls_after_compaction_without_a_restart(tmp_path, engine):
    path = str(tmp_path / "log")
    if engine == "rocksdb":
        store = RocksLogStore(path, sync=False)
    else:
        store = FileLogStore(path, sync=False, segment_bytes=1 << 20)
    try:
        fill(store)
        full = disk_bytes(path)
        assert full > N * len(PAYLOAD) // 2
        store.compact(N - 100)
        deadline = time.monotonic() + 30
        while disk_bytes(path) > full // 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert disk_bytes(path) <= full // 5, (full, disk_bytes(path))
        # Still a working log: the kept entries read back, new ones append.
        assert [e.index for e in store.entries(N - 99, N + 1)] == list(range(N - 99, N + 1))
        store.append([Entry(1, N + 1, 0, b"x")])
        assert store.last_index() == N + 1
    finally:
        store.close()


def test_rocksdb_log_reports_its_compaction_state(tmp_path):
    store = RocksLogStore(str(tmp_path / "log"), sync=False)
    fill(store)
    owed, running = store.compaction_state()
    assert isinstance(owed, int) and isinstance(running, int) and owed >= 0 and running >= 0
    store.compact(N - 100)
    deadline = time.monotonic() + 30  # the reclaimer compacts the dropped range meanwhile
    while store.compaction_state() != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.compaction_state() == (0, 0)
    store.close()
    assert store.compaction_state() == (0, 0)  # closed: nothing to ask, no crash
