"""A closed RocksDB KV engine answers a typed StorageError, not a crash on a missing handle."""

from __future__ import annotations

import pytest

from dengine.errors import StorageError
from dengine.statemachine.engines import RocksEngine


def test_rocks_engine_refuses_use_after_close(tmp_path):
    eng = RocksEngine(str(tmp_path / "kv"), sync=False)
    eng.write({b"a": b"1"})
    assert eng.get(b"a") == b"1"
    eng.close()
    for use in (lambda: eng.get(b"a"), lambda: eng.write({b"b": b"2"}), eng.sync,
                lambda: eng.scan(b"", None, 0)):
        with pytest.raises(StorageError, match="closed"):
            use()
