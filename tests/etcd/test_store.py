"""The etcd Txn log command and etcd's ranges, on the KV machine over both engines: atomic
compare-then-write, nested txns decided against the state before the txn, range deletes,
refusals that change nothing, revisions, reads at past revisions and the compacted error."""

from __future__ import annotations

import pytest

from dengine._core import codec
from dengine.errors import LeaseNotFound
from dengine.etcd import store
from dengine.etcd.pb import rpc_pb2 as pb
from dengine.raft.types import Entry, EntryKind
from dengine.statemachine import KVStateMachine, MemoryEngine, RocksEngine
from dengine.statemachine import leases as L

C = pb.Compare


@pytest.fixture(params=["memory", "rocksdb"])
def sm(request, tmp_path) -> KVStateMachine:
    engine = MemoryEngine() if request.param == "memory" else RocksEngine(str(tmp_path / "sm"))
    machine = KVStateMachine(engine, history_revisions=50)
    yield machine
    machine.close()


def _apply(sm, *payloads):
    i = sm.applied_index()
    return sm.apply([Entry(1, i + n + 1, EntryKind.NORMAL, p) for n, p in enumerate(payloads)])


def txn(compare=(), success=(), failure=()) -> bytes:
    req = pb.TxnRequest(compare=list(compare), success=list(success), failure=list(failure))
    return bytes((L.OP_ETCD_TXN,)) + req.SerializeToString()


def put(key: bytes, value: bytes, **kw) -> pb.RequestOp:
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, **kw))


def delete(key: bytes, end: bytes = b"", **kw) -> pb.RequestOp:
    return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key, range_end=end, **kw))


def get(key: bytes, end: bytes = b"") -> pb.RequestOp:
    return pb.RequestOp(request_range=pb.RangeRequest(key=key, range_end=end))


def keys(sm) -> dict[bytes, bytes]:
    return {r.key: r.value for r in store.current(sm, b"\x00", b"\x00", {})}


def test_compare_chooses_the_branch_and_every_change_gets_the_entry_index(sm):
    _apply(sm, codec.encode_put(b"a", b"1"))
    ok = C(key=b"a", target=C.VALUE, result=C.EQUAL, value=b"1")
    (r,) = _apply(sm, txn([ok], [put(b"a", b"2", prev_kv=True), put(b"b", b"x"), get(b"a")],
                          [put(b"z", b"no")]))
    assert r.succeeded and r.header.revision == 2
    assert r.responses[0].response_put.prev_kv.value == b"1"
    assert r.responses[2].response_range.kvs[0].value == b"2"  # reads its own writes
    assert keys(sm) == {b"a": b"2", b"b": b"x"}
    a, b = sm.get(b"a"), sm.get(b"b")
    assert (a.revision, a.create_revision, a.version) == (2, 1, 2)
    assert (b.revision, b.create_revision, b.version) == (2, 2, 1)
    (r,) = _apply(sm, txn([ok], [put(b"a", b"3")], [put(b"z", b"failed")]))
    assert not r.succeeded and keys(sm)[b"z"] == b"failed" and keys(sm)[b"a"] == b"2"


@pytest.mark.parametrize(("target", "field", "value", "result", "expect"), [
    (C.VERSION, "version", 2, C.EQUAL, True),
    (C.VERSION, "version", 2, C.GREATER, False),
    (C.CREATE, "create_revision", 1, C.EQUAL, True),
    (C.MOD, "mod_revision", 2, C.LESS, False),
    (C.MOD, "mod_revision", 3, C.LESS, True),
    (C.VALUE, "value", b"v2", C.NOT_EQUAL, False),
    (C.LEASE, "lease", 0, C.EQUAL, True),
])
def test_compare_targets(sm, target, field, value, result, expect):
    _apply(sm, codec.encode_put(b"k", b"v1"), codec.encode_put(b"k", b"v2"))
    cmp = C(key=b"k", target=target, result=result, **{field: value})
    (r,) = _apply(sm, txn([cmp], [get(b"k")]))
    assert r.succeeded is expect


def test_missing_key_compares_as_version_zero_and_never_equal_by_value(sm):
    (r,) = _apply(sm, txn([C(key=b"n", target=C.CREATE, result=C.EQUAL, create_revision=0)],
                          [put(b"n", b"mine")]))
    assert r.succeeded and keys(sm) == {b"n": b"mine"}
    (r,) = _apply(sm, txn([C(key=b"m", target=C.VALUE, result=C.NOT_EQUAL, value=b"x")]))
    assert not r.succeeded


def test_nested_txn_path_is_decided_before_any_write(sm):
    _apply(sm, codec.encode_put(b"a", b"1"))
    inner = pb.TxnRequest(compare=[C(key=b"a", target=C.VALUE, result=C.EQUAL, value=b"1")],
                          success=[put(b"inner", b"saw-old")],
                          failure=[put(b"inner", b"saw-new")])
    (r,) = _apply(sm, txn([], [put(b"a", b"2"), pb.RequestOp(request_txn=inner)]))
    assert r.responses[1].response_txn.succeeded  # as etcd: compares see the state before
    assert keys(sm)[b"inner"] == b"saw-old"


