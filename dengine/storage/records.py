"""Small records kept beside a log (hard state, anchor, snapshot metadata, identity) and the
file discipline that makes replacing one atomic.

A record file is ``magic "DGR1" | kind u8 | length u32 | payload | crc32 u32`` (little-endian,
the CRC covers everything before it). It is replaced by writing a temporary file, fsyncing it,
renaming it over the old one and fsyncing the directory: a crash leaves the old record or the
new one, never a mix. A record that fails its checks is :class:`Corruption`, never ignored.
"""

from __future__ import annotations

import os
import struct
import zlib

from dengine.errors import Corruption, DecodeError
from dengine.raft.types import ConfState, HardState, SnapshotMeta

MAGIC = b"DGR1"
KIND_HARD_STATE = 1
KIND_ANCHOR = 2
KIND_SNAPSHOT_META = 3
KIND_IDENTITY = 4
KIND_FORMAT = 5

_HEAD = struct.Struct("<4sBI")
_U32 = struct.Struct("<I")
_HS = struct.Struct("<QQQ")
_PAIR = struct.Struct("<QQ")


def fsync_dir(path: str) -> None:
    """Make a directory's entries (creates, renames, removes) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, sync: bool = True) -> None:
    """Replace ``path`` with ``data``: write a temporary, fsync, rename, fsync the directory."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        fsync_dir(os.path.dirname(path) or ".")


def frame(kind: int, payload: bytes) -> bytes:
    body = _HEAD.pack(MAGIC, kind, len(payload)) + payload
    return body + _U32.pack(zlib.crc32(body) & 0xFFFFFFFF)


def unframe(path: str, kind: int, data: bytes) -> bytes:
    """The payload of a framed record, or Corruption naming ``path``."""
    if len(data) < _HEAD.size + 4:
        raise Corruption(path, 0, f"record file of {len(data)} bytes is too short")
    magic, got_kind, n = _HEAD.unpack_from(data, 0)
    if magic != MAGIC:
        raise Corruption(path, 0, f"bad magic {magic!r}")
    if _HEAD.size + n + 4 != len(data):
        raise Corruption(path, 5, f"length {n} does not match the file size {len(data)}")
    (crc,) = _U32.unpack_from(data, len(data) - 4)
    if zlib.crc32(data[:-4]) & 0xFFFFFFFF != crc:
        raise Corruption(path, len(data) - 4, "checksum mismatch")
    if got_kind != kind:
        raise Corruption(path, 4, f"record kind {got_kind}, expected {kind}")
    return data[_HEAD.size : _HEAD.size + n]


def read_record(path: str, kind: int) -> bytes | None:
    """The payload stored at ``path``, None when the file does not exist."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    return unframe(path, kind, data)


def write_record(path: str, kind: int, payload: bytes, sync: bool = True) -> None:
    atomic_write(path, frame(kind, payload), sync)


# -- payload encodings -----------------------------------------------------------------------
def encode_hard_state(hs: HardState) -> bytes:
    return _HS.pack(hs.term, hs.vote, hs.commit)


def decode_hard_state(data: bytes) -> HardState:
    if len(data) != _HS.size:
        raise DecodeError("hard state", f"{len(data)} bytes, expected {_HS.size}")
    return HardState(*_HS.unpack(data))


def encode_pair(a: int, b: int) -> bytes:
    """An (index, term) anchor or a (cluster_id, node_id) identity."""
    return _PAIR.pack(a, b)


def decode_pair(data: bytes) -> tuple[int, int]:
    if len(data) != _PAIR.size:
        raise DecodeError("pair", f"{len(data)} bytes, expected {_PAIR.size}")
    return _PAIR.unpack(data)


def _ids(ids: frozenset[int]) -> bytes:
    return _U32.pack(len(ids)) + b"".join(struct.pack("<Q", i) for i in sorted(ids))


def encode_snapshot_meta(meta: SnapshotMeta) -> bytes:
    cs = meta.conf_state
    return b"".join(
        [
            _PAIR.pack(meta.index, meta.term),
            _ids(cs.voters),
            _ids(cs.learners),
            _ids(cs.voters_outgoing),
            _ids(cs.learners_next),
            bytes([1 if cs.auto_leave else 0]),
        ]
    )


def decode_snapshot_meta(data: bytes) -> SnapshotMeta:
    try:
        index, term = _PAIR.unpack_from(data, 0)
        pos = _PAIR.size
        sets = []
        for _ in range(4):
            (n,) = _U32.unpack_from(data, pos)
            pos += 4
            sets.append(frozenset(struct.unpack_from(f"<{n}Q", data, pos)))
            pos += 8 * n
        auto_leave = data[pos]
        pos += 1
    except (struct.error, IndexError) as e:
        raise DecodeError("snapshot metadata", str(e)) from e
    if pos != len(data) or auto_leave > 1:
        raise DecodeError("snapshot metadata", "trailing bytes or a bad flag")
    cs = ConfState(sets[0], sets[1], sets[2], sets[3], bool(auto_leave))
    return SnapshotMeta(index, term, cs)


def decode_or_corrupt(path: str, decode, data: bytes):
    """Decode a record payload; a payload that passed its CRC but will not decode is Corruption."""
    try:
        return decode(data)
    except DecodeError as e:
        raise Corruption(path, None, e.reason) from e
