"""Leases in the KV machine: grant, attach, revoke and expiry, all decided by log entries.

Theory of operation
-------------------
A lease is an id and a TTL in seconds. Every change to the lease table is a log entry, applied
here alike on every replica: GRANT (id, ttl), a PUT attached to a lease, and REVOKE (by a client,
or by the leader when its clock says the lease ran out; both are the same entry, the second
flagged as an expiry). The replicas never read a clock: *when* a lease expires is the leader's
decision (:mod:`dengine.node.leases`), *what* expiry does is this entry's, at one index
everywhere. A REVOKE deletes the lease and every key attached to it in the same atomic batch,
at the revoke's revision, so watchers see the deletes together.

A key is attached by a put with a lease; a later put without one, or a delete, detaches it (as
in etcd). A put to a lease that does not exist fails with
:class:`~dengine.errors.LeaseNotFound` and changes nothing.

Commands are NORMAL entries whose first byte is at or above :data:`OP_FIRST` (the ``codec``
kernel's ops are below it); :func:`decode_command` hands every other entry to the kernel. A
lease command with a client session is wrapped in :data:`OP_LEASE_SESSION` and decodes to the
kernel's session tuple, so exactly-once works for it as for any write.

Raw keyspace (beside the KV machine's)::

    b"l" + id u64 BE           granted ttl i64
    b"L" + id u64 BE + key     b"" (key attached to the lease)
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from dengine._core import codec
from dengine.errors import DecodeError, InvalidArgument, LeaseNotFound

if TYPE_CHECKING:
    from dengine.statemachine.kv import KVStateMachine

P_LEASE = b"l"
P_LEASE_KEY = b"L"
OP_FIRST = 0x40
OP_GRANT = 0x41
OP_REVOKE = 0x42
OP_PUT = 0x43
OP_LEASE_SESSION = 0x4F
#: An etcd Txn (the op byte, then an etcdserverpb.TxnRequest): applied by dengine.etcd.store.
OP_ETCD_TXN = 0x50
#: Longest TTL a lease may have (one year).
MAX_TTL_S = 365 * 24 * 3600
_ID = struct.Struct(">Q")
_GRANT = struct.Struct("<BQq")
_REVOKE = struct.Struct("<BQB")
_PUT_HEAD = struct.Struct("<BQ")
_SESSION = struct.Struct("<BQQ")
MAX_U64 = (1 << 64) - 1


def encode_grant(lease_id: int, ttl_s: int) -> bytes:
    if not 0 < lease_id <= MAX_U64:
        raise InvalidArgument(f"lease id {lease_id} is not in 1..2^64-1")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise InvalidArgument(f"lease ttl {ttl_s} s is not in 1..{MAX_TTL_S}")
    return _GRANT.pack(OP_GRANT, lease_id, ttl_s)


def encode_revoke(lease_id: int, expired: bool = False) -> bytes:
    return _REVOKE.pack(OP_REVOKE, lease_id, 1 if expired else 0)


def encode_put(lease_id: int, key: bytes, value: bytes) -> bytes:
    """A put attached to ``lease_id`` (the kernel's put command after the lease)."""
    return _PUT_HEAD.pack(OP_PUT, lease_id) + codec.encode_put(key, value)


def encode_session(client_id: int, seq: int, command: bytes) -> bytes:
    return _SESSION.pack(OP_LEASE_SESSION, client_id, seq) + command


def decode_command(data: bytes) -> tuple:
    """The command tuple of an entry: lease commands here, the rest by the kernel."""
    op = data[0]
    if op < OP_FIRST:
        return codec.decode_command(data)
    try:
        if op == OP_GRANT and len(data) == _GRANT.size:
            return _GRANT.unpack(data)
        if op == OP_REVOKE and len(data) == _REVOKE.size:
            _op, lease_id, expired = _REVOKE.unpack(data)
            return (OP_REVOKE, lease_id, bool(expired))
        if op == OP_PUT and len(data) > _PUT_HEAD.size:
            _op, lease_id = _PUT_HEAD.unpack_from(data, 0)
            inner = codec.decode_command(data[_PUT_HEAD.size :])
            if inner[0] == codec.OP_PUT:
                return (OP_PUT, lease_id, inner[1], inner[2])
        if op == OP_ETCD_TXN:
            return (OP_ETCD_TXN, bytes(data[1:]))
        if op == OP_LEASE_SESSION and len(data) > _SESSION.size:
            _op, client_id, seq = _SESSION.unpack_from(data, 0)
            inner = decode_command(data[_SESSION.size :])
            if inner[0] >= OP_FIRST and inner[0] != OP_LEASE_SESSION:
                return (codec.OP_SESSION, client_id, seq, inner)
    except struct.error as e:
        raise DecodeError("command", f"lease command cut short: {e}") from e
    raise DecodeError("command", f"malformed lease command (op {op:#x}, {len(data)} bytes)")


class LeaseTable:
    """The leases of one KV machine, kept in its engine (see the module docstring)."""

    def __init__(self, kv: KVStateMachine) -> None:
        self.kv = kv
        self.load()

    def load(self) -> None:
        engine = self.kv.engine
        self.ttl: dict[int, int] = {}
        self.keys: dict[int, set[bytes]] = {}
        self.key_lease: dict[bytes, int] = {}
        for k, v in engine.scan(P_LEASE, b"m", 0):
            self.ttl[_ID.unpack(k[1:9])[0]] = struct.unpack("<q", v)[0]
        for k, _v in engine.scan(P_LEASE_KEY, b"M", 0):
            lease_id, key = _ID.unpack(k[1:9])[0], bytes(k[9:])
            self.keys.setdefault(lease_id, set()).add(key)
            self.key_lease[key] = lease_id

    # -- called by the KV machine while it applies ----------------------------------------------
    def on_write(self, key: bytes, lease_id: int, overlay: dict) -> None:
        """``key`` was put with ``lease_id`` (0: none) or deleted (-1): move its attachment."""
        old = self.key_lease.get(key, 0)
        if old == lease_id:
            return
        if old:
            self.keys[old].discard(key)
            del self.key_lease[key]
            overlay[P_LEASE_KEY + _ID.pack(old) + key] = None
        if lease_id > 0:
            self.keys.setdefault(lease_id, set()).add(key)
            self.key_lease[key] = lease_id
            overlay[P_LEASE_KEY + _ID.pack(lease_id) + key] = b""

    def execute(self, cmd: tuple, index: int, overlay: dict) -> Any:
        op = cmd[0]
        if op == OP_GRANT:
            _op, lease_id, ttl_s = cmd
            if lease_id in self.ttl:
                return InvalidArgument(f"lease {lease_id} already exists")
            self.ttl[lease_id] = ttl_s
            overlay[P_LEASE + _ID.pack(lease_id)] = struct.pack("<q", ttl_s)
            return _ok(index)
        if op == OP_REVOKE:
            return self._revoke(cmd[1], index, overlay)
        if op == OP_PUT:
            _op, lease_id, key, value = cmd
            if lease_id not in self.ttl:
                return LeaseNotFound(lease_id)
            return self.kv._put(key, value, index, overlay, lease_id)
        return DecodeError("command", f"op {op} cannot be applied here")

    def _revoke(self, lease_id: int, index: int, overlay: dict) -> Any:
        if lease_id not in self.ttl:
            return LeaseNotFound(lease_id)
        for key in sorted(self.keys.get(lease_id, ())):
            self.kv._delete(key, index, overlay)  # detaches it (on_write)
        self.keys.pop(lease_id, None)
        del self.ttl[lease_id]
        overlay[P_LEASE + _ID.pack(lease_id)] = None
        return _ok(index)

    def attached(self, lease_id: int) -> list[bytes]:
        return sorted(self.keys.get(lease_id, ()))


def _ok(index: int) -> Any:
    from dengine.statemachine.kv import WriteResult

    return WriteResult(True, index, 0)
