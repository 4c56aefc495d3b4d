"""Ordered byte-key engines under the KV state machine: memory, and RocksDB via rocksdict.

An engine is a sorted map of raw keys to raw values with four powers: read a key, scan a key
range, write a batch of puts and deletes atomically (durably when ``sync``), and replace its
whole content atomically from a stream of items (a snapshot restore). It can also pin a
point-in-time view and stream it. The KV machine (:mod:`dengine.statemachine.kv`) defines what
the keys mean; both engines hold byte-identical content, so a snapshot from one restores into
the other.

Snapshot chunks are runs of ``klen u32 | key | vlen u32 | value`` records (little-endian).

The RocksDB engine's directory holds ``FORMAT``, a ``CURRENT`` record naming the live database
directory (``db-<n>``), and that directory. A restore builds ``db-<n+1>`` beside it, syncs
every file, then replaces ``CURRENT`` (write, fsync, rename, fsync the directory), and only then
removes the old database: a crash at any point leaves ``CURRENT`` naming a whole database.
Directories ``CURRENT`` does not name are leftovers and are removed on open.
"""

from __future__ import annotations

import bisect
import os
import shutil
import struct
import threading
from collections.abc import Iterable, Iterator

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from dengine.errors import Corruption, SnapshotError, StorageError
from dengine.storage import datadir, records
from dengine.storage.lock import DirLock
from dengine.storage.rocksdb import rocks_compaction_state

_U32 = struct.Struct("<I")
DEFAULT_CHUNK_BYTES = 1 << 20
CURRENT_FILE = "CURRENT"
KIND_CURRENT = 16


def within_bytes(rows: Iterable[tuple[bytes, bytes]], max_bytes: int) -> list[tuple[bytes, bytes]]:
    """The rows up to and including the one that takes keys and values past ``max_bytes``
    (0: no budget): the caller sees the budget was reached and cuts there (see ``KV.range``)."""
    out, total = [], 0
    for k, v in rows:
        out.append((k, v))
        total += len(k) + len(v)
        if max_bytes and total > max_bytes:
            break
    return out


def pack_items(items: Iterable[tuple[bytes, bytes]], chunk_bytes: int) -> Iterator[bytes]:
    """Pack (key, value) pairs into chunks of about ``chunk_bytes``."""
    parts: list[bytes] = []
    size = 0
    for k, v in items:
        parts.append(_U32.pack(len(k)) + k + _U32.pack(len(v)) + v)
        size += 8 + len(k) + len(v)
        if size >= chunk_bytes:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)


