"""The client against scripted fake nodes on real gRPC servers: KV calls, discovery, redirects,
retries, deadlines, sessions, the coalescing stream and its fallback, cluster calls."""

from __future__ import annotations

import asyncio

import pytest

from dengine import errors as E
from dengine.client import Client, Consistency, Put, SyncClient
from dengine.client._session import SessionPool


def test_kv_round_trip_over_the_stream(run, fake_cluster):
    async def go():
        async with fake_cluster(3) as fc, Client(fc.endpoints[2:]) as c:
            rev = await c.put(b"a", b"1")
            assert rev > 0
            kv = await c.get("a")
            assert (kv.key, kv.value, kv.revision, kv.version) == (b"a", b"1", rev, 1)
            assert await c.get(b"missing") is None
            assert await c.get_value(b"a", consistency="lease") == b"1"
            await c.write_batch([Put(b"b", b"2"), Put(b"c", b"3")], deletes=[b"a"])
            got = await c.get_many([b"a", b"b", b"c"])
            assert {k: v.value for k, v in got.items()} == {b"b": b"2", b"c": b"3"}
            assert await c.delete(b"b") is True
            assert await c.delete(b"b") is False
            cas = await c.compare_and_set(b"c", expected_value=b"x", new_value=b"4")
            assert not cas.succeeded and cas.current.value == b"3"
            cas = await c.compare_and_set(b"c", expected_value=b"3", new_value=b"4")
            assert cas.succeeded and cas.current.value == b"4"
            cas = await c.compare_and_set(b"new", expected_version=0, new_value=b"n")
            assert cas.succeeded
            # every KV call went over the stream, none unary (Status for discovery only, and
            # one RegisterSession for the session every write used)
            assert fc.node(1).stream_requests == 11
            assert fc.node(1).calls["register"] == 1
            assert sum(n for op, n in fc.node(1).calls.items()
                       if op not in ("status", "register")) == 11
            assert c.unary_calls == fc.total("status") + 1

    run(go)


def test_scan_pages_and_iterates_with_continuation(run, fake_cluster):
    async def go():
        async with fake_cluster(1) as fc, Client(fc.endpoints) as c:
            await c.write_batch(puts={f"p/{i:02}": str(i) for i in range(25)})
            await c.put(b"q/1", b"other")
            page = await c.scan(prefix=b"p/", limit=10)
            assert [kv.key for kv in page.kvs] == [f"p/{i:02}".encode() for i in range(10)]
            assert page.more and page.continuation == b"p/10"
            page2 = await c.scan(page.continuation, prefix=b"p/", limit=10)
            assert page2.kvs[0].key == b"p/10"
            keys = [kv.key async for kv in c.scan_iter(prefix=b"p/", page_size=7)]
            assert keys == [f"p/{i:02}".encode() for i in range(25)]
            ranged = [kv.key async for kv in c.scan_iter(b"p/20", b"q/", page_size=2)]
            assert ranged == [f"p/{i:02}".encode() for i in range(20, 25)]

    run(go)


def test_discovery_finds_the_leader_from_a_follower_endpoint(run, fake_cluster):
    async def go():
        async with fake_cluster(3) as fc:
            fc.set_leader(2)
            async with Client([fc.node(3).address]) as c:
                await c.put(b"k", b"v")
                assert c.leader == fc.node(2).address
                assert fc.node(2).calls["put"] == 1
                assert fc.node(3).calls.get("put", 0) == 0

    run(go)


def test_not_leader_hint_is_followed_at_once(run, fake_cluster):
    async def go():
        async with fake_cluster(3) as fc, Client(fc.endpoints) as c:
            await c.put(b"k", b"1")
            assert c.leader == fc.node(1).address
            status_before = fc.total("status")
            fc.set_leader(3)
            await c.put(b"k", b"2")
            assert fc.node(1).calls["put"] == 2  # one success, one NOT_LEADER
            assert fc.node(3).calls["put"] == 1
            assert fc.total("status") == status_before  # the hint was enough: no rediscovery
            assert c.leader == fc.node(3).address
            assert fc.shared.data[b"k"][0] == b"2"

    run(go)


def test_not_leader_without_hint_rediscovers(run, fake_cluster):
    async def go():
        async with fake_cluster(3) as fc, Client(fc.endpoints) as c:
            await c.put(b"k", b"1")
            for n in fc.nodes:
                n.hint = False
            status_before = fc.total("status")
            fc.set_leader(2)
            await c.put(b"k", b"2")
            assert fc.total("status") > status_before
            assert c.leader == fc.node(2).address

    run(go)


