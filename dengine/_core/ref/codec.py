"""Binary encodings: log entries, KV commands, and WAL record framing; reference.

Entry: ``term u64 | index u64 | kind u8 | length u32 | payload`` (little-endian).

KV command: ``op u8`` then, by op:
  PUT      ``klen u32 | key | vlen u32 | value``
  DELETE   ``klen u32 | key``
  CAS      ``klen u32 | key | flags u8 | [elen u32 | expected value] | [expected version u64]
           | [vlen u32 | new value]`` -- flags: 1 expected value given, 2 expected version
           given, 4 the new value is a delete (no value follows)
  BATCH    ``count u32`` then that many PUT or DELETE commands
  SESSION  ``client_id u64 | seq u64`` then one command (exactly-once writes, thesis §6.3)
Decoded commands are tuples: ``(PUT, key, value)``, ``(DELETE, key)``,
``(CAS, key, expected_value|None, expected_version|None, new_value|None)``,
``(BATCH, [(PUT, k, v) | (DELETE, k), ...])``, ``(SESSION, client_id, seq, command)``.

WAL record: ``length u32 | crc32(payload) u32 | crc32(first 8 header bytes) u32 | payload``.
The header has its own checksum so that a damaged length is seen as corruption rather than
mistaken for a short (torn) record. CRC-32 is the zlib polynomial.

``decode_records`` reads records from an offset and stops at the first one that is not whole and
valid, answering ``(records, end, status, next_offset)``: ``end`` is the offset just past the
last good record; ``status`` is RECORDS_CLEAN (``end`` is the end of the buffer), RECORDS_TORN
(the bytes from ``end`` are a partial record, or only zeros: a write cut short), or
RECORDS_CORRUPT (a complete record or header at ``end`` fails its checksum); ``next_offset`` is
the offset past the corrupt record when its header was intact, else -1.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

from dengine.errors import DecodeError

OP_PUT = 1
OP_DELETE = 2
OP_CAS = 3
OP_BATCH = 4
OP_SESSION = 5

CAS_EXPECT_VALUE = 1
CAS_EXPECT_VERSION = 2
CAS_DELETE = 4

RECORDS_CLEAN = 0
RECORDS_TORN = 1
RECORDS_CORRUPT = 2

RECORD_HEADER_BYTES = 12
MAX_RECORD_BYTES = 1 << 30
ENTRY_HEADER_BYTES = 21

_ENTRY = struct.Struct("<QQBI")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_REC = struct.Struct("<III")


# -- entries ---------------------------------------------------------------------------------
def encode_entry(term: int, index: int, kind: int, payload: bytes) -> bytes:
    """One log entry as bytes."""
    try:
        head = _ENTRY.pack(term, index, kind, len(payload))
    except struct.error as e:
        raise OverflowError(f"entry field out of range: {e}") from e
    return head + bytes(payload)


def decode_entry(buf: bytes) -> tuple[int, int, int, bytes]:
    """(term, index, kind, payload) from bytes made by encode_entry; the length must match."""
    if len(buf) < ENTRY_HEADER_BYTES:
        raise DecodeError("entry", f"{len(buf)} bytes is shorter than the header")
    term, index, kind, n = _ENTRY.unpack_from(buf, 0)
    if ENTRY_HEADER_BYTES + n != len(buf):
        raise DecodeError("entry", f"payload length {n} does not match {len(buf)} bytes")
    return term, index, kind, bytes(buf[ENTRY_HEADER_BYTES:])


# -- KV commands -----------------------------------------------------------------------------
def _lv(data: bytes) -> bytes:
    try:
        head = _U32.pack(len(data))
    except struct.error as e:
        raise OverflowError(f"a field of {len(data)} bytes exceeds the u32 length prefix") from e
    return head + bytes(data)


def encode_put(key: bytes, value: bytes) -> bytes:
    return bytes([OP_PUT]) + _lv(key) + _lv(value)


def encode_delete(key: bytes) -> bytes:
    return bytes([OP_DELETE]) + _lv(key)


def encode_cas(
    key: bytes,
    expected_value: bytes | None,
    expected_version: int | None,
    new_value: bytes | None,
) -> bytes:
    """Compare-and-set: write ``new_value`` (or delete when None) if the expectations hold."""
    flags = 0
    tail = b""
    if expected_value is not None:
        flags |= CAS_EXPECT_VALUE
        tail += _lv(expected_value)
    if expected_version is not None:
        flags |= CAS_EXPECT_VERSION
        try:
            tail += _U64.pack(expected_version)
        except struct.error as e:
            raise OverflowError(f"expected_version out of range: {e}") from e
    if new_value is None:
        flags |= CAS_DELETE
    else:
        tail += _lv(new_value)
    return bytes([OP_CAS]) + _lv(key) + bytes([flags]) + tail


def encode_batch(ops: Sequence[tuple]) -> bytes:
    """Atomic batch of ``(OP_PUT, key, value)`` and ``(OP_DELETE, key)`` tuples."""
    parts = [bytes([OP_BATCH]), _U32.pack(len(ops))]
    for op in ops:
        if op[0] == OP_PUT:
            parts.append(encode_put(op[1], op[2]))
        elif op[0] == OP_DELETE:
            parts.append(encode_delete(op[1]))
        else:
            raise ValueError(f"a batch holds only puts and deletes, got op {op[0]!r}")
    return b"".join(parts)


def encode_session(client_id: int, seq: int, command: bytes) -> bytes:
    """Wrap an encoded command with the client id and sequence number that dedupe retries."""
    try:
        return bytes([OP_SESSION]) + _U64.pack(client_id) + _U64.pack(seq) + bytes(command)
    except struct.error as e:
        raise OverflowError(f"client_id or seq out of range: {e}") from e


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise DecodeError("command", f"truncated: need {n} bytes", self.pos)
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return _U32.unpack(self.take(4))[0]

    def u64(self) -> int:
        return _U64.unpack(self.take(8))[0]

    def lv(self) -> bytes:
        return self.take(self.u32())


def _read_command(r: _Reader, nested: bool) -> tuple:
    at = r.pos
    op = r.u8()
    if op == OP_PUT:
        key = r.lv()
        return (OP_PUT, key, r.lv())
    if op == OP_DELETE:
        return (OP_DELETE, r.lv())
    if nested:
        raise DecodeError("command", f"op {op} is not allowed inside a batch", at)
    if op == OP_CAS:
        key = r.lv()
        flags = r.u8()
        if flags & ~(CAS_EXPECT_VALUE | CAS_EXPECT_VERSION | CAS_DELETE):
            raise DecodeError("command", f"unknown CAS flags {flags:#x}", at)
        ev = r.lv() if flags & CAS_EXPECT_VALUE else None
        ever = r.u64() if flags & CAS_EXPECT_VERSION else None
        nv = None if flags & CAS_DELETE else r.lv()
        return (OP_CAS, key, ev, ever, nv)
    if op == OP_BATCH:
        count = r.u32()
        ops = []
        for _ in range(count):
            ops.append(_read_command(r, nested=True))
        return (OP_BATCH, ops)
    if op == OP_SESSION:
        client_id = r.u64()
        seq = r.u64()
        if r.pos < len(r.buf) and r.buf[r.pos] == OP_SESSION:
            raise DecodeError("command", "a session cannot wrap a session", r.pos)
        return (OP_SESSION, client_id, seq, _read_command(r, nested=False))
    raise DecodeError("command", f"unknown op {op}", at)


def decode_command(buf: bytes) -> tuple:
    """Decode one KV command; every byte must be used."""
    r = _Reader(buf)
    cmd = _read_command(r, nested=False)
    if r.pos != len(buf):
        raise DecodeError("command", f"{len(buf) - r.pos} trailing bytes", r.pos)
    return cmd


# -- WAL records -----------------------------------------------------------------------------
def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def encode_record(payload: bytes) -> bytes:
    """Frame one payload: length, payload checksum, header checksum, payload."""
    n = len(payload)
    if n > MAX_RECORD_BYTES:
        raise ValueError(f"record of {n} bytes exceeds {MAX_RECORD_BYTES}")
    first = struct.pack("<II", n, _crc(payload))
    return first + _U32.pack(_crc(first)) + bytes(payload)


def encode_records(payloads: Sequence[bytes]) -> bytes:
    return b"".join(encode_record(p) for p in payloads)


def decode_records(buf: bytes, offset: int = 0) -> tuple[list[bytes], int, int, int]:
    """Read records from ``offset`` until the end or the first bad one (see module doc)."""
    records: list[bytes] = []
    size = len(buf)
    if offset < 0 or offset > size:
        raise ValueError(f"offset {offset} outside the buffer of {size} bytes")
    pos = offset
    while pos < size:
        status, next_offset, end = _check_record(buf, pos, size)
        if status != RECORDS_CLEAN:
            if bytes(buf[pos:]).count(0) == size - pos:
                return records, pos, RECORDS_TORN, -1
            return records, pos, status, next_offset
        records.append(bytes(buf[pos + RECORD_HEADER_BYTES : end]))
        pos = end
    return records, pos, RECORDS_CLEAN, -1


def _check_record(buf: bytes, pos: int, size: int) -> tuple[int, int, int]:
    """(status, next_offset, end) of the record at ``pos``; status CLEAN when it is whole."""
    if size - pos < RECORD_HEADER_BYTES:
        return RECORDS_TORN, -1, -1
    n, pcrc, hcrc = _REC.unpack_from(buf, pos)
    if _crc(bytes(buf[pos : pos + 8])) != hcrc or n > MAX_RECORD_BYTES:
        return RECORDS_CORRUPT, -1, -1
    end = pos + RECORD_HEADER_BYTES + n
    if end > size:
        return RECORDS_TORN, -1, -1
    if _crc(bytes(buf[pos + RECORD_HEADER_BYTES : end])) != pcrc:
        return RECORDS_CORRUPT, end, end
    return RECORDS_CLEAN, -1, end


def encode_entry_records(entries: Sequence[tuple[int, int, int, bytes]]) -> bytes:
    """Frame a batch of (term, index, kind, payload) entries, one record each."""
    return b"".join(encode_record(encode_entry(*e)) for e in entries)


def decode_entry_records(
    buf: bytes, offset: int = 0
) -> tuple[list[tuple[int, int, int, bytes]], int, int, int]:
    """decode_records, with each payload decoded as an entry."""
    records, end, status, next_offset = decode_records(buf, offset)
    return [decode_entry(r) for r in records], end, status, next_offset