def unpack_chunk(chunk: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs of one chunk; a malformed chunk is SnapshotError."""
    out = []
    pos, n = 0, len(chunk)
    try:
        while pos < n:
            (kl,) = _U32.unpack_from(chunk, pos)
            k = chunk[pos + 4 : pos + 4 + kl]
            pos += 4 + kl
            (vl,) = _U32.unpack_from(chunk, pos)
            v = chunk[pos + 4 : pos + 4 + vl]
            pos += 4 + vl
            if len(k) != kl or len(v) != vl:
                raise SnapshotError("a chunk record is cut short")
            out.append((k, v))
    except struct.error as e:
        raise SnapshotError(f"a chunk record is cut short: {e}") from e
    return out


class _ItemsSource:
    """A pinned view streamed as chunks (``index``/``term`` are set by the KV machine)."""

    def __init__(self, items: Iterable[tuple[bytes, bytes]], release=None) -> None:
        self.index = 0
        self.term = 0
        self._items = items
        self._release = release

    def chunks(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[bytes]:
        return pack_items(self._items, chunk_bytes)

    def close(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None
        self._items = ()


class MemoryEngine:
    """A dict and a sorted key list; nothing survives the process."""

    durable = False

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def scan(self, start: bytes, end: bytes | None, limit: int,
             max_bytes: int = 0) -> list[tuple[bytes, bytes]]:
        i = bisect.bisect_left(self._keys, start)
        j = len(self._keys) if end is None else bisect.bisect_left(self._keys, end)
        if limit:
            j = min(j, i + limit)
        return within_bytes(((k, self._data[k]) for k in self._keys[i:j]), max_bytes)

    def write(self, changes: dict[bytes, bytes | None]) -> None:
        for k, v in changes.items():
            if v is None:
                if self._data.pop(k, None) is not None:
                    del self._keys[bisect.bisect_left(self._keys, k)]
            else:
                if k not in self._data:
                    bisect.insort(self._keys, k)
                self._data[k] = v

    def compaction_state(self) -> tuple[int, int]:
        """Nothing to compact in memory: (0 bytes owed, 0 running)."""
        return 0, 0

    def compact(self) -> None:
        """Nothing to compact in memory."""

    def pin(self) -> _ItemsSource:
        data = dict(self._data)
        keys = list(self._keys)
        return _ItemsSource((k, data[k]) for k in keys)

    def sync(self) -> None:
        """Nothing to make durable: the memory engine keeps nothing across a restart."""

    def replace(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        data = dict(items)  # consume everything (and every check) before swapping
        self._data = data
        self._keys = sorted(data)

    def close(self) -> None:
        pass


#: Memtable size: each one is also that much of RocksDB's WAL on disk until it is flushed.
WRITE_BUFFER_BYTES = 16 * 1024 * 1024
#: SST file size: a compaction rewrites whole files, so smaller files bound its spare space.
TARGET_FILE_BYTES = 8 * 1024 * 1024


def _db_options() -> Options:
    """Bounded transient disk: small memtables (and so WAL) and small files, so that a
    compaction rewrites little beside what it replaces (disk stays under 2x the data)."""
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES)
    opts.set_target_file_size_base(TARGET_FILE_BYTES)
    return opts


class RocksEngine:
    """RocksDB through rocksdict, with atomic whole-database replacement (module docstring)."""

    durable = True

    def __init__(self, path: str, *, sync: bool = True, logger=None) -> None:
        self.path = os.path.abspath(path)
        self._wopts = WriteOptions()
        self._wopts.sync = sync
        self._log = logger
        self._db: Rdict | None = None  # open from __init__ until close()
        self._maint = threading.Lock()  # compact() (a worker thread) against replace/close
        self._lock = DirLock(self.path)  # one owner: released by close()
        try:
            self._open_dir()
        except BaseException:
            self._lock.release()
            raise
        if self._log is not None:
            # Not synced: after a crash the node re-applies the log past the last snapshot.
            self._log.info("kv engine opened", path=self.path, db=self._current, sync=sync)

    def _open_dir(self) -> None:
        datadir.open_dir(self.path, "kv-rocksdb", self._init_dir)
        current = records.read_record(self._p(CURRENT_FILE), KIND_CURRENT)
        if current is None:
            raise Corruption(self._p(CURRENT_FILE), None, "missing")
        self._current = current.decode()
        for name in os.listdir(self.path):
            if name.startswith("db-") and name != self._current:
                shutil.rmtree(self._p(name))  # an interrupted restore, or its predecessor
        self._db = self._open(self._p(self._current))

    @staticmethod
    def _init_dir(tmp: str) -> None:
        db = Rdict(os.path.join(tmp, "db-000001"), _db_options())
        db.close()
        records.write_record(os.path.join(tmp, CURRENT_FILE), KIND_CURRENT, b"db-000001")

    def _open(self, path: str) -> Rdict:
        try:
            return Rdict(path, _db_options())
        except Exception as e:  # rocksdict raises plain Exception
            raise StorageError(f"cannot open RocksDB at {path}: {e}") from e

    def _p(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def _live(self) -> Rdict:
        db = self._db
        if db is None:
            raise StorageError(f"the KV engine at {self.path} is closed")
        return db

    def get(self, key: bytes) -> bytes | None:
        return self._live.get(key)

    def scan(self, start: bytes, end: bytes | None, limit: int,
             max_bytes: int = 0) -> list[tuple[bytes, bytes]]:
        def rows() -> Iterator[tuple[bytes, bytes]]:
            n = 0
            for k, v in self._live.items(from_key=start):
                if end is not None and k >= end:
                    return
                yield k, v
                n += 1
                if limit and n >= limit:
                    return

        return within_bytes(rows(), max_bytes)

    def write(self, changes: dict[bytes, bytes | None]) -> None:
        wb = WriteBatch(raw_mode=True)
        for k, v in changes.items():
            if v is None:
                wb.delete(k)
            else:
                wb.put(k, v)
        try:
            self._live.write(wb, self._wopts)
        except Exception as e:
            raise StorageError(f"RocksDB write to {self.path} failed: {e}") from e

    def sync(self) -> None:
        """Make every write so far durable (one fsync of RocksDB's WAL), so that the log may
        be compacted up to the applied index the engine holds."""
        try:
            self._live.flush_wal(True)
        except Exception as e:
            raise StorageError(f"RocksDB WAL sync of {self.path} failed: {e}") from e

    def busy(self) -> bool:
        """True while RocksDB flushes or compacts, or owes a compaction (after a bulk load)."""
        db = self._live
        return any(db.property_int_value(p) for p in (
            "rocksdb.compaction-pending", "rocksdb.num-running-compactions",
            "rocksdb.num-running-flushes"))

    def compaction_state(self) -> tuple[int, int]:
        """(bytes RocksDB estimates its compactions owe, flushes + compactions running)."""
        return rocks_compaction_state(self._live)

    def compact(self) -> None:
        """Flush the memtable and compact every level (an operator's maintenance call, like
        etcd's defragment): afterwards nothing a load left in level 0 or in memory is owed.
        RocksDB serves reads and writes meanwhile; a restore waits for it (``_maint``)."""
        with self._maint:
            db = self._live
            try:
                db.flush(True)
                db.compact_range(None, None)
            except Exception as e:  # rocksdict raises plain Exception
                raise StorageError(f"RocksDB compaction of {self.path} failed: {e}") from e

    def pin(self) -> _ItemsSource:
        snap = self._live.snapshot()
        holder = [snap]

        def release() -> None:
            holder.clear()

        return _ItemsSource(holder[0].items(), release)

    def replace(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        n = int(self._current.split("-")[1]) + 1
        name = f"db-{n:06d}"
        new_path = self._p(name)
        shutil.rmtree(new_path, ignore_errors=True)
        try:
            self._fill(new_path, items)
        except BaseException:
            shutil.rmtree(new_path, ignore_errors=True)
            raise
        records.write_record(self._p(CURRENT_FILE), KIND_CURRENT, name.encode())
        old, self._current = self._p(self._current), name
        with self._maint:
            self._live.close()
            self._db = self._open(new_path)
        shutil.rmtree(old, ignore_errors=True)
        records.fsync_dir(self.path)

    def _fill(self, path: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        db = Rdict(path, _db_options())
        try:
            wb = WriteBatch(raw_mode=True)
            count = 0
            for k, v in items:
                wb.put(k, v)
                count += 1
                if count % 4096 == 0:
                    db.write(wb)
                    wb = WriteBatch(raw_mode=True)
            db.write(wb)
            db.flush()
        finally:
            db.close()
        for root, _dirs, files in os.walk(path):
            for f in files:
                fd = os.open(os.path.join(root, f), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        records.fsync_dir(path)

    def close(self) -> None:
        with self._maint:
            if self._db is not None:
                self._db.close()
                self._db = None
        self._lock.release()