def test_unavailable_is_retried_with_backoff_until_it_succeeds(run, fake_cluster):
    async def go():
        async with fake_cluster(1) as fc, Client(fc.endpoints, use_stream=False) as c:
            fc.node(1).fail["put"] = [E.Unavailable("no quorum")] * 2
            fc.node(1).abort["put"] = [E.Unavailable("overloaded")]
            await c.put(b"k", b"v")
            assert fc.node(1).calls["put"] == 4
            assert fc.shared.applied == 1

    run(go)


def test_a_write_refused_for_its_session_goes_once_more_under_a_new_one(run, fake_cluster):
    async def go():
        async with fake_cluster(1) as fc, Client(fc.endpoints, use_stream=False) as c:
            await c.put(b"k", b"1")
            (old,) = c.client_ids
            fc.shared.expired.add(old)  # evicted: its one attempt is refused, nothing applied
            await c.put(b"k", b"2")
            assert fc.shared.applied == 2 and fc.node(1).calls["register"] == 2
            assert old not in c.client_ids and len(c.client_ids) == 1
            assert fc.shared.data[b"k"][0] == b"2"

    run(go)


def test_a_write_that_may_have_landed_is_not_sent_again_under_a_new_session(run, fake_cluster):
    async def go():
        async with fake_cluster(1) as fc, Client(fc.endpoints, use_stream=False) as c:
            await c.put(b"k", b"1")
            # applied, answer lost, then the session expires before the retry lands
            fc.node(1).lose_response["cas"] = 1
            fc.shared.expire_after_apply = True
            with pytest.raises(E.SessionExpired) as info:
                await c.compare_and_set(b"k", expected_value=b"1", new_value=b"2")
            assert "unknown" in str(info.value)
            assert fc.node(1).calls["cas"] == 2 and fc.node(1).calls["register"] == 1
            assert fc.shared.applied == 2  # the put and the CAS, once: never re-applied
            assert fc.shared.data[b"k"][0] == b"2"

    run(go)


def test_the_deadline_ends_retries_with_operation_timeout(run, fake_cluster):
    async def go():
        async with fake_cluster(3) as fc, Client(fc.endpoints) as c:
            fc.set_leader(None)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(E.OperationTimeout) as info:
                await c.put(b"k", b"v", timeout=0.4)
            assert loop.time() - t0 < 3  # ended by the deadline, not by a hang
            assert isinstance(info.value, TimeoutError)
            assert "put" in str(info.value)
            assert isinstance(info.value.__cause__, E.Unavailable | E.NotLeader)
            assert fc.total("status") >= 2  # it kept looking for a leader

    run(go)


def test_an_unanswered_attempt_is_retried_after_the_attempt_timeout(run, fake_cluster):
    async def go():
        async with (
            fake_cluster(1) as fc,
            Client(fc.endpoints, timeout=10, attempt_timeout_s=0.3) as c,
        ):
            fc.node(1).stall["put"] = 1
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await c.put(b"k", b"v")
            assert loop.time() - t0 < 5
            assert fc.node(1).calls["put"] == 2
            assert fc.shared.applied == 1

    run(go)


def test_closing_the_client_fails_calls_at_once(run, fake_cluster):
    async def go():
        async with fake_cluster(1) as fc:
            c = Client(fc.endpoints, timeout=30, attempt_timeout_s=None)
            await c.put(b"warm", b"up")
            fc.node(1).stall["put"] = 1
            task = asyncio.create_task(c.put(b"k", b"v"))
            await asyncio.sleep(0.2)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await c.close()
            with pytest.raises(E.Unavailable):
                await task
            assert loop.time() - t0 < 5
            with pytest.raises(E.Unavailable):
                await c.get(b"warm")

    run(go)


def test_final_errors_are_not_retried(run, fake_cluster):
    async def go():
        async with fake_cluster(1) as fc, Client(fc.endpoints) as c:
            fc.shared.max_value_bytes = 10
            with pytest.raises(E.PayloadTooLarge):
                await c.put(b"k", b"x" * 11)
            assert fc.node(1).calls["put"] == 1
            fc.node(1).fail["get"] = [E.InvalidArgument("bad key")]
            with pytest.raises(E.InvalidArgument):
                await c.get(b"k")
            with pytest.raises(E.ConfChangeError):
                await c.remove_member(99)
            assert fc.node(1).calls["remove_member"] == 1

    run(go)


