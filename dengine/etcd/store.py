"""etcd's view of the KV machine: ranges (now or at a past revision) and atomic Txn commands.

Everything that writes goes through :func:`apply_txn`, run by the KV machine while it applies a
log entry (``OP_ETCD_TXN``: the op byte then an ``etcdserverpb.TxnRequest``): a Put is a Txn
with one success op, a DeleteRange one too, so a range delete is one atomic entry. As in etcd,
the whole path through the txn (each nested txn's compares) is decided against the state
*before* the txn, then the leases and ``ignore_value``/``ignore_lease`` of the chosen puts are
checked, and only then are the ops executed: a refused txn changes nothing. Every change of one
txn gets the entry's index as its revision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from dengine.errors import DecodeError, DengineError, InvalidArgument, LeaseNotFound
from dengine.etcd.pb import kv_pb2, rpc_pb2
from dengine.statemachine.kv import P_DATA, prefix_end

if TYPE_CHECKING:
    from dengine.statemachine.kv import KVStateMachine

__all__ = ["Rec", "EtcdError", "apply_txn", "range_at", "key_range", "check_txn",
           "MAX_TXN_OPS", "COMPACTED", "FUTURE_REV"]

#: etcd's default --max-txn-ops.
MAX_TXN_OPS = 128
COMPACTED = "etcdserver: mvcc: required revision has been compacted"
FUTURE_REV = "etcdserver: mvcc: required revision is a future revision"


class EtcdError(DengineError):
    """An error etcd clients know: ``code`` a gRPC status name, ``message`` etcd's own text."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


class Rec(NamedTuple):
    """A key's record: what ``mvccpb.KeyValue`` carries."""

    key: bytes
    mod: int
    create: int
    version: int
    value: bytes
    lease: int

    def pb(self, keys_only: bool = False) -> kv_pb2.KeyValue:
        return kv_pb2.KeyValue(key=self.key, create_revision=self.create, mod_revision=self.mod,
                               version=self.version, lease=self.lease,
                               value=b"" if keys_only else self.value)


def key_range(key: bytes, range_end: bytes) -> tuple[bytes, bytes | None, bool]:
    """etcd's (key, range_end) as (start, end or None for no bound, single key?)."""
    if not range_end:
        return key, None, True
    if range_end == b"\x00":
        return key, None, False  # every key >= key
    return key, range_end, False


def _in(k: bytes, start: bytes, end: bytes | None, single: bool) -> bool:
    if single:
        return k == start
    return k >= start and (end is None or k < end)


def _rec(kv: KVStateMachine, key: bytes, raw: tuple | None) -> Rec | None:
    if raw is None:
        return None
    mod, create, version, value = raw
    return Rec(key, mod, create, version, value, kv.leases.key_lease.get(key, 0))


def current(kv: KVStateMachine, key: bytes, range_end: bytes, overlay: dict) -> list[Rec]:
    """The records in the range, in key order, as of the overlay on top of the engine."""
    start, end, single = key_range(key, range_end)
    if single:
        r = _rec(kv, start, kv._read_raw(start, overlay))
        return [] if r is None else [r]
    if end is not None and end <= start:
        return []
    raw_end = prefix_end(P_DATA) if end is None else P_DATA + end
    keys = {bytes(k[1:]) for k, _v in kv.engine.scan(P_DATA + start, raw_end, 0)}
    for k in overlay:
        if k[:1] == P_DATA and _in(k[1:], start, end, False):
            keys.add(bytes(k[1:]))
    out = []
    for k in sorted(keys):
        r = _rec(kv, k, kv._read_raw(k, overlay))
        if r is not None:
            out.append(r)
    return out


def range_at(kv: KVStateMachine, key: bytes, range_end: bytes, revision: int) -> list[Rec]:
    """The range as it was at ``revision`` (0: now), rolled back through the watch history."""
    applied = kv.applied_index()
    recs = current(kv, key, range_end, {})
    if revision <= 0 or revision >= applied:
        if revision > applied:
            raise EtcdError("OUT_OF_RANGE", FUTURE_REV)
        return recs
    if revision + 1 < kv.history.oldest_revision(applied):
        raise EtcdError("OUT_OF_RANGE", COMPACTED)
    start, end, single = key_range(key, range_end)
    state = {r.key: r for r in recs}
    seen: set[bytes] = set()
    nxt = revision + 1
    while nxt <= applied:
        events, after = kv.history.read(nxt, 4096, lambda k: _in(k, start, end, single))
        if after == nxt:
            break
        for e in events:
            if e.key in seen:
                continue
            seen.add(e.key)  # its first change after ``revision``: prev is the state then
            p = e.prev
            if p is None:
                state.pop(e.key, None)
            else:  # the lease of a past version is not kept: 0
                state[e.key] = Rec(e.key, p.revision, p.create_revision, p.version, p.value, 0)
        nxt = after
    return [state[k] for k in sorted(state)]


