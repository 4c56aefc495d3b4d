"""The KV state machine: put, delete, compare-and-set, atomic batches, reads, exactly-once.

Theory of operation. Commands are the ``codec`` kernel's KV commands carried in NORMAL entries.
Every key carries, as etcd's do, its ``revision`` (the log index that last wrote it), its
``create_revision`` and its ``version`` (writes since it was created; a delete resets it).
``apply`` runs a batch of entries against an overlay of pending changes and then writes the
overlay *and* the applied (index, term) to the engine in one atomic write: after a crash the
machine is exactly at some batch boundary and reports it, so nothing is applied twice or skipped.

Raw keyspace (the same on both engines, so snapshots move between them)::

    b"d" + key            revision u64 | create_revision u64 | version u64 | value
    b"m" + b"applied"     index u64 | term u64
    b"s" + client_id BE   session: last index u64 | count u32 | (seq u64 | len u32 | result)*
    b"h", b"mhistory"     watch history (:mod:`dengine.statemachine.history`)
    b"l", b"L"            leases and their keys (:mod:`dengine.statemachine.leases`)

Exactly-once (Raft thesis §6.3): sessions are registered and expired through the log; a
SESSION-wrapped command carries (client_id, seq) and is applied once, or refused with
:class:`SessionExpired` and not applied. The rules and the table live in
:mod:`dengine.statemachine.sessions`; the table is part of every snapshot.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from dengine._core import codec
from dengine.errors import DecodeError, SnapshotError
from dengine.raft.types import Entry, EntryKind
from dengine.statemachine.alarms import P_ALARM, AlarmTable, is_alarm
from dengine.statemachine.engines import (
    DEFAULT_CHUNK_BYTES,
    MemoryEngine,
    RocksEngine,
    pack_items,
    unpack_chunk,
)
from dengine.statemachine.history import (
    DEFAULT_MAX_BYTES,
    DEFAULT_WINDOW,
    K_HISTORY,
    P_HISTORY,
    History,
)
from dengine.statemachine.leases import (
    OP_ETCD_TXN,
    OP_FIRST,
    P_LEASE,
    P_LEASE_KEY,
    LeaseTable,
    decode_command,
)
from dengine.statemachine.sessions import SessionTable, is_register

P_DATA = b"d"
P_SESSION = b"s"
K_APPLIED = b"mapplied"
K_FORMAT = b"\x00format"
FORMAT = b"dengine-kv-1"
_REC = struct.Struct("<QQQ")
_PAIR = struct.Struct("<QQ")
_RESULT = struct.Struct("<BQQ")


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    revision: int
    create_revision: int
    version: int


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of a write: ``ok`` is False for a CAS that did not match or a delete of a
    missing key; ``revision``/``version`` describe the key afterwards (0 when absent)."""

    ok: bool
    revision: int
    version: int


@dataclass(frozen=True, slots=True)
class ScanResult:
    """A page of a scan; pass ``next_key`` as the next call's start, None when done."""

    items: list[KeyValue]
    next_key: bytes | None


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key above every key that starts with ``prefix`` (None: no bound)."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return None


def encode_result(r: object) -> bytes:
    if isinstance(r, WriteResult):
        return _RESULT.pack(1 if r.ok else 0, r.revision, r.version)
    return b"\x02" + str(getattr(r, "reason", r)).encode()


def decode_result(data: bytes) -> object:
    if data[:1] == b"\x02":
        return DecodeError("command", data[1:].decode(errors="replace"))
    ok, revision, version = _RESULT.unpack(data)
    return WriteResult(bool(ok), revision, version)


