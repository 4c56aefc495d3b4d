"""The KV engine's data directory: foreign or damaged → typed error; sync off is logged where true."""

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


class WarningRecorder(Recorder):
    def warning(self, event: str, **kw) -> None:
        self.events.append((event, {**kw, "level": "warning"}))


@pytest.mark.parametrize("kind", ["file", "rocksdb"])
def test_a_store_says_whether_it_syncs_each_write_without_a_false_warning(tmp_path, kind):
    # The node syncs the log itself per batch (storage.sync): a store opened with
    # sync=False is not a store that loses writes, so it says how it syncs, no warning.
    for name, sync in (("a", False), ("b", True)):
        log = Recorder()
        open_log_store(kind, str(tmp_path / name), sync=sync, logger=log).close()
        opened = [kw for e, kw in log.events if e == "log store opened"]
        assert opened and opened[0]["sync_each_write"] is sync
        assert not any("warning" in kw for _e, kw in log.events)


def test_kv_engine_opened_without_sync_does_not_warn(tmp_path):
    log = Recorder()
    open_kv("rocksdb", str(tmp_path / "kv"), sync=False, logger=log).close()
    assert log.events and not any("warning" in kw for _e, kw in log.events)


@pytest.mark.parametrize("sync", [True, False])
def test_the_node_warns_only_when_storage_sync_is_off(tmp_path, sync):
    from dengine.config import build_config
    from dengine.node import NodeBuilder

    cfg = build_config({"cluster": {"node_id": 1, "data_dir": str(tmp_path / "n"),
                                    "initial_members": {1: "127.0.0.1:1"}},
                        "storage": {"sync": sync}})
    log = WarningRecorder()
    node = NodeBuilder(cfg).logger(log).build()
    node.log_store.close()
    node.state_machine.close()
    warned = [e for e, kw in log.events if kw.get("level") == "warning"]
    assert warned == ([] if sync else ["storage.sync is off: a machine crash can lose "
                                       "acknowledged writes"])