# -- Txn ------------------------------------------------------------------------------------------
def check_txn(req: rpc_pb2.TxnRequest) -> None:
    """What etcd refuses before proposing: too many ops, empty keys, a key put twice."""
    if len(req.compare) > MAX_TXN_OPS or len(req.success) > MAX_TXN_OPS or \
            len(req.failure) > MAX_TXN_OPS:
        raise EtcdError("INVALID_ARGUMENT", "etcdserver: too many operations in txn request")
    for c in req.compare:
        if not c.key:
            raise EtcdError("INVALID_ARGUMENT", "etcdserver: key is not provided")
    for ops in (req.success, req.failure):
        puts: set[bytes] = set()
        deletes: list[tuple[bytes, bytes | None, bool]] = []
        for op in ops:
            kind = op.WhichOneof("request")
            if kind is None:
                raise EtcdError("INVALID_ARGUMENT", "etcdserver: request is empty")
            sub = getattr(op, kind)
            if kind == "request_txn":
                check_txn(sub)
                continue
            if not sub.key:
                raise EtcdError("INVALID_ARGUMENT", "etcdserver: key is not provided")
            if kind == "request_put":
                if sub.key in puts:
                    _duplicate()
                puts.add(sub.key)
            elif kind == "request_delete_range":
                deletes.append(key_range(sub.key, sub.range_end))
        if any(_in(k, *d) for k in puts for d in deletes):
            _duplicate()  # as etcd: a key put and deleted in one txn


def _duplicate() -> None:
    raise EtcdError("INVALID_ARGUMENT", "etcdserver: duplicate key given in txn request")


def _compare(kv: KVStateMachine, c: rpc_pb2.Compare, overlay: dict) -> bool:
    recs = current(kv, c.key, c.range_end, overlay)
    C = rpc_pb2.Compare
    if not recs:  # a missing key has version/revisions/lease 0 and no value
        if c.target == C.VALUE:
            return False
        recs = [Rec(c.key, 0, 0, 0, b"", 0)]
    mine: Any  # bytes for VALUE, int for the other targets; theirs alike
    theirs: Any
    for r in recs:
        if c.target == C.VALUE:
            mine, theirs = r.value, c.value
        elif c.target == C.VERSION:
            mine, theirs = r.version, c.version
        elif c.target == C.CREATE:
            mine, theirs = r.create, c.create_revision
        elif c.target == C.MOD:
            mine, theirs = r.mod, c.mod_revision
        else:
            mine, theirs = r.lease, c.lease
        ok = {C.EQUAL: mine == theirs, C.NOT_EQUAL: mine != theirs,
              C.GREATER: mine > theirs, C.LESS: mine < theirs}.get(c.result, False)
        if not ok:
            return False
    return True


class _Path(NamedTuple):
    succeeded: bool
    children: list  # one _Path per nested txn of the chosen branch, in order


def _path(kv: KVStateMachine, req: rpc_pb2.TxnRequest, overlay: dict) -> _Path:
    ok = all(_compare(kv, c, overlay) for c in req.compare)
    ops = req.success if ok else req.failure
    return _Path(ok, [_path(kv, op.request_txn, overlay) for op in ops
                      if op.WhichOneof("request") == "request_txn"])


def _check(kv: KVStateMachine, req: rpc_pb2.TxnRequest, path: _Path, overlay: dict) -> None:
    nested = iter(path.children)
    for op in req.success if path.succeeded else req.failure:
        kind = op.WhichOneof("request")
        if kind == "request_txn":
            _check(kv, op.request_txn, next(nested), overlay)
        elif kind == "request_put":
            p = op.request_put
            if p.ignore_value or p.ignore_lease:
                if kv._read_raw(p.key, overlay) is None:
                    raise EtcdError("INVALID_ARGUMENT", "etcdserver: key not found")
            if p.lease and not p.ignore_lease and p.lease not in kv.leases.ttl:
                raise LeaseNotFound(p.lease)


