"""The KV engines' compaction state and maintenance compaction (``CompactStorage``)."""

from __future__ import annotations

import time

import pytest

from dengine.errors import StorageError
from dengine.statemachine.engines import MemoryEngine, RocksEngine


def _level0_files(eng: RocksEngine) -> int:
    return eng._live.property_int_value("rocksdb.num-files-at-level0")


def test_compact_leaves_nothing_in_memory_or_level0_and_keeps_every_key(tmp_path):
    eng = RocksEngine(str(tmp_path / "kv"), sync=False)
    try:
        for rnd in range(3):  # three flushed files in level 0, then more in the memtable
            eng.write({b"d%06d" % i: b"v%d" % rnd * 40 for i in range(2000)})
            if rnd < 2:
                eng._live.flush(True)
        eng.write({b"d%06d" % i: None for i in range(0, 2000, 2)})
        assert _level0_files(eng) == 2
        assert eng._live.property_int_value("rocksdb.cur-size-active-mem-table") > 100_000
        owed, running = eng.compaction_state()
        assert isinstance(owed, int) and isinstance(running, int) and owed >= 0
        eng.compact()
        assert _level0_files(eng) == 0
        assert eng._live.property_int_value("rocksdb.num-entries-active-mem-table") == 0
        deadline = time.monotonic() + 30  # RocksDB may still finish a follow-up in the back
        while eng.compaction_state() != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert eng.compaction_state() == (0, 0)
        rows = eng.scan(b"d", b"e", 0)
        assert [k for k, _ in rows] == [b"d%06d" % i for i in range(1, 2000, 2)]
        assert {v for _, v in rows} == {b"v2" * 40}
    finally:
        eng.close()


def test_compact_of_a_closed_engine_is_a_storage_error(tmp_path):
    eng = RocksEngine(str(tmp_path / "kv"), sync=False)
    eng.close()
    with pytest.raises(StorageError, match="closed"):
        eng.compact()


def test_memory_engine_owes_nothing():
    eng = MemoryEngine()
    eng.write({b"a": b"1"})
    eng.compact()
    assert eng.compaction_state() == (0, 0) and eng.get(b"a") == b"1"
