"""The client against real nodes in this process: the node's own Kv and Cluster services over
real gRPC, so the client's view of the protocol and the server's agree."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from dengine import errors as E
from dengine.client import Client, Consistency, Delete, Put


class LoseResponses(grpc.aio.UnaryUnaryClientInterceptor):
    """Lets a call reach the server and complete, then reports the connection lost instead of
    the answer (``times`` times, for methods ending in ``suffix``)."""

    def __init__(self, suffix: str, times: int = 1) -> None:
        self.suffix = suffix
        self.times = times
        self.lost = 0

    async def intercept_unary_unary(self, continuation, details, request):
        call = await continuation(details, request)
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if self.times and method.endswith(self.suffix):
            await call  # the server has answered: the write was applied
            self.times -= 1
            self.lost += 1
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details="connection reset before the answer arrived (test)",
            )
        return call


def test_every_kv_call_and_consistency_level(run_uvloop, real_cluster):
    async def go():
        async with real_cluster() as rc, Client(rc.endpoints, timeout=10) as c:
            rev = await c.put(b"a", b"1")
            for level in Consistency:
                kv = await c.get(b"a", consistency=level)
                assert kv is not None and kv.value == b"1" and kv.revision == rev, level
            assert await c.get(b"nope") is None
            await c.write_batch([Put(b"p/1", b"x"), Put(b"p/2", b"y"), Delete(b"a")])
            assert await c.get(b"a") is None
            assert set(await c.get_many([b"p/1", b"p/2", b"a"])) == {b"p/1", b"p/2"}
            cas = await c.compare_and_set(b"p/1", expected_value=b"x", new_value=b"z")
            assert cas.succeeded
            cas = await c.compare_and_set(b"p/1", expected_value=b"x", new_value=b"w")
            assert not cas.succeeded and cas.current.value == b"z"
            assert not (await c.cas(b"p/1", expected_absent=True, new_value=b"w")).succeeded
            assert (await c.cas(b"p/9", expected_absent=True, new_value=b"9")).succeeded
            assert await c.delete(b"p/2") is True
            await c.write_batch(puts={f"s/{i:03}": b"v" for i in range(30)})
            keys = [kv.key async for kv in c.scan_iter(prefix=b"s/", page_size=7)]
            assert keys == [f"s/{i:03}".encode() for i in range(30)]
            page = await c.scan(b"s/010", b"s/020", limit=4)
            assert [kv.key for kv in page.kvs] == [f"s/{i:03}".encode() for i in range(10, 14)]
            assert page.more
            # a serializable read answered by a follower itself
            leader = await rc.leader_id()
            follower = next(a for i, a in rc.members.items() if i != leader)
            await asyncio.sleep(0.3)  # let the follower apply
            kv = await c.get(b"p/1", consistency="serializable", endpoint=follower)
            assert kv is not None and kv.value == b"z"
            with pytest.raises(E.NotLeader) as info:
                await c.put(b"p/1", b"w", endpoint=follower)
            assert info.value.leader_addr == rc.members[leader]
            # a linearizable read a follower answers after a ReadIndex round to the leader
            assert (await c.get(b"p/1", endpoint=follower)).value == b"z"

    run_uvloop(go)


def test_not_leader_hint_after_a_transfer_is_followed(run_uvloop, real_cluster):
    async def go():
        async with real_cluster() as rc, Client(rc.endpoints, timeout=10) as c:
            await c.put(b"k", b"1")
            old = await rc.leader_id()
            target = next(i for i in rc.members if i != old)
            async with Client(rc.endpoints, timeout=10) as other:
                await other.transfer_leader(target)
            assert c.leader == rc.members[old]  # stale on purpose
            await c.put(b"k", b"2")
            assert c.leader == rc.members[target]
            assert (await c.get(b"k")).value == b"2"

    run_uvloop(go)


def test_a_hundred_concurrent_callers_cost_a_handful_of_messages(run_uvloop, real_cluster):
    async def go():
        async with real_cluster() as rc, Client(rc.endpoints, timeout=15, pool_size=2) as c:
            await c.put(b"warm", b"up")
            sent = c.stats.messages_sent
            revs = await asyncio.gather(*(c.put(f"k{i}", str(i)) for i in range(100)))
            assert len(set(revs)) == 100
            assert c.stats.messages_sent - sent <= 20
            got = await c.get_many([f"k{i}" for i in range(100)])
            assert len(got) == 100

    run_uvloop(go)


def test_a_write_whose_answer_was_lost_is_applied_once(run_uvloop, real_cluster):
    async def go():
        lose = LoseResponses("/Put")
        async with real_cluster() as rc:
            async with Client(rc.endpoints, timeout=10, use_stream=False, interceptors=[lose]) as c:
                rev = await c.put(b"once", b"v")
                assert lose.lost == 1
                kv = await c.get(b"once")
                assert kv.version == 1 and kv.revision == rev
                await c.put(b"once", b"w")  # a new write is a new seq: applied
                assert (await c.get(b"once")).version == 2

    run_uvloop(go)


def test_bad_input_is_refused_and_the_node_keeps_serving(run_uvloop, real_cluster):
    async def go():
        async with real_cluster() as rc, Client(rc.endpoints, timeout=10) as c:
            with pytest.raises(E.PayloadTooLarge):
                await c.put(b"big", b"x" * (2 * 1024 * 1024))
            with pytest.raises(E.InvalidArgument):
                await c.put(b"", b"empty key")
            with pytest.raises(E.InvalidArgument):
                await c.scan(b"a", b"b", prefix=b"a")
            with pytest.raises(E.ConfChangeError):
                await c.remove_member(42)
            with pytest.raises(E.ConfChangeError):
                await c.promote(42)
            await c.put(b"still", b"here")
            assert (await c.get(b"still")).value == b"here"

    run_uvloop(go)


def test_reads_spread_over_every_member(run_uvloop, real_cluster):
    """``spread_reads``: concurrent callers are shared out over all members; each member
    answers, linearizably (a follower after a ReadIndex round: every read sees the write its
    caller made just before, whoever answers it)."""

    async def go():
        async with real_cluster() as rc, Client(rc.endpoints, timeout=10,
                                                spread_reads=True) as c:
            await c.put(b"s", b"1")

            async def caller(k: int) -> None:
                for i in range(3):
                    await c.put(b"s%d" % k, b"%d" % i)
                    assert (await c.get(b"s%d" % k)).value == b"%d" % i

            await asyncio.gather(*(caller(k) for k in range(6)))
            leader = await rc.leader_id()
            rounds = {i: n.reads.follower.rounds for i, n in rc.nodes.items() if i != leader}
            assert all(r > 0 for r in rounds.values()), rounds  # every follower answered some

    run_uvloop(go)
