"""The ``sync`` option: off, writes wait for ``sync()``; on, ``sync()`` has nothing left to do."""

from __future__ import annotations

import os

import pytest

from dengine.raft.types import HardState
from dengine.storage import FileLogStore, open_log_store
from dengine.testing.storage_conformance import make


@pytest.mark.parametrize("kind", ["file", "rocksdb"])
def test_sync_off_then_sync_keeps_everything(tmp_path, kind):
    path = str(tmp_path / "log")
    s = open_log_store(kind, path, sync=False, segment_bytes=4096)
    for i in range(1, 200, 20):
        s.append(make(i, i + 19, 1))
    s.save_hard_state(HardState(1, 1, 150))
    s.sync()
    s.close()
    s = open_log_store(kind, path, segment_bytes=4096)
    assert s.entries(1, 201) == make(1, 200, 1)
    assert s.hard_state() == HardState(1, 1, 150)
    s.close()


def test_file_syncs_once_per_batch(tmp_path, monkeypatch):
    calls = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real(fd))[1])
    s = FileLogStore(str(tmp_path / "on"), segment_bytes=1 << 20)
    s.append(make(1, 50, 1))
    s.sync()  # already durable: free
    assert len(calls) == 1
    s.close()
    calls.clear()
    s = FileLogStore(str(tmp_path / "off"), sync=False, segment_bytes=1 << 20)
    for i in range(1, 50, 10):
        s.append(make(i, i + 9, 1))
    assert calls == []
    s.sync()
    s.sync()
    assert len(calls) == 1
    s.close()