class KVStateMachine:
    """The KV machine over an engine (:class:`MemoryEngine` or :class:`RocksEngine`)."""

    def __init__(
        self,
        engine: MemoryEngine | RocksEngine,
        *,
        max_sessions: int = 4096,
        session_results: int = 16,
        session_lifetime_entries: int = 0,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        history_revisions: int = DEFAULT_WINDOW,
        history_bytes: int = DEFAULT_MAX_BYTES,
        logger=None,
    ) -> None:
        self.engine = engine
        self.history = History(engine, history_revisions, logger, max_bytes=history_bytes)
        self.sessions = SessionTable(engine, max_sessions=max_sessions,
                                     session_results=session_results,
                                     lifetime_entries=session_lifetime_entries,
                                     encode_result=encode_result, decode_result=decode_result)
        self.chunk_bytes = chunk_bytes
        self.alarms = AlarmTable(engine)
        self._load()
        self.leases = LeaseTable(self)

    def _load(self) -> None:
        raw = self.engine.get(K_APPLIED)
        self._applied = _PAIR.unpack(raw) if raw else (0, 0)
        self.sessions.load()

    # -- apply -------------------------------------------------------------------------------
    def applied_index(self) -> int:
        return self._applied[0]

    def applied_term(self) -> int:
        return self._applied[1]

    def apply(self, entries: Sequence[Entry]) -> list[object]:
        """Apply committed entries in order; one atomic engine write for the whole batch."""
        if not entries:
            return []
        if entries[0].index <= self._applied[0]:
            raise ValueError(f"entry {entries[0].index} is already applied (at {self._applied[0]})")
        for a, b in zip(entries, entries[1:], strict=False):
            if b.index != a.index + 1:
                raise ValueError(f"entries out of order: {b.index} after {a.index}")
        overlay: dict[bytes, bytes | None] = {}
        results: list[object] = []
        for e in entries:
            if e.kind != EntryKind.NORMAL or not e.data:
                results.append(None)
                continue
            if is_register(e.data):
                results.append(self.sessions.register(e.index, e.data, overlay))
                continue
            if is_alarm(e.data):
                results.append(self.alarms.apply(e.data, overlay))
                continue
            try:
                cmd = decode_command(e.data)
            except DecodeError as err:
                results.append(err)
                continue
            results.append(self._command(cmd, e.index, overlay))
        self.sessions.flush(overlay)
        last = entries[-1]
        overlay[K_APPLIED] = _PAIR.pack(last.index, last.term)
        self.history.finish(last.index, overlay)
        try:
            self.engine.write(overlay)
        except BaseException:
            self.history.abort()
            self._load()  # the session table in memory must match what the engine holds
            self.history.load()
            self.leases.load()
            self.alarms.load()
            raise
        self._applied = (last.index, last.term)
        self.history.publish(last.index)
        return results

    def _command(self, cmd: tuple, index: int, overlay: dict) -> object:
        if cmd[0] == codec.OP_SESSION:
            inner = cmd[3]
            return self.sessions.run(cmd[1], cmd[2], index,
                                     lambda: self._execute(inner, index, overlay), overlay)
        return self._execute(cmd, index, overlay)

    def _read_raw(self, key: bytes, overlay: dict) -> tuple[int, int, int, bytes] | None:
        raw = overlay[P_DATA + key] if P_DATA + key in overlay else self.engine.get(P_DATA + key)
        if raw is None:
            return None
        rev, create, version = _REC.unpack_from(raw, 0)
        return rev, create, version, bytes(raw[_REC.size :])

    def _put(self, key: bytes, value: bytes, index: int, overlay: dict,
             lease: int = 0) -> WriteResult:
        cur = self._read_raw(key, overlay)
        create, version = (index, 1) if cur is None else (cur[1], cur[2] + 1)
        overlay[P_DATA + key] = _REC.pack(index, create, version) + value
        self.history.on_put(key, value, index, create, version, lease, cur, overlay)
        self.leases.on_write(key, lease, overlay)
        return WriteResult(True, index, version)

    def _delete(self, key: bytes, index: int, overlay: dict) -> WriteResult:
        cur = self._read_raw(key, overlay)
        overlay[P_DATA + key] = None
        if cur is not None:
            self.history.on_delete(key, index, cur, overlay)
            self.leases.on_write(key, -1, overlay)
        return WriteResult(cur is not None, 0, 0)

    def _execute(self, cmd: tuple, index: int, overlay: dict) -> object:
        op = cmd[0]
        if op == codec.OP_PUT:
            return self._put(cmd[1], cmd[2], index, overlay)
        if op == codec.OP_DELETE:
            return self._delete(cmd[1], index, overlay)
        if op == codec.OP_CAS:
            _op, key, expect_value, expect_version, new_value = cmd
            cur = self._read_raw(key, overlay)
            cur_version = 0 if cur is None else cur[2]
            ok = True
            if expect_version is not None and expect_version != cur_version:
                ok = False
            if expect_value is not None and (cur is None or cur[3] != expect_value):
                ok = False
            if not ok:
                return WriteResult(False, 0 if cur is None else cur[0], cur_version)
            if new_value is None:
                self._delete(key, index, overlay)
                return WriteResult(True, 0, 0)
            return self._put(key, new_value, index, overlay)
        if op == codec.OP_BATCH:
            for sub in cmd[1]:
                self._execute(sub, index, overlay)
            return WriteResult(True, index, 0)
        if op == OP_ETCD_TXN:
            from dengine.etcd.store import apply_txn

            return apply_txn(self, cmd[1], index, overlay)
        if op >= OP_FIRST:
            return self.leases.execute(cmd, index, overlay)
        return DecodeError("command", f"op {op} cannot be applied here")

    # -- reads -------------------------------------------------------------------------------
    @staticmethod
    def _kv(raw_key: bytes, raw: bytes) -> KeyValue:
        rev, create, version = _REC.unpack_from(raw, 0)
        return KeyValue(bytes(raw_key[1:]), bytes(raw[_REC.size :]), rev, create, version)

    def get(self, key: bytes) -> KeyValue | None:
        raw = self.engine.get(P_DATA + key)
        return None if raw is None else self._kv(P_DATA + key, raw)

    def get_many(self, keys: Sequence[bytes]) -> list[KeyValue | None]:
        return [self.get(k) for k in keys]

    def range(self, start: bytes, end: bytes | None = None, limit: int = 0,
              max_bytes: int = 0) -> ScanResult:
        """Keys in ``[start, end)`` (``end`` None: to the last key), at most ``limit`` (0: all)
        and, past the first, at most ``max_bytes`` of stored keys and values (0: no budget)."""
        if limit < 0:
            raise ValueError("limit must be >= 0")
        raw_end = prefix_end(P_DATA) if end is None else P_DATA + end
        if max_bytes:
            rows = self.engine.scan(P_DATA + start, raw_end, limit + 1 if limit else 0, max_bytes)
            if sum(len(k) + len(v) for k, v in rows) > max_bytes:  # the budget ran out here
                items = [self._kv(k, v) for k, v in rows[: max(1, len(rows) - 1)]]
                return ScanResult(items, items[-1].key + b"\x00")
        else:
            rows = self.engine.scan(P_DATA + start, raw_end, limit + 1 if limit else 0)
        more = bool(limit) and len(rows) > limit
        items = [self._kv(k, v) for k, v in (rows[:limit] if more else rows)]
        return ScanResult(items, items[-1].key + b"\x00" if more else None)

    def prefix(self, prefix: bytes, limit: int = 0, start: bytes | None = None,
               max_bytes: int = 0) -> ScanResult:
        """Keys starting with ``prefix``; ``start`` resumes from a previous ``next_key``."""
        begin = prefix if start is None or start < prefix else start
        return self.range(begin, prefix_end(prefix), limit, max_bytes)

    # -- snapshots ---------------------------------------------------------------------------
    @property
    def durable(self) -> bool:
        """True when the engine keeps the data and the applied index across a restart: then
        the machine is its own snapshot and the node writes no snapshot file for log
        compaction (a follower that needs one gets a stream of :meth:`snapshot`)."""
        return self.engine.durable

    def sync(self) -> None:
        """Make everything applied so far durable (before the log is compacted past it)."""
        self.engine.sync()

    def snapshot(self) -> _KVSnapshot:
        """Pin the current state; its chunks stream later while ``apply`` goes on."""
        return _KVSnapshot(self.engine.pin(), self._applied, self.chunk_bytes)

    def restore(self, chunks: Iterable[bytes]) -> None:
        """Replace everything with a snapshot's content; atomic in the engine."""
        self.engine.replace(_checked_items(chunks))
        self._load()
        self.leases.load()
        self.alarms.load()
        self.history.restored(self._applied[0])

    def close(self) -> None:
        self.engine.close()