def test_a_retried_write_whose_answer_was_lost_is_applied_once(run, fake_cluster):
    async def go():
        async with fake_cluster(1) as fc, Client(fc.endpoints, use_stream=False) as c:
            fc.node(1).lose_response["put"] = 1
            await c.put(b"k", b"v")
            assert fc.node(1).calls["put"] == 2
            assert fc.shared.applied == 1
            (session,) = fc.shared.sessions
            assert session[0] in c.client_ids
            await c.put(b"k", b"w")
            assert fc.shared.applied == 2
            assert len({s for s in fc.shared.sessions}) == 2  # a new seq for a new write

    run(go)


def test_concurrent_callers_share_a_few_stream_messages(run, fake_cluster):
    async def go():
        async with fake_cluster(1) as fc, Client(fc.endpoints, pool_size=2) as c:
            await c.put(b"warm", b"up")
            node = fc.node(1)
            before = node.stream_messages
            node.delay_s = 0.02
            revs = await asyncio.gather(*(c.put(f"k{i}", str(i)) for i in range(100)))
            assert len(set(revs)) == 100
            assert node.stream_requests == 101
            assert node.stream_messages - before <= 10
            assert c.stats.messages_sent <= 11
            assert all(fc.shared.data[f"k{i}".encode()][0] == str(i).encode() for i in range(100))
            # the burst's sessions: one registration (one log entry) for all its lanes
            assert node.calls["register"] == 2 and fc.shared.registered == 1 + 12

    run(go)


def test_a_broken_stream_fails_in_flight_calls_and_they_retry_on_unary(run, fake_cluster):
    async def go():
        async with fake_cluster(1) as fc, Client(fc.endpoints, pool_size=1) as c:
            await c.put(b"warm", b"up")
            node = fc.node(1)
            node.break_stream_after = node.stream_messages + 1
            await asyncio.gather(*(c.put(f"k{i}", b"v") for i in range(20)))
            assert c.stats.streams_broken == 1
            assert node.calls.get("put", 0) >= 20  # answered after the break...
            assert c.unary_calls >= 20  # ...by unary calls while the stream rests
            assert all(f"k{i}".encode() in fc.shared.data for i in range(20))

    run(go)


def test_a_stream_break_names_itself_as_retryable(run, fake_cluster):
    from dengine.client import RETRYABLE
    from dengine.v1 import client_pb2 as pb

    async def go():
        async with fake_cluster(1) as fc, Client(fc.endpoints, pool_size=1) as c:
            await c.put(b"warm", b"up")
            node = fc.node(1)
            node.break_stream_after = node.stream_messages + 1
            stream = c._conn(node.address).pick().batch_stream()
            with pytest.raises(E.Unavailable) as info:
                await stream.call("get", pb.GetRequest(key=b"warm"), "get", 5)
            assert "batch stream" in str(info.value) and "safe to retry" in str(info.value)
            assert isinstance(info.value, RETRYABLE)
            with pytest.raises(E.Unavailable):  # a dead stream refuses new calls at once
                await stream.call("get", pb.GetRequest(key=b"warm"), "get", 5)
            # the channel rests its stream: calls go unary, and succeed
            assert (await c.get(b"warm")).value == b"up"
            assert c._conn(node.address).pick().batch_stream() is None

    run(go)


def test_a_server_without_the_stream_is_served_by_unary_calls(run, fake_cluster):
    async def go():
        async with fake_cluster(1) as fc, Client(fc.endpoints, pool_size=1) as c:
            fc.node(1).batch_unimplemented = True
            for i in range(5):
                await c.put(f"k{i}", b"v")
            assert fc.node(1).calls["put"] == 5
            assert c.stats.streams_opened == 1  # tried once, then unary for good

    run(go)


def test_a_node_going_down_sends_the_client_to_the_new_leader(run, fake_cluster):
    async def go():
        async with fake_cluster(3) as fc, Client(fc.endpoints, timeout=5) as c:
            await c.put(b"k", b"1")
            await fc.node(1).stop()
            fc.set_leader(2)
            await c.put(b"k", b"2")
            assert c.leader == fc.node(2).address
            assert fc.shared.data[b"k"][0] == b"2"

    run(go)


def test_pinned_reads_serializable_on_a_follower_and_not_leader_is_raised(run, fake_cluster):
    async def go():
        async with fake_cluster(3) as fc, Client(fc.endpoints) as c:
            await c.put(b"k", b"v")
            follower = fc.node(3).address
            kv = await c.get(b"k", consistency=Consistency.SERIALIZABLE, endpoint=follower)
            assert kv.value == b"v"
            assert fc.node(3).calls["get"] == 1
            with pytest.raises(E.NotLeader) as info:
                await c.get(b"k", endpoint=follower)
            assert info.value.leader_id == 1 and info.value.leader_addr == fc.node(1).address

    run(go)


