"""Snapshot files: a state machine's chunks, each checksummed, with one checksum for the whole.

Layout of ``snap-<term>-<index>.snap`` (little-endian)::

    header   "DGSNAP01" | meta_len u32 | SnapshotMeta | crc32(all header bytes before) u32
    chunk    0x01 | length u32 | crc32(payload) u32 | payload          (any number)
    trailer  0x02 | chunk count u32 | payload bytes u64 | crc32 of every payload in order u32
             | crc32(the trailer bytes before) u32

A file is written under ``.tmp``, fsynced, renamed into place and the directory fsynced, so a
crash leaves no half file under a real name; leftovers are removed when the directory is opened.
A reader verifies everything (:meth:`SnapshotReader.verify`) before anyone restores from it, and
checks each chunk again as it streams them; damage is :class:`SnapshotError` naming the file
and offset. A snapshot received from a peer arrives as raw file bytes through
:meth:`SnapshotStore.incoming` and only becomes visible once it has verified.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator

from dengine.errors import DecodeError, SnapshotError
from dengine.raft.types import SnapshotMeta
from dengine.storage import records

MAGIC = b"DGSNAP01"
TAG_CHUNK = 1
TAG_TRAILER = 2
_U32 = struct.Struct("<I")
_CHUNK = struct.Struct("<BII")
_TRAILER = struct.Struct("<BIQI")
MAX_CHUNK_BYTES = 1 << 30
_NAME_RE = re.compile(r"^snap-([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


def _crc(data: bytes, start: int = 0) -> int:
    return zlib.crc32(data, start) & 0xFFFFFFFF


def snapshot_name(meta: SnapshotMeta) -> str:
    return f"snap-{meta.term:016x}-{meta.index:016x}.snap"


def header_bytes(meta: SnapshotMeta) -> bytes:
    m = records.encode_snapshot_meta(meta)
    body = MAGIC + _U32.pack(len(m)) + m
    return body + _U32.pack(_crc(body))


class SnapshotWriter:
    """Frames chunks into a file; ``finish`` makes it durable and visible under its name."""

    def __init__(self, directory: str, meta: SnapshotMeta) -> None:
        self.meta = meta
        self.path = os.path.join(directory, snapshot_name(meta))
        self._tmp = self.path + ".tmp"
        self._f = open(self._tmp, "wb")  # noqa: SIM115 - closed in finish/abort
        self._f.write(header_bytes(meta))
        self._count = 0
        self._bytes = 0
        self._crc = 0

    def add(self, chunk: bytes) -> None:
        if len(chunk) > MAX_CHUNK_BYTES:
            raise SnapshotError(f"a chunk of {len(chunk)} bytes is over {MAX_CHUNK_BYTES}")
        self._f.write(_CHUNK.pack(TAG_CHUNK, len(chunk), _crc(chunk)))
        self._f.write(chunk)
        self._count += 1
        self._bytes += len(chunk)
        self._crc = _crc(chunk, self._crc)

    def finish(self) -> str:
        t = _TRAILER.pack(TAG_TRAILER, self._count, self._bytes, self._crc)
        self._f.write(t + _U32.pack(_crc(t)))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._tmp, self.path)
        records.fsync_dir(os.path.dirname(self.path))
        return self.path

    def abort(self) -> None:
        _discard(self._f, self._tmp)


def framed(meta: SnapshotMeta, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The bytes of a snapshot file holding ``chunks``, in pieces, without writing a file.

    What a leader streams to a follower straight from a pinned view of its state machine;
    the follower receives exactly what :class:`SnapshotWriter` would have written.
    """
    yield header_bytes(meta)
    count = size = crc = 0
    for chunk in chunks:
        if len(chunk) > MAX_CHUNK_BYTES:
            raise SnapshotError(f"a chunk of {len(chunk)} bytes is over {MAX_CHUNK_BYTES}")
        c = _crc(chunk)
        count += 1
        size += len(chunk)
        crc = _crc(chunk, crc)
        yield _CHUNK.pack(TAG_CHUNK, len(chunk), c) + chunk
    t = _TRAILER.pack(TAG_TRAILER, count, size, crc)
    yield t + _U32.pack(_crc(t))