def test_range_delete_and_prefix_in_one_revision(sm):
    _apply(sm, *(codec.encode_put(b"p/%d" % i, b"x") for i in range(5)),
           codec.encode_put(b"q", b"y"))
    (r,) = _apply(sm, txn([], [delete(b"p/", store.prefix_end(b"p/"), prev_kv=True)]))
    d = r.responses[0].response_delete_range
    assert d.deleted == 5 and [kv.key for kv in d.prev_kvs] == [b"p/%d" % i for i in range(5)]
    events, _ = sm.history.read(sm.applied_index())
    assert len(events) == 5 and {e.revision for e in events} == {sm.applied_index()}
    assert keys(sm) == {b"q": b"y"}


def test_a_refused_txn_changes_nothing(sm):
    _apply(sm, codec.encode_put(b"a", b"1"))
    before = (keys(sm), sm.get(b"a"))
    (r,) = _apply(sm, txn([], [put(b"a", b"2"), put(b"b", b"3", lease=99)]))
    assert isinstance(r, LeaseNotFound)
    (r,) = _apply(sm, txn([], [put(b"a", b"2"), put(b"nokey", b"", ignore_value=True)]))
    assert isinstance(r, store.EtcdError) and r.message == "etcdserver: key not found"
    (r,) = _apply(sm, bytes((L.OP_ETCD_TXN,)) + b"\xff\xff\xff")
    assert r.__class__.__name__ == "DecodeError"
    assert (keys(sm), sm.get(b"a")) == before


def test_put_with_lease_and_ignore_lease_keep_the_attachment(sm):
    _apply(sm, L.encode_grant(5, 10))
    _apply(sm, txn([], [put(b"k", b"v", lease=5)]))
    _apply(sm, txn([], [put(b"k", b"w", ignore_lease=True)]))
    assert sm.leases.attached(5) == [b"k"]
    (r,) = _apply(sm, txn([C(key=b"k", target=C.LEASE, result=C.EQUAL, lease=5)],
                          [put(b"k", b"v2", ignore_value=True)]))
    assert r.succeeded and keys(sm)[b"k"] == b"w" and sm.leases.attached(5) == []
    _apply(sm, L.encode_grant(6, 10), txn([], [put(b"j", b"1", lease=6)]), L.encode_revoke(6))
    assert b"j" not in keys(sm)


def test_range_at_past_revisions_and_compacted(sm):
    _apply(sm, codec.encode_put(b"a", b"1"), codec.encode_put(b"b", b"1"),
           codec.encode_put(b"a", b"2"), codec.encode_delete(b"b"))
    at = {rev: {r.key: (r.value, r.mod, r.version) for r in
                store.range_at(sm, b"a", b"c", rev)} for rev in range(1, 5)}
    assert at[1] == {b"a": (b"1", 1, 1)}
    assert at[2] == {b"a": (b"1", 1, 1), b"b": (b"1", 2, 1)}
    assert at[3] == {b"a": (b"2", 3, 2), b"b": (b"1", 2, 1)}
    assert at[4] == {b"a": (b"2", 3, 2)}
    with pytest.raises(store.EtcdError, match="future revision"):
        store.range_at(sm, b"a", b"", 5)
    _apply(sm, *(codec.encode_put(b"x", b"%d" % i) for i in range(60)))
    with pytest.raises(store.EtcdError) as e:
        store.range_at(sm, b"a", b"", 2)
    assert e.value.message == "etcdserver: mvcc: required revision has been compacted"
    assert store.range_at(sm, b"x", b"", sm.applied_index() - 10)[0].value == b"49"


def test_range_response_sort_limit_filters_and_count():
    recs = [store.Rec(b"k%d" % i, 10 - i, i + 1, 1, b"v", 0) for i in range(5)]
    r = store.range_response(recs, pb.RangeRequest(limit=2, sort_order=pb.RangeRequest.DESCEND,
                                                   sort_target=pb.RangeRequest.MOD))
    assert [kv.key for kv in r.kvs] == [b"k0", b"k1"] and r.more and r.count == 5
    r = store.range_response(recs, pb.RangeRequest(min_create_revision=3, keys_only=True))
    assert [kv.key for kv in r.kvs] == [b"k2", b"k3", b"k4"] and r.kvs[0].value == b""
    assert store.range_response(recs, pb.RangeRequest(count_only=True)).kvs == []


def test_check_txn_refuses_as_etcd():
    with pytest.raises(store.EtcdError, match="too many operations in txn request"):
        store.check_txn(pb.TxnRequest(success=[put(b"k%d" % i, b"") for i in range(129)]))
    with pytest.raises(store.EtcdError, match="duplicate key given in txn request"):
        store.check_txn(pb.TxnRequest(success=[put(b"k", b""), put(b"k", b"")]))
    with pytest.raises(store.EtcdError, match="duplicate key given in txn request"):
        store.check_txn(pb.TxnRequest(success=[delete(b"a", b"c"), put(b"b", b"")]))
    store.check_txn(pb.TxnRequest(success=[delete(b"a", b"b"), put(b"b", b"")]))
    with pytest.raises(store.EtcdError, match="key is not provided"):
        store.check_txn(pb.TxnRequest(failure=[put(b"", b"")]))
