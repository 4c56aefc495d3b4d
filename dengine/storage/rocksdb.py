"""The ``rocksdb`` log store (the default): entries in RocksDB through rocksdict.

Theory of operation. The store directory holds ``FORMAT``, ``IDENTITY`` and a RocksDB database
``db/`` with two column families: ``log`` maps the big-endian index (8 bytes, so that key order
is index order) to the entry encoded by the ``codec`` kernel; ``meta`` holds the hard state, the
anchor (index and term of the entry before the first kept one) and the latest snapshot's
metadata. Every change is one ``WriteBatch`` written with ``sync=True``: an append that replaces
a conflicting suffix deletes it in the same batch; a compaction deletes the prefix with a range
delete and moves the anchor in the same batch. RocksDB's own WAL makes each batch atomic.

Disk is given back while the store runs: a range delete only writes a tombstone, and RocksDB's
WAL files stay as long as any column family's memtable still needs them (the small ``meta``
family, written on every hard state, would pin them for ever). So after each compaction a
background thread compacts the deleted key range (dropping its files) and flushes ``meta``,
which lets RocksDB delete the old WAL files; the total WAL is also capped
(``MAX_TOTAL_WAL_BYTES``). A compacted log then takes about the kept entries on disk.
As with the file WAL, a log that ends before the persisted commit index refuses to open
(etcd's raft would panic on it): the node appends entries before it saves a hard state whose
commit index covers them.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Sequence

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from dengine._core import LogIndex, codec
from dengine.errors import Corruption, DecodeError, StorageError
from dengine.raft.types import Entry, HardState, SnapshotMeta
from dengine.storage import datadir, records
from dengine.storage.base import IndexedLog, NullLogger, budget, check_range
from dengine.storage.failstop import FailStop, guarded, io_error
from dengine.storage.lock import DirLock

_KEY = struct.Struct(">Q")
_TERM = struct.Struct("<Q")
K_HARD_STATE = b"hardstate"
K_ANCHOR = b"anchor"
K_SNAPMETA = b"snapmeta"
CF_LOG = "log"
CF_META = "meta"


MAX_TOTAL_WAL_BYTES = 32 * 1024 * 1024
#: The log family's memtable: the newest entries, also in the WAL until it is flushed.
LOG_WRITE_BUFFER_BYTES = 16 * 1024 * 1024


def rocks_compaction_state(db: Rdict) -> tuple[int, int]:
    """(estimated pending compaction bytes, running flushes + compactions) of ``db``."""
    return (db.property_int_value("rocksdb.estimate-pending-compaction-bytes") or 0,
            (db.property_int_value("rocksdb.num-running-compactions") or 0)
            + (db.property_int_value("rocksdb.num-running-flushes") or 0))


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES)
    return opts


def _cfs() -> dict[str, Options]:
    log = Options(raw_mode=True)
    log.set_write_buffer_size(LOG_WRITE_BUFFER_BYTES)
    log.set_target_file_size_base(LOG_WRITE_BUFFER_BYTES)
    return {CF_LOG: log, CF_META: Options(raw_mode=True)}


class RocksLogStore(FailStop, IndexedLog):
    """The ``rocksdb`` adapter: see the module docstring for the layout.

    ``_index`` holds the term of every kept entry; its snapshot point is the anchor. The
    directory is locked (:class:`DirLock`) before anything in it is read; a failed write stops
    the store for good (:mod:`failstop`).
    """

    durable = True

    def __init__(
        self,
        path: str,
        *,
        sync: bool = True,
        logger=None,
        cluster_id: int | None = None,
        node_id: int | None = None,
    ) -> None:
        self.path = os.path.abspath(path)
        self._db_path = os.path.join(self.path, "db")
        self._log = (logger or NullLogger()).bind(store="rocksdb", path=self.path)
        self._lock = DirLock(self.path)
        try:
            created = datadir.open_dir(self.path, "rocksdb", self._init_dir)
        except BaseException as e:
            self._lock.release()
            if isinstance(e, OSError):
                raise io_error(self.path, "open", e) from e
            raise
        self._wopts = WriteOptions()
        self._wopts.sync = sync
        self._unsynced = False
        self._reclaim_lock = threading.Lock()
        self._reclaim_to = 0
        self._reclaimer: threading.Thread | None = None
        try:
            db = Rdict(self._db_path, _options(), column_families=_cfs())
        except Exception as e:  # rocksdict raises plain Exception
            self._lock.release()
            raise StorageError(f"cannot open RocksDB at {self._db_path}: {e}") from e
        self._db: Rdict | None = db  # None once closed
        self._cf_log = db.get_column_family(CF_LOG)
        self._cf_meta = db.get_column_family(CF_META)
        self._h_log = db.get_column_family_handle(CF_LOG)
        self._h_meta = db.get_column_family_handle(CF_META)
        try:
            self._load()
        except BaseException:
            self.close()
            raise
        self._log.info(
            "log store opened",
            created=created,
            first_index=self.first_index(),
            last_index=self.last_index(),
            sync_each_write=sync,  # else the node calls sync() (storage.sync) per batch
        )
        if cluster_id is not None and node_id is not None:
            self.bind_identity(cluster_id, node_id)

    @staticmethod
    def _init_dir(tmp: str) -> None:
        db = Rdict(os.path.join(tmp, "db"), _options(), column_families=_cfs())
        db.flush()
        db.close()

    def _meta(self, key: bytes, decode, default):
        data = self._cf_meta.get(key)
        if data is None:
            return default
        try:
            return decode(data)
        except DecodeError as e:
            raise Corruption(self._db_path, None, f"meta record {key.decode()}: {e.reason}") from e

    def _load(self) -> None:
        self._index = LogIndex(*self._meta(K_ANCHOR, records.decode_pair, (0, 0)))
        self._hard_state = self._meta(K_HARD_STATE, records.decode_hard_state, HardState())
        self._snapshot_meta = self._meta(K_SNAPMETA, records.decode_snapshot_meta, None)
        expect = self._index.first_index
        for key, value in self._cf_log.items(from_key=_KEY.pack(expect)):
            index = _KEY.unpack(key)[0]
            if index != expect or len(value) < codec.ENTRY_HEADER_BYTES:
                raise Corruption(self._db_path, None, f"log key {index} where {expect} was due")
            try:
                self._index.append(_TERM.unpack_from(value, 0)[0])
            except ValueError:
                raise Corruption(self._db_path, None, f"term falls at index {index}") from None
            expect += 1
        if self.last_index() < self._hard_state.commit:
            raise Corruption(
                self._db_path,
                None,
                f"the log ends at {self.last_index()}, before the commit index "
                f"{self._hard_state.commit}: entries are missing",
            )

    # -- reader (first_index, last_index and term come from IndexedLog) ----------------------
    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        check_range(lo, hi, self.first_index(), self.last_index())
        if lo == hi:
            return []
        out: list[Entry] = []
        total = 0
        it = self._cf_log.iter()
        try:
            it.seek(_KEY.pack(lo))
            for index in range(lo, hi):
                if not it.valid() or it.key() != _KEY.pack(index):
                    raise Corruption(self._db_path, None, f"log entry {index} is missing")
                e = self._decode(index, it.value())
                total += len(e.data)
                if max_bytes is not None and total > max_bytes and out:
                    break
                out.append(e)
                it.next()
        finally:
            del it
        return budget(out, max_bytes)

    def _decode(self, index: int, value: bytes) -> Entry:
        try:
            e = Entry(*codec.decode_entry(value))
        except DecodeError as err:
            raise Corruption(self._db_path, None, f"log entry {index}: {err.reason}") from err
        if e.index != index:
            raise Corruption(self._db_path, None, f"key {index} holds entry {e.index}")
        return e

    # -- writer ------------------------------------------------------------------------------
    def _write(self, wb: WriteBatch) -> None:
        try:
            if self._wopts.sync:
                self._sync_point(self._db_path)
            db = self._db
            assert db is not None, "write after close"
            db.write(wb, self._wopts)
        except Exception as e:  # rocksdict raises plain Exception
            raise io_error(self._db_path, "write", e) from e
        self._unsynced = not self._wopts.sync

    @guarded("append")
    def append(self, entries: Sequence[Entry]) -> None:
        entries = self._batch_to_write(entries)
        if not entries:
            return
        start = entries[0].index
        wb = WriteBatch(raw_mode=True)
        last = self.last_index()
        if start <= last:
            wb.delete_range(_KEY.pack(start), _KEY.pack(last + 1), self._h_log)
        h = self._h_log
        encode = codec.encode_entry
        for e in entries:
            wb.put(_KEY.pack(e.index), encode(e.term, e.index, e.kind, e.data), h)
        self._write(wb)
        self._index.truncate_after(start - 1)
        self._index.extend([e.term for e in entries])

    @guarded("truncate")
    def truncate_suffix(self, index: int) -> None:
        if not self._suffix_to_drop(index):
            return
        wb = WriteBatch(raw_mode=True)
        wb.delete_range(_KEY.pack(index), _KEY.pack(self.last_index() + 1), self._h_log)
        self._write(wb)
        self._index.truncate_after(index - 1)

    @guarded("compact")
    def compact(self, index: int) -> None:
        if index <= self._index.snapshot_index:
            return
        term = self.term(index)
        wb = WriteBatch(raw_mode=True)
        wb.delete_range(_KEY.pack(self.first_index()), _KEY.pack(index + 1), self._h_log)
        wb.put(K_ANCHOR, records.encode_pair(index, term), self._h_meta)
        self._write(wb)
        self._index.compact(index)
        self._release_space_later(index)

    def _release_space_later(self, index: int) -> None:
        """Give the compacted range's disk space back, in a thread (one at a time)."""
        with self._reclaim_lock:
            self._reclaim_to = max(self._reclaim_to, index)
            if self._reclaimer is not None and self._reclaimer.is_alive():
                return  # it takes the new point when it loops
            self._reclaimer = threading.Thread(
                target=self._reclaim_loop, name="dengine-log-reclaim", daemon=True)
            self._reclaimer.start()

    def _reclaim_loop(self) -> None:
        done = 0
        while True:
            with self._reclaim_lock:
                to = self._reclaim_to
                if to <= done or self._db is None:
                    self._reclaimer = None
                    return
            try:
                self.release_space(to)
            except Exception as e:  # noqa: BLE001 - space comes back at the next compaction
                self._log.warning("releasing compacted log space failed", error=repr(e))
            done = to

    def release_space(self, index: int) -> None:
        """Drop the files of entries ``<= index`` (already deleted) and let RocksDB remove the
        WAL files nothing needs any more."""
        # The handles are gone once closed.
        cf_log, cf_meta = getattr(self, "_cf_log", None), getattr(self, "_cf_meta", None)
        if cf_log is None or cf_meta is None:
            return
        cf_log.compact_range(_KEY.pack(0), _KEY.pack(index + 1))
        cf_meta.flush()

    @guarded("reset")
    def reset(self, index: int, term: int) -> None:
        wb = WriteBatch(raw_mode=True)
        wb.delete_range(_KEY.pack(0), _KEY.pack(self.last_index() + 1), self._h_log)
        wb.put(K_ANCHOR, records.encode_pair(index, term), self._h_meta)
        self._write(wb)
        self._index.reset(index, term)

    @guarded("sync")
    def sync(self) -> None:
        """Make writes done with sync off durable (one WAL fsync); free when nothing is owed."""
        if self._unsynced:
            try:
                self._sync_point(self._db_path)
                db = self._db
                assert db is not None, "sync after close"
                db.flush_wal(True)
            except Exception as e:  # rocksdict raises plain Exception
                raise io_error(self._db_path, "fsync", e) from e
            self._unsynced = False

    def compaction_state(self) -> tuple[int, int]:
        """(bytes RocksDB estimates the log's compactions owe, flushes + compactions running);
        (0, 0) once closed."""
        db = self._db
        if db is None:
            return 0, 0
        pending = sum(cf.property_int_value("rocksdb.estimate-pending-compaction-bytes") or 0
                      for cf in (self._cf_log, self._cf_meta))
        return pending, rocks_compaction_state(db)[1]

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            with self._reclaim_lock:
                reclaimer, self._reclaim_to = self._reclaimer, 0
            if reclaimer is not None:
                reclaimer.join()
            del self._cf_log, self._cf_meta, self._h_log, self._h_meta
            self._db = None
            try:
                db.close()
            except Exception as e:  # noqa: BLE001 - a failed store still lets go of its lock
                self._log.warning("closing RocksDB failed", error=str(e))
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()

    # -- small records -----------------------------------------------------------------------
    def _put_meta(self, key: bytes, value: bytes) -> None:
        wb = WriteBatch(raw_mode=True)
        wb.put(key, value, self._h_meta)
        self._write(wb)

    def hard_state(self) -> HardState:
        return self._hard_state

    @guarded("save hard state")
    def save_hard_state(self, hs: HardState) -> None:
        self._put_meta(K_HARD_STATE, records.encode_hard_state(hs))
        self._hard_state = hs

    def snapshot_meta(self) -> SnapshotMeta | None:
        return self._snapshot_meta

    @guarded("save snapshot metadata")
    def save_snapshot_meta(self, meta: SnapshotMeta) -> None:
        self._put_meta(K_SNAPMETA, records.encode_snapshot_meta(meta))
        self._snapshot_meta = meta

    def identity(self) -> tuple[int, int] | None:
        return datadir.read_identity(self.path)

    @guarded("bind identity")
    def bind_identity(self, cluster_id: int, node_id: int) -> None:
        datadir.bind_identity(self.path, cluster_id, node_id)