def apply_txn(kv: KVStateMachine, data: bytes, index: int, overlay: dict) -> Any:
    """Apply one etcd Txn at ``index``: its TxnResponse (no header), or the error refusing it."""
    try:
        req = rpc_pb2.TxnRequest.FromString(data)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError, or worse
        return DecodeError("etcd txn", str(e))
    path = _path(kv, req, overlay)
    try:
        _check(kv, req, path, overlay)
    except (EtcdError, LeaseNotFound) as e:
        return e
    resp = _execute(kv, req, path, index, overlay)
    resp.header.revision = index  # the revision of every change it made
    return resp


def _execute(kv: KVStateMachine, req: rpc_pb2.TxnRequest, path: _Path, index: int,
             overlay: dict) -> rpc_pb2.TxnResponse:
    resp = rpc_pb2.TxnResponse(succeeded=path.succeeded)
    nested = iter(path.children)
    for op in req.success if path.succeeded else req.failure:
        kind = op.WhichOneof("request")
        out = resp.responses.add()
        if kind == "request_range":
            out.response_range.CopyFrom(range_response(
                current(kv, op.request_range.key, op.request_range.range_end, overlay),
                op.request_range))
        elif kind == "request_put":
            out.response_put.CopyFrom(_put(kv, op.request_put, index, overlay))
        elif kind == "request_delete_range":
            out.response_delete_range.CopyFrom(_delete(kv, op.request_delete_range, index,
                                                       overlay))
        else:
            out.response_txn.CopyFrom(_execute(kv, op.request_txn, next(nested), index,
                                               overlay))
    return resp


def _put(kv: KVStateMachine, p: rpc_pb2.PutRequest, index: int,
         overlay: dict) -> rpc_pb2.PutResponse:
    prev = _rec(kv, p.key, kv._read_raw(p.key, overlay))
    value = prev.value if p.ignore_value and prev is not None else p.value
    lease = (prev.lease if prev is not None else 0) if p.ignore_lease else p.lease
    kv._put(p.key, value, index, overlay, lease)
    resp = rpc_pb2.PutResponse()
    if p.prev_kv and prev is not None:
        resp.prev_kv.CopyFrom(prev.pb())
    return resp


def _delete(kv: KVStateMachine, d: rpc_pb2.DeleteRangeRequest, index: int,
            overlay: dict) -> rpc_pb2.DeleteRangeResponse:
    recs = current(kv, d.key, d.range_end, overlay)
    for r in recs:
        kv._delete(r.key, index, overlay)
    resp = rpc_pb2.DeleteRangeResponse(deleted=len(recs))
    if d.prev_kv:
        resp.prev_kvs.extend(r.pb() for r in recs)
    return resp


_SORT_KEYS = {
    rpc_pb2.RangeRequest.KEY: lambda r: r.key,
    rpc_pb2.RangeRequest.VERSION: lambda r: r.version,
    rpc_pb2.RangeRequest.CREATE: lambda r: r.create,
    rpc_pb2.RangeRequest.MOD: lambda r: r.mod,
    rpc_pb2.RangeRequest.VALUE: lambda r: r.value,
}


def range_response(recs: list[Rec], req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
    """A RangeResponse (no header) from the records of the range, as etcd 3.4 builds it:
    count is every key in the range; the revision filters, sort and limit come after."""
    if req.limit < 0:
        raise InvalidArgument("etcdserver: limit must not be negative")
    count = len(recs)
    if req.min_mod_revision:
        recs = [r for r in recs if r.mod >= req.min_mod_revision]
    if req.max_mod_revision:
        recs = [r for r in recs if r.mod <= req.max_mod_revision]
    if req.min_create_revision:
        recs = [r for r in recs if r.create >= req.min_create_revision]
    if req.max_create_revision:
        recs = [r for r in recs if r.create <= req.max_create_revision]
    order, target = req.sort_order, req.sort_target
    if order == rpc_pb2.RangeRequest.NONE and target != rpc_pb2.RangeRequest.KEY:
        order = rpc_pb2.RangeRequest.ASCEND
    if order != rpc_pb2.RangeRequest.NONE:
        recs = sorted(recs, key=_SORT_KEYS[target],
                      reverse=order == rpc_pb2.RangeRequest.DESCEND)
    more = bool(req.limit) and len(recs) > req.limit
    if more:
        recs = recs[: req.limit]
    resp = rpc_pb2.RangeResponse(count=count, more=more)
    if not req.count_only:
        resp.kvs.extend(r.pb(req.keys_only) for r in recs)
    return resp