class SnapshotReader:
    """Reads one snapshot file; nothing it yields has skipped a checksum."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + 4)
            if len(head) < len(MAGIC) + 4 or head[: len(MAGIC)] != MAGIC:
                raise self._bad(0, "not a dengine snapshot file (bad magic)")
            (n,) = _U32.unpack_from(head, len(MAGIC))
            if n > 1 << 24:
                raise self._bad(len(MAGIC), f"metadata length {n} is absurd")
            rest = f.read(n + 4)
        if len(rest) != n + 4:
            raise self._bad(len(head), "the header is cut short")
        if _crc(head + rest[:n]) != _U32.unpack_from(rest, n)[0]:
            raise self._bad(0, "header checksum mismatch")
        try:
            self.meta = records.decode_snapshot_meta(rest[:n])
        except DecodeError as e:
            raise self._bad(len(head), e.reason) from e
        self._body = len(head) + n + 4

    def _bad(self, offset: int, reason: str) -> SnapshotError:
        return SnapshotError(f"{self.path} at byte offset {offset}: {reason}")

    def _walk(self) -> Iterator[bytes]:
        crc = count = total = 0
        with open(self.path, "rb") as f:
            f.seek(self._body)
            pos = self._body
            while True:
                head = f.read(_CHUNK.size)
                if len(head) < 1:
                    raise self._bad(pos, "no trailer: the file is cut short")
                if head[0] == TAG_TRAILER:
                    tail = head + f.read(_TRAILER.size + 4 - len(head))
                    self._check_trailer(pos, tail, count, total, crc)
                    if f.read(1):
                        raise self._bad(pos + len(tail), "bytes after the trailer")
                    return
                if head[0] != TAG_CHUNK or len(head) < _CHUNK.size:
                    raise self._bad(pos, "bad chunk header")
                _tag, n, want = _CHUNK.unpack(head)
                if n > MAX_CHUNK_BYTES:
                    raise self._bad(pos, f"chunk length {n} is absurd")
                chunk = f.read(n)
                if len(chunk) != n or _crc(chunk) != want:
                    raise self._bad(pos, f"chunk {count} fails its checksum")
                crc = _crc(chunk, crc)
                count += 1
                total += n
                pos += _CHUNK.size + n
                yield chunk

    def _check_trailer(self, pos: int, tail: bytes, count: int, total: int, crc: int) -> None:
        if len(tail) != _TRAILER.size + 4:
            raise self._bad(pos, "the trailer is cut short")
        if _crc(tail[:-4]) != _U32.unpack_from(tail, _TRAILER.size)[0]:
            raise self._bad(pos, "trailer checksum mismatch")
        _tag, n, size, whole = _TRAILER.unpack_from(tail, 0)
        if (n, size, whole) != (count, total, crc):
            raise self._bad(pos, "the whole-file checksum or counts do not match the chunks")

    def verify(self) -> None:
        """Read the whole file and check every checksum; raise SnapshotError on any damage."""
        for _ in self._walk():
            pass

    def chunks(self) -> Iterator[bytes]:
        """The chunks in order, each checked; the last check (the trailer) runs at the end."""
        return self._walk()


class IncomingSnapshot:
    """Raw snapshot-file bytes from a peer: written to a temporary, visible once verified."""

    def __init__(self, directory: str) -> None:
        self._dir = directory
        self._tmp = os.path.join(directory, f"incoming-{os.getpid()}-{id(self):x}.snap.tmp")
        self._f = open(self._tmp, "wb")  # noqa: SIM115 - closed in commit/abort

    def write(self, data: bytes) -> None:
        self._f.write(data)

    def commit(self) -> SnapshotReader:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        try:
            reader = SnapshotReader(self._tmp)
            reader.verify()
        except BaseException:
            os.unlink(self._tmp)
            raise
        path = os.path.join(self._dir, snapshot_name(reader.meta))
        os.replace(self._tmp, path)
        records.fsync_dir(self._dir)
        return SnapshotReader(path)

    def abort(self) -> None:
        _discard(self._f, self._tmp)


def _discard(f, tmp: str) -> None:
    """Close and remove a snapshot file that is not finished (a write or receipt given up)."""
    f.close()
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


class SnapshotStore:
    """A directory of snapshot files: write, find the latest, receive, clean up."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        for name in os.listdir(self.directory):
            if name.endswith(".tmp"):
                os.unlink(os.path.join(self.directory, name))

    def write(self, meta: SnapshotMeta, chunks: Iterable[bytes], keep: int = 1) -> str:
        """Write a snapshot file from ``chunks``, then remove all but the ``keep`` newest."""
        w = SnapshotWriter(self.directory, meta)
        try:
            for chunk in chunks:
                w.add(chunk)
            path = w.finish()
        except BaseException:
            w.abort()
            raise
        self.cleanup(keep)
        return path

    def list(self) -> list[tuple[int, int, str]]:
        """(index, term, path) of every snapshot file, oldest first."""
        out = []
        for name in os.listdir(self.directory):
            m = _NAME_RE.match(name)
            if m:
                term, index = int(m.group(1), 16), int(m.group(2), 16)
                out.append((index, term, os.path.join(self.directory, name)))
        return sorted(out)

    def latest(self) -> SnapshotReader | None:
        found = self.list()
        return SnapshotReader(found[-1][2]) if found else None

    def incoming(self) -> IncomingSnapshot:
        return IncomingSnapshot(self.directory)

    def cleanup(self, keep: int = 1) -> None:
        found = self.list()
        for _index, _term, path in found[: max(0, len(found) - keep)]:
            os.unlink(path)
        records.fsync_dir(self.directory)
