"""A segmented write-ahead log in a directory: one record per entry, one fdatasync per batch.

Theory of operation. Entries are framed by the ``codec`` kernel (length, payload CRC, header
CRC) and appended to the active segment ``wal-<seq>-<first index>.log``; past ``segment_bytes``
the next batch opens a new segment (and the directory is fsynced). A batch is one ``write`` and
one ``fdatasync``: when ``append`` returns, the batch is on disk.

Beside the segments sit small records replaced atomically (see :mod:`records`): ``HARDSTATE``,
``SNAPMETA`` and ``ANCHOR`` = (index, term, start_seq): the entry before the first kept one,
and the first segment still in use. Every operation that removes data orders its steps so that
a crash at any point leaves the old log or the new one:

* compaction writes the new anchor first, then deletes the segments wholly below it;
* reset (snapshot install) creates the new empty segment, then writes the anchor, then deletes
  the old segments: on open, segments older than ``start_seq`` are leftovers and go, and an
  empty last segment that does not follow its predecessor is the leftover of a reset that never
  wrote its anchor;
* suffix truncation deletes later segments first, then cuts the segment that holds the point.

On open every segment is scanned. A torn tail of the last segment (a record cut short, or
zeros) is cut off and logged: it was never acknowledged. A bad checksum anywhere else, a gap in
indexes or segment numbers, or a log that ends before the persisted commit index refuses to open
with :class:`Corruption` naming the file and the byte offset. The node must therefore append
entries before it saves a hard state whose commit index covers them. A segment that filled up
ends with a *seal* record (term 0, no payload), written only once its successor exists, so that
losing the last segment shows as well; truncation unseals before it deletes.
"""

from __future__ import annotations

import bisect
import ctypes
import errno
import os
import re
import struct
from collections.abc import Callable, Sequence
from typing import Literal

from dengine._core import LogIndex, codec
from dengine.errors import Corruption
from dengine.raft.types import Entry, HardState, SnapshotMeta
from dengine.storage import datadir, records
from dengine.storage.base import IndexedLog, NullLogger, budget, check_range
from dengine.storage.failstop import FailStop, guarded, io_error
from dengine.storage.lock import DirLock

HEADER = codec.RECORD_HEADER_BYTES
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
_SEGMENT_RE = re.compile(r"^wal-([0-9a-f]{16})-([0-9a-f]{16})\.log$")
_ANCHOR = struct.Struct("<QQQ")
HARDSTATE_FILE = "HARDSTATE"
ANCHOR_FILE = "ANCHOR"
SNAPMETA_FILE = "SNAPMETA"


_FALLOC_FL_KEEP_SIZE = 1
#: fallocate(2) from libc once looked up; False where libc has none.
_fallocate: Callable[[int, int, int, int], int] | Literal[False] | None = None


def preallocate(fd: int, length: int) -> None:
    """Reserve ``length`` bytes of blocks for ``fd`` without changing its size (Linux
    ``fallocate(FALLOC_FL_KEEP_SIZE)``), so recovery never sees preallocated zeros as data.
    ENOSPC raises; a file system without the call reserves nothing (writes still work)."""
    global _fallocate
    if _fallocate is None:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = getattr(libc, "fallocate", None)
        if fn is not None:
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            fn.restype = ctypes.c_int
        _fallocate = fn or False
    fallocate = _fallocate
    if fallocate is None or fallocate is False:
        return
    if fallocate(fd, _FALLOC_FL_KEEP_SIZE, 0, length) != 0:
        err = ctypes.get_errno()
        if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return
        raise OSError(err, os.strerror(err))


def segment_name(seq: int, first: int) -> str:
    return f"wal-{seq:016x}-{first:016x}.log"


class _Segment:
    """One WAL file: ``offsets[k]`` is where the record of index ``first + k`` starts."""

    __slots__ = ("seq", "first", "path", "fd", "offsets", "size", "sealed")

    def __init__(self, seq: int, first: int, path: str, fd: int) -> None:
        self.seq = seq
        self.first = first
        self.path = path
        self.fd = fd
        self.offsets: list[int] = []
        self.size = 0  # end of the last entry record (a seal record may follow)
        self.sealed = False

    @property
    def last(self) -> int:
        return self.first + len(self.offsets) - 1

    def end_of(self, index: int) -> int:
        """Byte offset just past the record of ``index``."""
        k = index - self.first + 1
        return self.offsets[k] if k < len(self.offsets) else self.size


