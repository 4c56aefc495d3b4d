"""Storage faults on both log engines: one owner per directory, typed and final failures.

* a second opener (another process, or another store in this one) is refused with
  :class:`DataDirLocked` naming the holder's pid, and repairs nothing (the issue: a second
  process that merely opened a live WAL deleted its ``*.tmp`` files and cut its tail);
* a failed fsync (the test-only fault switch) raises :class:`StorageIOError`, never a raw
  OSError, and the store refuses every later write even once the disk "recovers": a retried
  fsync proves nothing;
* a file system too small (a real tmpfs) fails with a typed ENOSPC error, and the file WAL
  finds out when it preallocates a segment, before any entry is written.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from dengine.errors import DataDirLocked, StorageError, StorageIOError
from dengine.raft.types import HardState
from dengine.statemachine.engines import RocksEngine
from dengine.storage import FileLogStore, RocksLogStore
from dengine.testing.storage_conformance import make

ENGINES = {"file": lambda p, **kw: FileLogStore(p, segment_bytes=1 << 16, **kw),
           "rocksdb": lambda p, **kw: RocksLogStore(p, **kw)}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_a_second_opener_is_refused_with_the_holders_pid(tmp_path, engine):
    path = str(tmp_path / "log")
    s = ENGINES[engine](path)
    s.append(make(1, 5, 1))
    with pytest.raises(DataDirLocked) as err:
        ENGINES[engine](path)
    assert err.value.pid == os.getpid()
    assert str(os.getpid()) in str(err.value) and path in str(err.value)
    s.close()
    again = ENGINES[engine](path)  # closing lets go of the lock
    assert again.last_index() == 5
    again.close()


def test_the_state_machine_engine_has_one_owner(tmp_path):
    path = str(tmp_path / "sm")
    eng = RocksEngine(path, sync=False)
    with pytest.raises(DataDirLocked):
        RocksEngine(path, sync=False)
    eng.close()
    RocksEngine(path, sync=False).close()


def test_another_process_opening_a_live_wal_repairs_nothing(tmp_path, proc_env):
    path = str(tmp_path / "log")
    s = FileLogStore(path, segment_bytes=1 << 16)
    s.append(make(1, 20, 1))
    s.save_hard_state(HardState(1, 1, 20))
    leftover = os.path.join(path, "HARDSTATE.tmp")  # what a live writer may have in flight
    with open(leftover, "wb") as f:
        f.write(b"in flight")
    before = sorted(os.listdir(path))
    code = ("import sys\nfrom dengine.storage import FileLogStore\n"
            "from dengine.errors import DataDirLocked\n"
            "try:\n    FileLogStore(sys.argv[1])\nexcept DataDirLocked as e:\n"
            "    print(e.pid); sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", code, path], env=proc_env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert int(r.stdout) == os.getpid()
    assert sorted(os.listdir(path)) == before and os.path.exists(leftover)
    assert s.entries(1, 21) == make(1, 20, 1)
    s.close()


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC])
def test_a_failed_fsync_is_typed_and_final(tmp_path, engine, err):
    s = ENGINES[engine](str(tmp_path / "log"), sync=False)
    s.append(make(1, 10, 1))
    s.sync()
    s.inject_sync_fault(err)
    s.append(make(11, 15, 1))  # sync off: the write itself does not fsync
    with pytest.raises(StorageIOError) as first:
        s.sync()
    assert first.value.errno == err and errno.errorcode[err] in str(first.value)
    assert not isinstance(first.value, OSError)
    s.inject_sync_fault(None)  # the disk "recovers": the store must not believe it
    with pytest.raises(StorageIOError) as again:
        s.sync()
    assert again.value is first.value
    for write in (lambda: s.append(make(16, 16, 1)), lambda: s.save_hard_state(HardState(1, 1, 10))):
        with pytest.raises(StorageIOError):
            write()
    assert s.failed is first.value
    s.close()
    reopened = ENGINES[engine](str(tmp_path / "log"))
    assert reopened.entries(1, 11) == make(1, 10, 1)  # what was synced is all that is promised
    reopened.close()


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_a_failed_synced_append_is_typed_and_final(tmp_path, engine):
    s = ENGINES[engine](str(tmp_path / "log"), sync=True)
    s.append(make(1, 3, 1))
    s.inject_sync_fault(errno.EIO)
    with pytest.raises(StorageIOError, match="EIO"):
        s.append(make(4, 6, 1))
    s.inject_sync_fault(None)
    with pytest.raises(StorageIOError):
        s.append(make(4, 6, 1))
    s.close()


def test_the_file_wal_preallocates_its_segment(tmp_path):
    s = FileLogStore(str(tmp_path / "log"), segment_bytes=1 << 20)
    seg = [n for n in os.listdir(s.path) if n.startswith("wal-")][0]
    st = os.stat(os.path.join(s.path, seg))
    assert st.st_size == 0  # the size is the data's: recovery never reads zeros as records
    assert st.st_blocks * 512 >= 1 << 20
    s.close()


def test_a_full_tmpfs_fails_the_file_wal_typed_at_preallocation(tmpfs):
    with tmpfs("1m") as root:
        with pytest.raises(StorageIOError, match="ENOSPC"):
            FileLogStore(os.path.join(root, "log"), segment_bytes=4 << 20)
        s = FileLogStore(os.path.join(root, "log2"), segment_bytes=256 << 10)
        with pytest.raises(StorageIOError, match="ENOSPC"):
            for i in range(1, 10_000):
                s.append(make(i, i, 1, size=16 << 10))
        last = s.last_index()
        assert last > 1
        with pytest.raises(StorageIOError):
            s.append(make(last + 1, last + 1, 1))
        s.close()


def test_a_full_tmpfs_fails_rocksdb_typed(tmpfs):
    with tmpfs("2m") as root:
        with pytest.raises(StorageError) as err:  # open or a write: never a raw exception
            s = RocksLogStore(os.path.join(root, "log"))
            for i in range(1, 10_000):
                s.append(make(i, i, 1, size=32 << 10))
        assert not isinstance(err.value, OSError)
        assert "No space" in str(err.value) or "ENOSPC" in str(err.value)

