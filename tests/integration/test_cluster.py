"""Three real node processes: reads and writes at every consistency level, redirects,
leadership transfer, bad input, and duplicate suppression."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from dengine import errors as E
from dengine.client import Client, Consistency, Put
from dengine.transport import status as S
from dengine.v1 import client_pb2 as pb
from dengine.v1 import client_pb2_grpc as pbg


def test_writes_and_reads_at_every_consistency_level(shared_cluster, run):
    lc = shared_cluster

    async def go():
        async with lc.client() as c:
            await lc.wait_leader(c)
            revs = {}
            for i in range(20):
                revs[i] = await c.put(f"c/{i}", f"v{i}")
            await c.write_batch([Put(f"c/b{i}", b"batch") for i in range(5)])
            for level in Consistency:
                for i in (0, 7, 19):
                    kv = await c.get(f"c/{i}", consistency=level)
                    assert kv.value == f"v{i}".encode() and kv.revision == revs[i], level
                got = await c.get_many([f"c/b{i}" for i in range(5)], consistency=level)
                assert len(got) == 5
            keys = [kv.key async for kv in c.scan_iter(prefix=b"c/", page_size=6)]
            assert len(keys) == 25 and keys == sorted(keys)
            # every node serves a serializable read of its own state once it has applied
            top = max(revs.values())
            for n in lc.nodes.values():
                await lc.wait_applied(c, n.id, top)
                kv = await c.get("c/19", consistency="serializable", endpoint=n.address)
                assert kv.value == b"v19"

    run(go)


def test_a_write_sent_to_a_follower_is_redirected(shared_cluster, run):
    lc = shared_cluster

    async def go():
        async with lc.client() as probe:
            leader = await lc.wait_leader(probe)
        follower = next(n for n in lc.nodes.values() if n.id != leader.id)
        # a raw unary call to the follower: NOT_LEADER with the leader's id and address
        async with grpc.aio.insecure_channel(follower.address) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pbg.KvStub(ch).Put(pb.PutRequest(key=b"r", value=b"raw"), timeout=5)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        err = S.from_rpc_error(info.value)
        assert isinstance(err, E.NotLeader)
        assert (err.leader_id, err.leader_addr) == (leader.id, leader.address)
        # the client, given only the follower, ends up at the leader
        async with Client([follower.address], timeout=10) as c:
            c._leader = follower.address  # as if discovery had been fooled: force a redirect
            await c.put(b"r", b"redirected")
            assert c.leader == leader.address
            assert (await c.get(b"r")).value == b"redirected"

    run(go)


def test_leadership_transfer_to_a_named_node(shared_cluster, run):
    lc = shared_cluster

    async def go():
        async with lc.client() as c:
            old = await lc.wait_leader(c)
            target = max(i for i in lc.nodes if i != old.id)
            await c.put(b"t", b"before")
            await c.transfer_leader(target)
            new = await lc.wait_leader(c, timeout=10)
            assert new.id == target and new.term > old.term
            await c.put(b"t", b"after")
            assert c.leader == lc.nodes[target].address
            assert (await c.get(b"t")).value == b"after"

    run(go)


def test_bad_input_gets_a_clear_error_and_the_cluster_keeps_serving(shared_cluster, run):
    lc = shared_cluster

    async def go():
        async with lc.client() as c:
            await lc.wait_leader(c)
            with pytest.raises(E.PayloadTooLarge) as info:
                await c.put(b"big", b"x" * (3 * 1024 * 1024))
            assert "exceeds the limit" in str(info.value)
            with pytest.raises(E.InvalidArgument):
                await c.put(b"", b"no key")
            with pytest.raises(E.InvalidArgument):
                await c.scan(b"b", b"a")
            with pytest.raises(E.ConfChangeError):
                await c.remove_member(77)
            with pytest.raises(E.ConfChangeError):
                await c.promote(77)
            with pytest.raises((E.ConfChangeError, E.InvalidArgument)) as info:
                await c.transfer_leader(77)
            assert "77" in str(info.value)
            # malformed bytes on the wire: not a protobuf the server can parse
            leader = lc.nodes[(await c.status()).id]
            async with grpc.aio.insecure_channel(leader.address) as ch:
                raw = ch.unary_unary(
                    "/dengine.v1.Kv/Put",
                    request_serializer=lambda b: b,
                    response_deserializer=lambda b: b,
                )
                with pytest.raises(grpc.aio.AioRpcError) as rpc:
                    await raw(b"\xff\xff\xff\xff\x0f garbage", timeout=5)
                # gRPC's own parse failure answers UNKNOWN before any dengine code runs
                assert rpc.value.code() in (
                    grpc.StatusCode.UNKNOWN,
                    grpc.StatusCode.INTERNAL,
                    grpc.StatusCode.INVALID_ARGUMENT,
                )
                assert "pars" in (rpc.value.details() or "").lower()
            # an empty stream batch item is refused, the stream and node go on
            async with grpc.aio.insecure_channel(leader.address) as ch:
                call = pbg.KvStub(ch).Batch()
                await call.write(
                    pb.ClientRequestBatch(
                        requests=[
                            pb.ClientRequest(request_id=1),
                            pb.ClientRequest(request_id=2, get=pb.GetRequest(key=b"t")),
                        ]
                    )
                )
                answers = {}
                while len(answers) < 2:
                    msg = await asyncio.wait_for(call.read(), 10)
                    answers.update({r.request_id: r for r in msg.responses})
                await call.done_writing()
                bad = answers[1]
                assert getattr(bad, bad.WhichOneof("response")).error.code == pb.INVALID_ARGUMENT
                assert answers[2].get.error.code == pb.OK
            for n in lc.nodes.values():
                assert n.running, n.log_tail()
            await c.put(b"alive", b"yes")
            assert (await c.get(b"alive")).value == b"yes"

    run(go)


class LoseResponses(grpc.aio.UnaryUnaryClientInterceptor):
    """Let a call complete on the server, then report the connection lost instead of its answer
    (``times`` times, for methods ending in ``suffix``)."""

    def __init__(self, suffix: str, times: int = 1) -> None:
        self.suffix = suffix
        self.times = times
        self.lost = 0

    async def intercept_unary_unary(self, continuation, details, request):
        call = await continuation(details, request)
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if self.times and method.endswith(self.suffix):
            await call
            self.times -= 1
            self.lost += 1
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details="connection reset before the answer arrived (test)",
            )
        return call


def test_a_write_retried_after_its_answer_was_lost_is_applied_once(shared_cluster, run):
    lc = shared_cluster

    async def go():
        lose = LoseResponses("/Put", times=2)
        async with Client(lc.endpoints, timeout=10, use_stream=False, interceptors=[lose]) as c:
            await lc.wait_leader(c)
            rev = await c.put(b"dup", b"once")
            assert lose.lost == 2  # answered twice, lost twice, retried twice
            kv = await c.get(b"dup")
            assert kv.version == 1 and kv.revision == rev
        # the same session replayed by hand: the stored answer, not a second write
        async with lc.client() as c2:
            leader = (await c2.status()).address
        async with grpc.aio.insecure_channel(leader) as ch:
            reg = await pbg.KvStub(ch).RegisterSession(pb.RegisterSessionRequest(), timeout=5)
            assert reg.error.code == pb.OK and reg.client_id > 0
            session = pb.Session(client_id=reg.client_id, seq=1)
            req = pb.PutRequest(key=b"dup2", value=b"v", session=session)
            first = await pbg.KvStub(ch).Put(req, timeout=5)
            again = await pbg.KvStub(ch).Put(req, timeout=5)
        assert first.error.code == pb.OK and again.revision == first.revision
        async with lc.client() as c3:
            assert (await c3.get(b"dup2")).version == 1

    run(go)


def test_the_blocking_client_from_a_script(shared_cluster):
    from dengine.client import SyncClient

    lc = shared_cluster
    with SyncClient(lc.endpoints, timeout=10) as c:
        rev = c.put("sync/a", "1")
        c.write_batch(puts={"sync/b": "2", "sync/c": "3"})
        assert c.get("sync/a").revision == rev
        assert [kv.key for kv in c.scan_iter(prefix="sync/", page_size=2)] == [
            b"sync/a",
            b"sync/b",
            b"sync/c",
        ]
        assert c.delete("sync/a") is True
        st = c.status()
        assert st.is_leader and len(st.members) == 3
        assert c.leader == st.address