def test_cluster_calls(run, fake_cluster):
    async def go():
        async with fake_cluster(3) as fc, Client(fc.endpoints[1:]) as c:
            st = await c.status()
            assert st.is_leader and st.id == 1 and len(st.members) == 3
            st3 = await c.status(fc.node(3).address)
            assert st3.role == "follower" and st3.leader_addr == fc.node(1).address
            members = await c.add_learner(4, "127.0.0.1:1")
            assert [m.id for m in members] == [1, 2, 3]
            await c.promote(4)
            await c.transfer_leader(2)
            assert c.leader is None
            await c.put(b"k", b"v")
            assert c.leader == fc.node(2).address
            with pytest.raises(E.ConfChangeError):
                await c.transfer_leader(9)
            everyone = await c.statuses()
            assert sorted(s.id for s in everyone.values()) == [1, 2, 3]

    run(go)


def test_sync_client_from_a_plain_thread(serve_in_thread):
    fc, stop = serve_in_thread(3)
    try:
        with SyncClient(fc.endpoints, timeout=5) as c:
            c.put("a", "1")
            c.write_batch(puts=[("b", "2"), ("c", "3")])
            assert c.get("a").value == b"1"
            assert [kv.key for kv in c.scan_iter(page_size=2)] == [b"a", b"b", b"c"]
            fc.set_leader(3)
            assert c.delete("a") is True
            assert c.leader == fc.node(3).address
            assert c.status().id == 3
            with pytest.raises(AttributeError):
                c.no_such_method  # noqa: B018
        with pytest.raises(RuntimeError):
            c.put("x", "y")
    finally:
        stop()


def _counting_pool(window: int = 8) -> tuple[SessionPool, list[int]]:
    """A pool whose registrations hand out 101, 102, ... and are recorded."""
    ids: list[int] = []

    async def register(_timeout: float | None, _op: str, count: int) -> list[int]:
        await asyncio.sleep(0)
        new = [101 + len(ids) + k for k in range(count)]
        ids.extend(new)
        return new

    return SessionPool(register, window=window), ids


def test_session_lanes_never_run_a_window_ahead_of_a_slow_write():
    async def go():
        pool, _ids = _counting_pool()
        slow_cm = pool.session()
        slow = await slow_cm.__aenter__()  # a write stuck in retries
        issued: dict[int, list[int]] = {}
        for _ in range(100):  # many quick writes overtake it
            async with pool.session() as s:
                issued.setdefault(s.client_id, []).append(s.seq)
        on_slow_lane = issued.get(slow.client_id, [])
        assert on_slow_lane and max(on_slow_lane) < slow.seq + 8
        assert len(issued) == 2 and all(cid != 0 for cid in issued)
        other = next(cid for cid in issued if cid != slow.client_id)
        assert issued[other] == list(range(1, len(issued[other]) + 1))
        await slow_cm.__aexit__(None, None, None)
        async with pool.session() as s:  # the lane is free again once the slow write ends
            assert s.client_id == slow.client_id and s.seq == max(on_slow_lane) + 1

    asyncio.run(go())


def test_session_lanes_bound_concurrent_writes_per_client_id():
    async def go():
        pool, ids = _counting_pool()
        held = [pool.session() for _ in range(20)]
        sessions = await asyncio.gather(*(cm.__aenter__() for cm in held))
        lanes: dict[int, list[int]] = {}
        for s in sessions:
            lanes.setdefault(s.client_id, []).append(s.seq)
        assert sorted(len(v) for v in lanes.values()) == [4, 8, 8]
        assert sorted(ids) == sorted(lanes)  # 20 writers at once: three lanes
        for cm in held:
            await cm.__aexit__(None, None, None)

    asyncio.run(go())


def test_an_expired_session_is_replaced_by_a_new_registration():
    async def go():
        pool, ids = _counting_pool()
        async with pool.session() as s:
            first = s.client_id
        pool.expire(first)
        async with pool.session() as s:
            assert s.client_id != first and s.seq == 1 and ids == [first, s.client_id]

    asyncio.run(go())


def test_a_failed_registration_reaches_the_writer():
    async def go():
        async def register(_timeout: float | None, _op: str, _count: int) -> list[int]:
            raise E.Unavailable("no leader")

        pool = SessionPool(register)
        with pytest.raises(E.Unavailable):
            async with pool.session():
                pass

    asyncio.run(go())


def test_keys_must_be_bytes_or_str():
    from dengine.client.types import to_bytes

    assert to_bytes("k") == b"k" and to_bytes(bytearray(b"k")) == b"k"
    with pytest.raises(TypeError):
        to_bytes(42)