class FileLogStore(FailStop, IndexedLog):
    """The ``file`` adapter: see the module docstring for the on-disk contract.

    ``_index`` holds the term of every kept entry; its snapshot point is the anchor. The
    directory is locked (:class:`DirLock`) before anything in it is read; a failed write or
    fsync stops the store for good (:mod:`failstop`).
    """

    durable = True

    def __init__(
        self,
        path: str,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        sync: bool = True,
        logger=None,
        cluster_id: int | None = None,
        node_id: int | None = None,
    ) -> None:
        self.path = os.path.abspath(path)
        self._segment_bytes = segment_bytes
        self._sync = sync
        self._log = (logger or NullLogger()).bind(store="file", path=self.path)
        self._segs: list[_Segment] = []
        self._firsts: list[int] = []
        self._index = LogIndex()
        self._unsynced: set[_Segment] = set()  # written with sync off, not yet fdatasynced
        self._lock = DirLock(self.path)
        try:
            created = datadir.open_dir(self.path, "file", self._init_dir)
            self._load_records()
            self._recover()
            self._preallocate(self._segs[-1])
        except BaseException as e:
            self.close()
            if isinstance(e, OSError):
                raise io_error(self.path, "open", e) from e
            raise
        self._log.info(
            "log store opened",
            created=created,
            first_index=self.first_index(),
            last_index=self.last_index(),
            sync_each_write=sync,
        )
        if cluster_id is not None and node_id is not None:
            self.bind_identity(cluster_id, node_id)

    @staticmethod
    def _init_dir(tmp: str) -> None:
        fd = os.open(os.path.join(tmp, segment_name(0, 1)), os.O_WRONLY | os.O_CREAT, 0o644)
        os.fsync(fd)
        os.close(fd)

    # -- open --------------------------------------------------------------------------------
    def _load_records(self) -> None:
        data = records.read_record(self._p(ANCHOR_FILE), records.KIND_ANCHOR)
        if data is None:
            self._start_seq = 0
        else:
            if len(data) != _ANCHOR.size:
                raise Corruption(self._p(ANCHOR_FILE), None, "anchor record has a bad size")
            index, term, self._start_seq = _ANCHOR.unpack(data)
            self._index.reset(index, term)
        hs = records.read_record(self._p(HARDSTATE_FILE), records.KIND_HARD_STATE)
        self._hard_state = (
            HardState()
            if hs is None
            else records.decode_or_corrupt(self._p(HARDSTATE_FILE), records.decode_hard_state, hs)
        )
        sm = records.read_record(self._p(SNAPMETA_FILE), records.KIND_SNAPSHOT_META)
        self._snapshot_meta = (
            None
            if sm is None
            else records.decode_or_corrupt(self._p(SNAPMETA_FILE), records.decode_snapshot_meta, sm)
        )

    def _list_segments(self) -> tuple[list[tuple[int, int, str]], list[str]]:
        """The segments in use, in order, and the leftover files to remove once all is well."""
        found, leftovers = [], []
        for name in sorted(os.listdir(self.path)):
            if name.endswith(".tmp"):
                leftovers.append(self._p(name))
                continue
            m = _SEGMENT_RE.match(name)
            if m is None:
                continue
            seq, first = int(m.group(1), 16), int(m.group(2), 16)
            if seq < self._start_seq:  # left over from a compaction or reset
                leftovers.append(self._p(name))
                continue
            found.append((seq, first, self._p(name)))
        found.sort()
        if not found or found[0][0] != self._start_seq:
            raise Corruption(self.path, None, f"WAL segment number {self._start_seq} is missing")
        for (s0, _, _), (s1, _, p1) in zip(found, found[1:], strict=False):
            if s1 != s0 + 1:
                raise Corruption(p1, None, f"WAL segment number {s0 + 1} is missing before it")
        return found, leftovers

    def _recover(self) -> None:
        """Scan and check everything; only then repair (cut torn tails, remove leftovers)."""
        found, leftovers = self._list_segments()
        torn: list[tuple[_Segment, int, int]] = []
        for seq, first, path in found:
            seg = _Segment(seq, first, path, os.open(path, os.O_RDWR))
            self._segs.append(seg)
            cut = self._scan(seg)
            if cut is not None:
                torn.append((seg, *cut))
        for seg, end, _size in torn:
            # A torn tail is allowed at the end of the log, and in the segment before an empty
            # last one: a seal cut short while rolling over, before anything went to the next.
            ok = seg is self._segs[-1] or (
                len(self._segs) > 1 and seg is self._segs[-2] and not self._segs[-1].offsets
            )
            if not ok:
                raise Corruption(seg.path, end, "truncated record before the end of the log")
            seg.sealed = False
        for prev, seg in zip(self._segs, self._segs[1:], strict=False):
            if seg.first != prev.last + 1:
                if seg is self._segs[-1] and not seg.offsets:  # an interrupted reset's segment
                    leftovers.append(seg.path)
                    break
                raise Corruption(seg.path, 0, f"starts at index {seg.first}, expected {prev.last + 1}")
        if leftovers and self._segs[-1].path in leftovers:
            os.close(self._segs.pop().fd)
        self._firsts = [s.first for s in self._segs]
        self._check_ends()
        self._load_terms(self._index.first_index, self._segs[-1].last)
        for seg, end, size in torn:
            self._log.warning("cut a torn tail", file=seg.path, offset=end, bytes=size - end)
            os.ftruncate(seg.fd, end)
            os.fsync(seg.fd)
        for path in leftovers:
            os.unlink(path)
        if leftovers:
            records.fsync_dir(self.path)

    def _preallocate(self, seg: _Segment) -> None:
        """Reserve the active segment's blocks up front (the file's size stays its data's):
        a full disk fails here, before an entry is written, not in the middle of a batch."""
        if seg.size < self._segment_bytes:
            preallocate(seg.fd, self._segment_bytes)

    def _check_ends(self) -> None:
        tail = self._segs[-1]
        if tail.sealed:
            raise Corruption(
                tail.path, tail.size, f"sealed, but WAL segment number {tail.seq + 1} is missing"
            )
        anchor = self._index.snapshot_index
        if self._segs[0].first > anchor + 1:
            raise Corruption(self._segs[0].path, 0, f"the log starts after its anchor {anchor}")
        last = tail.last
        if last < anchor:
            raise Corruption(tail.path, None, f"the log ends before its anchor {anchor}")
        if last < self._hard_state.commit:
            raise Corruption(
                tail.path,
                tail.size,
                f"the log ends at {last}, before the commit index {self._hard_state.commit}: "
                "entries or a segment are missing",
            )

    def _scan(self, seg: _Segment) -> tuple[int, int] | None:
        """Index one segment; (end of the good records, file size) when its tail is torn."""
        with open(seg.path, "rb") as f:
            buf = f.read()
        entries, end, status, _next = codec.decode_entry_records(buf)
        if status == codec.RECORDS_CORRUPT:
            raise Corruption(seg.path, end, "bad checksum before the end of the log")
        pos = 0
        for k, (term, index, _kind, payload) in enumerate(entries):
            if index != seg.first + k:
                raise Corruption(seg.path, pos, f"holds index {index}, expected {seg.first + k}")
            if term == 0:  # the seal: only ever the last record
                if k != len(entries) - 1 or payload or status != codec.RECORDS_CLEAN:
                    raise Corruption(seg.path, pos, "a seal record before the end of a segment")
                seg.sealed = True
                break
            seg.offsets.append(pos)
            pos += HEADER + codec.ENTRY_HEADER_BYTES + len(payload)
        seg.size = pos if seg.sealed else end
        return (end, len(buf)) if status == codec.RECORDS_TORN else None

    def _load_terms(self, lo: int, hi: int) -> None:
        """Fill ``_index`` for ``lo..hi`` (``lo`` follows the anchor) from the segments (open only)."""
        terms = [e.term for e in self._read(lo, hi + 1)] if hi >= lo else []
        try:
            self._index.extend(terms)
        except ValueError:  # a term falls: extend kept every term before it
            bad = self._index.last_index + 1
            seg = self._seg_of(bad)
            raise Corruption(seg.path, seg.offsets[bad - seg.first], "term falls") from None

    # -- reader (first_index, last_index and term come from IndexedLog) ----------------------
    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        check_range(lo, hi, self.first_index(), self.last_index())
        if max_bytes is not None and hi > lo:
            hi = self._cut(lo, hi, max_bytes)
        return budget(self._read(lo, hi), max_bytes)

    def _cut(self, lo: int, hi: int, max_bytes: int) -> int:
        """The end of the longest run from ``lo`` within ``max_bytes`` (at least one entry)."""
        total = 0
        for i in range(lo, hi):
            seg = self._seg_of(i)
            start = seg.offsets[i - seg.first]
            total += seg.end_of(i) - start - HEADER - codec.ENTRY_HEADER_BYTES
            if total > max_bytes and i > lo:
                return i
        return hi

    def _seg_of(self, index: int) -> _Segment:
        return self._segs[bisect.bisect_right(self._firsts, index) - 1]

    def _read(self, lo: int, hi: int) -> list[Entry]:
        out: list[Entry] = []
        i = lo
        while i < hi:
            seg = self._seg_of(i)
            j = min(hi, seg.last + 1)
            start = seg.offsets[i - seg.first]
            end = seg.end_of(j - 1)
            buf = os.pread(seg.fd, end - start, start)
            got, _end, status, _n = codec.decode_entry_records(buf)
            if status != codec.RECORDS_CLEAN or len(got) != j - i:
                raise Corruption(seg.path, start, "a record changed on disk after it was written")
            out.extend(Entry(*e) for e in got)
            i = j
        return out

    # -- writer ------------------------------------------------------------------------------
    @guarded("append")
    def append(self, entries: Sequence[Entry]) -> None:
        entries = self._batch_to_write(entries)
        if not entries:
            return
        start = entries[0].index
        if start <= self.last_index():
            self.truncate_suffix(start)
        seg = self._segs[-1]
        if seg.size >= self._segment_bytes and seg.offsets:
            old = seg
            seg = self._new_segment(old.seq + 1, start)
            self._seal(old)
        buf = codec.encode_entry_records(entries)
        try:
            view = memoryview(buf)
            pos = seg.size
            while view:
                n = os.pwrite(seg.fd, view, pos)
                view = view[n:]
                pos += n
            if self._sync:
                self._fsync(seg.fd, seg.path)
            else:
                self._unsynced.add(seg)
        except OSError as e:
            # Final: the store refuses every later write (the pages may be lost already).
            raise io_error(seg.path, "append", e) from e
        pos = seg.size
        for ent in entries:
            seg.offsets.append(pos)
            pos += HEADER + codec.ENTRY_HEADER_BYTES + len(ent.data)
        seg.size = pos
        self._index.extend([ent.term for ent in entries])

    def _new_segment(self, seq: int, first: int) -> _Segment:
        path = self._p(segment_name(seq, first))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        seg = _Segment(seq, first, path, fd)
        try:
            self._preallocate(seg)
        except OSError:
            os.close(fd)
            os.unlink(path)
            raise
        records.fsync_dir(self.path)
        self._segs.append(seg)
        self._firsts.append(first)
        return seg

    def _seal(self, seg: _Segment) -> None:
        """Mark a full segment as followed by another, so that losing the next one shows.

        The next segment is created (and the directory fsynced) before the seal is written:
        a sealed segment always has a successor unless one was lost.
        """
        os.pwrite(seg.fd, codec.encode_entry_records([(0, seg.last + 1, 0, b"")]), seg.size)
        if self._sync:
            self._fsync(seg.fd, seg.path)
        else:
            self._unsynced.add(seg)
        seg.sealed = True

    def _drop_segment(self, seg: _Segment) -> None:
        self._unsynced.discard(seg)
        os.close(seg.fd)
        os.unlink(seg.path)
        self._segs.remove(seg)
        self._firsts = [s.first for s in self._segs]

    @guarded("truncate")
    def truncate_suffix(self, index: int) -> None:
        if not self._suffix_to_drop(index):
            return
        doomed = [g for g in self._segs[1:] if g.first >= index]
        if doomed:
            # Unseal every segment that may become the last one, then drop from the end: a
            # crash at any step leaves a contiguous log whose last segment is unsealed.
            for g in self._segs[: len(self._segs) - 1]:
                if g.sealed and g.last + 1 >= index:
                    os.ftruncate(g.fd, g.size)
                    self._fsync(g.fd, g.path)
                    g.sealed = False
            for g in reversed(doomed):
                self._drop_segment(g)
            records.fsync_dir(self.path)
        seg = self._segs[-1]
        cut = seg.offsets[index - seg.first] if index <= seg.last else seg.size
        os.ftruncate(seg.fd, cut)  # also drops a seal: this is the last segment now
        self._fsync(seg.fd, seg.path)
        del seg.offsets[index - seg.first :]
        seg.size = cut
        seg.sealed = False
        self._index.truncate_after(index - 1)

    @guarded("compact")
    def compact(self, index: int) -> None:
        if index <= self._index.snapshot_index:
            return
        term = self.term(index)
        keep = 0
        while keep < len(self._segs) - 1 and self._segs[keep + 1].first <= index + 1:
            keep += 1
        start_seq = self._segs[keep].seq
        self._write_anchor(index, term, start_seq)
        dropped = self._segs[:keep]
        for seg in dropped:
            self._drop_segment(seg)
        if dropped:
            records.fsync_dir(self.path)
        self._index.compact(index)
        self._start_seq = start_seq

    @guarded("reset")
    def reset(self, index: int, term: int) -> None:
        old = list(self._segs)
        seq = old[-1].seq + 1
        self._new_segment(seq, index + 1)
        self._write_anchor(index, term, seq)
        for seg in old:
            self._drop_segment(seg)
        records.fsync_dir(self.path)
        self._index.reset(index, term)
        self._start_seq = seq

    def _write_anchor(self, index: int, term: int, start_seq: int) -> None:
        self._sync_point(self._p(ANCHOR_FILE))
        records.write_record(
            self._p(ANCHOR_FILE), records.KIND_ANCHOR, _ANCHOR.pack(index, term, start_seq)
        )

    @guarded("sync")
    def sync(self) -> None:
        """Make writes done with sync off durable; free when every write was already synced."""
        for seg in list(self._unsynced):
            if seg in self._segs:
                self._fsync(seg.fd, seg.path)
        self._unsynced.clear()

    def close(self) -> None:
        for seg in self._segs:
            try:
                os.close(seg.fd)
            except OSError:
                pass
        self._segs = []
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()

    # -- small records -----------------------------------------------------------------------
    def hard_state(self) -> HardState:
        return self._hard_state

    @guarded("save hard state")
    def save_hard_state(self, hs: HardState) -> None:
        self._sync_point(self._p(HARDSTATE_FILE))
        records.write_record(
            self._p(HARDSTATE_FILE), records.KIND_HARD_STATE, records.encode_hard_state(hs)
        )
        self._hard_state = hs

    def snapshot_meta(self) -> SnapshotMeta | None:
        return self._snapshot_meta

    @guarded("save snapshot metadata")
    def save_snapshot_meta(self, meta: SnapshotMeta) -> None:
        self._sync_point(self._p(SNAPMETA_FILE))
        records.write_record(
            self._p(SNAPMETA_FILE), records.KIND_SNAPSHOT_META, records.encode_snapshot_meta(meta)
        )
        self._snapshot_meta = meta

    def identity(self) -> tuple[int, int] | None:
        return datadir.read_identity(self.path)

    @guarded("bind identity")
    def bind_identity(self, cluster_id: int, node_id: int) -> None:
        datadir.bind_identity(self.path, cluster_id, node_id)

    def _p(self, name: str) -> str:
        return os.path.join(self.path, name)
