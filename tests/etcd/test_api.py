"""The etcd API's finer points through etcd's own messages (generated stubs, plain gRPC):
watches (start revision, ranges, filters, prev_kv, cancel, progress), headers,
errors with etcd's codes and messages, and writes to a follower forwarded to the leader."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from dengine.etcd.pb import rpc_pb2 as pb
from dengine.etcd.pb import rpc_pb2_grpc as pbg

pytestmark = pytest.mark.timeout(240)


def run(coro):
    return asyncio.run(coro)


async def _watch(ep: str, creates: list[pb.WatchCreateRequest], writes, want,
                 extra: list[pb.WatchRequest] = ()) -> list[pb.WatchResponse]:
    """Open one stream with ``creates``, run ``writes()``, collect responses until ``want``
    (a count, or a predicate on the responses so far)."""
    async with grpc.aio.insecure_channel(ep) as ch:
        q: asyncio.Queue = asyncio.Queue()
        for c in creates:
            q.put_nowait(pb.WatchRequest(create_request=c))

        async def requests():
            while True:
                item = await q.get()
                if item is None:
                    return
                yield item

        call = pbg.WatchStub(ch).Watch(requests())
        got: list[pb.WatchResponse] = []
        created = 0
        async for r in call:
            got.append(r)
            created += r.created
            if created == len(creates) and writes is not None:
                w, writes = writes, None
                await w()
                for e in extra:
                    q.put_nowait(e)
            if (want(got) if callable(want) else len(got) >= want):
                break
        call.cancel()
        return got


async def _put(ep: str, key: bytes, value: bytes) -> pb.PutResponse:
    async with grpc.aio.insecure_channel(ep) as ch:
        return await pbg.KVStub(ch).Put(pb.PutRequest(key=key, value=value), timeout=10)


async def _delete(ep: str, key: bytes) -> pb.DeleteRangeResponse:
    async with grpc.aio.insecure_channel(ep) as ch:
        return await pbg.KVStub(ch).DeleteRange(pb.DeleteRangeRequest(key=key), timeout=10)


def follower(cluster) -> str:
    eps, lead, _env = cluster
    return eps[next(i for i in eps if i != lead)]


def test_watch_range_filters_prev_kv_and_start_revision(cluster):
    ep = follower(cluster)
    first = run(_put(ep, b"r/a", b"0"))  # before the watch: replayed from history

    async def writes():
        await _put(ep, b"r/b", b"1")
        await _put(ep, b"r/z", b"out of range")
        await _put(ep, b"r/a", b"2")
        await _delete(ep, b"r/a")

    rng = pb.WatchCreateRequest(key=b"r/a", range_end=b"r/c", watch_id=7, prev_kv=True,
                                start_revision=first.header.revision)
    no_put = pb.WatchCreateRequest(key=b"r/", range_end=b"r0", watch_id=8,
                                   filters=[pb.WatchCreateRequest.NOPUT])
    def done(got: list[pb.WatchResponse]) -> bool:
        n = {7: 0, 8: 0}
        for r in got:
            n[r.watch_id] += len(r.events)
        return n[7] >= 4 and n[8] >= 1

    got = run(_watch(ep, [rng, no_put], writes, want=done))
    created = {r.watch_id for r in got if r.created}
    assert created == {7, 8}
    events = {7: [], 8: []}
    for r in got:
        assert r.header.member_id and r.header.cluster_id and r.header.raft_term
        for e in r.events:
            events[r.watch_id].append((e.type, e.kv.key, e.kv.value, e.prev_kv.value))
    PUT, DEL = 0, 1
    assert events[7] == [(PUT, b"r/a", b"0", b""), (PUT, b"r/b", b"1", b""),
                         (PUT, b"r/a", b"2", b"0"), (DEL, b"r/a", b"", b"2")]
    assert events[8] == [(DEL, b"r/a", b"", b"")]
    put0 = next(r for r in got if r.watch_id == 7 and r.events).events[0]
    assert put0.kv.mod_revision == first.header.revision == put0.kv.create_revision


def test_watch_cancel_and_progress_request(cluster):
    ep = follower(cluster)

    async def nothing():
        pass

    c = pb.WatchCreateRequest(key=b"cancel-me", watch_id=3)
    extra = [pb.WatchRequest(progress_request=pb.WatchProgressRequest()),
             pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=3))]
    got = run(_watch(ep, [c], nothing, want=3, extra=extra))
    assert got[0].created and got[0].watch_id == 3
    assert got[1].watch_id == -1 and got[1].header.revision > 0 and not got[1].events
    assert got[2].canceled and got[2].watch_id == 3


def test_errors_carry_etcds_codes_and_messages(cluster):
    ep = follower(cluster)

    async def go():
        async with grpc.aio.insecure_channel(ep) as ch:
            kv, lease = pbg.KVStub(ch), pbg.LeaseStub(ch)
            cases = [
                (kv.Range(pb.RangeRequest(key=b"a", revision=1 << 40)),
                 grpc.StatusCode.OUT_OF_RANGE,
                 "etcdserver: mvcc: required revision is a future revision"),
                (kv.Put(pb.PutRequest(key=b"", value=b"v")), grpc.StatusCode.INVALID_ARGUMENT,
                 "etcdserver: key is not provided"),
                (kv.Txn(pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(
                    key=b"k%d" % i)) for i in range(200)])), grpc.StatusCode.INVALID_ARGUMENT,
                 "etcdserver: too many operations in txn request"),
                (lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=987654321)),
                 grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found"),
                (kv.Put(pb.PutRequest(key=b"k", lease=987654321)),
                 grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found"),
                (pbg.MaintenanceStub(ch).Defragment(pb.DefragmentRequest()),
                 grpc.StatusCode.UNIMPLEMENTED, None),
                (pbg.ClusterStub(ch).MemberAdd(pb.MemberAddRequest()),
                 grpc.StatusCode.UNIMPLEMENTED, None),
            ]
            for call, code, message in cases:
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await call
                assert e.value.code() == code
                if message is not None:
                    assert e.value.details() == message

    run(go())


def test_txn_on_a_follower_is_atomic_and_answers_with_the_leaders_revision(cluster):
    eps, lead, _env = cluster
    ep = follower(cluster)

    async def go():
        async with grpc.aio.insecure_channel(ep) as ch:
            kv = pbg.KVStub(ch)
            cmp = pb.Compare(key=b"cnt", target=pb.Compare.VERSION,
                             result=pb.Compare.EQUAL, version=0)
            put = pb.RequestOp(request_put=pb.PutRequest(key=b"cnt", value=b"1"))
            get = pb.RequestOp(request_range=pb.RangeRequest(key=b"cnt"))
            t = pb.TxnRequest(compare=[cmp], success=[put], failure=[get])
            results = await asyncio.gather(*(kv.Txn(t, timeout=10) for _ in range(8)))
            assert sum(r.succeeded for r in results) == 1  # exactly one created it
            won = next(r for r in results if r.succeeded)
            got = await kv.Range(pb.RangeRequest(key=b"cnt"), timeout=10)
            assert got.kvs[0].create_revision == won.header.revision
            assert all(r.responses[0].response_range.kvs[0].create_revision
                       == won.header.revision for r in results if not r.succeeded)
            assert won.header.member_id == lead  # the leader answered, through the follower

    run(go())