class _KVSnapshot:
    """A pinned engine view; its stream starts with the format record."""

    def __init__(self, pinned, applied: tuple[int, int], chunk_bytes: int) -> None:
        self._pinned = pinned
        self.index, self.term = applied
        self._chunk_bytes = chunk_bytes

    def chunks(self) -> Iterator[bytes]:
        yield from pack_items([(K_FORMAT, FORMAT)], 1)
        yield from self._pinned.chunks(self._chunk_bytes)

    def close(self) -> None:
        self._pinned.close()


def _checked_items(chunks: Iterable[bytes]) -> Iterable[tuple[bytes, bytes]]:
    """Items of a KV snapshot; a foreign or malformed stream raises before the swap."""
    first = True
    seen_applied = False
    for chunk in chunks:
        for k, v in unpack_chunk(chunk):
            if first:
                if (k, v) != (K_FORMAT, FORMAT):
                    raise SnapshotError("the snapshot is not a dengine KV snapshot")
                first = False
                continue
            if k == K_APPLIED:
                seen_applied = True
            elif not k.startswith((P_DATA, P_SESSION, P_HISTORY, P_LEASE, P_LEASE_KEY, P_ALARM)) \
                    and k != K_HISTORY:
                raise SnapshotError(f"unknown key {k[:16]!r} in a KV snapshot")
            yield k, v
    if first or not seen_applied:
        raise SnapshotError("the KV snapshot is incomplete (no applied index)")
