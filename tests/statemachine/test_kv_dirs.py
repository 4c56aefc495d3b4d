"""The KV engine's data directory: foreign or damaged → typed error; sync off is logged."""

from __future__ import annotations

import os

import pytest

from dengine.errors import Corruption, ForeignDataDir
from dengine.statemachine import RocksEngine, open_kv
from dengine.storage import open_log_store


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def bind(self, **kw):
        return self

    def info(self, event: str, **kw) -> None:
        self.events.append((event, kw))

    debug = warning = info


def test_a_foreign_directory_is_refused(tmp_path):
    path = tmp_path / "kv"
    path.mkdir()
    (path / "x").write_bytes(b"not ours")
    with pytest.raises(ForeignDataDir):
        RocksEngine(str(path))
    open_log_store("file", str(tmp_path / "log")).close()
    with pytest.raises(ForeignDataDir):
        RocksEngine(str(tmp_path / "log"))


def test_a_damaged_current_record_is_corruption(tmp_path):
    path = str(tmp_path / "kv")
    RocksEngine(path).close()
    with open(os.path.join(path, "CURRENT"), "r+b") as f:
        f.seek(10)
        f.write(b"\x00\x01")
    with pytest.raises(Corruption):
        RocksEngine(path)


@pytest.mark.parametrize("kind", ["file", "rocksdb"])
def test_sync_off_says_so_at_open(tmp_path, kind):
    log = Recorder()
    open_log_store(kind, str(tmp_path / "a"), sync=False, logger=log).close()
    assert any("sync is off" in kw.get("warning", "") for _e, kw in log.events)
    log = Recorder()
    open_log_store(kind, str(tmp_path / "b"), logger=log).close()
    assert log.events and not any("warning" in kw for _e, kw in log.events)


def test_kv_sync_off_says_so_at_open(tmp_path):
    log = Recorder()
    open_kv("rocksdb", str(tmp_path / "kv"), sync=False, logger=log).close()
    assert any("sync is off" in kw.get("warning", "") for _e, kw in log.events)
