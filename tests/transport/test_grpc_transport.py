"""The gRPC transport between real grpc.aio servers on 127.0.0.1 ephemeral ports.

Every test runs on asyncio and on uvloop (the ``run`` fixture) and fails on an unhandled
event-loop exception.
"""

from __future__ import annotations

import asyncio
import gc
import zlib

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dengine.errors import ConfigError
from dengine.raft.messages import Message, MessageType
from dengine.raft.types import ConfState, Entry, SnapshotMeta
from dengine.transport import GrpcTransport
from dengine.transport.convert import encode, meta_to_proto
from dengine.transport.grpc_transport import PEER_SERVICE_NAME
from dengine.v1 import raft_pb2, raft_pb2_grpc


def append(frm: int, to: int, index: int, data: bytes = b"x") -> Message:
    return Message(
        MessageType.APPEND,
        to=to,
        from_=frm,
        term=1,
        log_term=1,
        index=index - 1,
        entries=(Entry(1, index, 0, data),),
        commit=index - 1,
    )


async def pair(config_for, inbox_factory, n: int = 2, warm: bool = True, **kw):
    """Start ``n`` transports that know each other's real addresses; with ``warm``, their
    streams are up (a first message sent while connecting may be dropped, as designed) and
    their inboxes and counters are empty."""
    inboxes = [inbox_factory() for _ in range(n)]
    ts = [
        GrpcTransport(
            config_for(i + 1, **kw),
            on_message=inboxes[i].on_message,
            on_snapshot=inboxes[i].on_snapshot,
        )
        for i in range(n)
    ]
    for t in ts:
        await t.start()
    for t in ts:
        for other in ts:
            if other is not t:
                t.set_peer(other.node_id, other.address)
    if warm:
        await _connect(ts)
        for t, inbox in zip(ts, inboxes, strict=True):
            inbox.messages.clear()
            t.stats.__init__()  # type: ignore[misc]  # zero in place: the links hold it
    return ts, inboxes


async def _connect(ts) -> None:
    async def link(t, peer: int) -> None:
        while not t.is_connected(peer):
            t.send([Message(MessageType.HEARTBEAT, to=peer, from_=t.node_id, term=1)])
            await asyncio.sleep(0.02)

    await asyncio.wait_for(
        asyncio.gather(*(link(t, o.node_id) for t in ts for o in ts if o is not t)), 15
    )
    # Let the last warm-up messages land, so none arrives after the inboxes are cleared.
    seen = -1
    while seen != (seen := sum(t.stats.messages_received for t in ts)):
        await asyncio.sleep(0.1)


async def stop_all(ts) -> None:
    for t in ts:
        await t.stop()


def test_batches_arrive_in_order(run, config_for, inbox_factory):
    async def body():
        (t1, t2), (_, in2) = await pair(config_for, inbox_factory)
        try:
            for i in range(1, 501):
                t1.send([append(1, 2, i)])
            await in2.wait_for(lambda: len(in2.messages) >= 500)
            assert [m.entries[0].index for m in in2.messages] == list(range(1, 501))
            assert in2.messages[0] == append(1, 2, 1)
            # Queued before the stream drained them: far fewer batches than messages.
            assert t1.stats.messages_sent == 500
            assert t1.stats.batches_sent < 50
            assert t2.stats.messages_received == 500
        finally:
            await stop_all([t1, t2])

    run(body)


def test_batches_respect_the_message_size_limit(run, config_for, inbox_factory):
    async def body():
        kw = {
            "network": {"max_message_bytes": 256 * 1024, "snapshot_chunk_bytes": 64 * 1024},
            "raft": {"max_msg_bytes": 128 * 1024},
        }
        (t1, t2), (_, in2) = await pair(config_for, inbox_factory, **kw)
        try:
            payload = b"p" * 100_000
            t1.send([append(1, 2, i, payload) for i in range(1, 11)])
            await in2.wait_for(lambda: len(in2.messages) >= 10)
            assert [m.entries[0].index for m in in2.messages] == list(range(1, 11))
            assert t1.stats.batches_sent >= 5  # at most ~1.9 of these per 192 KiB batch
        finally:
            await stop_all([t1, t2])

    run(body)


def test_reconnects_after_a_server_restart(run, config_for, inbox_factory):
    async def body():
        (t1, t2), (_, in2) = await pair(config_for, inbox_factory)
        port = t2.port
        t1.send([append(1, 2, 1)])
        await in2.wait_for(lambda: len(in2.messages) == 1)
        await t2.stop()
        # Restart node 2 on the same port.
        in2b = inbox_factory()
        cfg = config_for(2, cluster={"listen_addr": f"127.0.0.1:{port}"})
        t2b = GrpcTransport(cfg, on_message=in2b.on_message)
        t2b.set_peer(1, t1.address)
        await t2b.start()
        try:
            index = 2
            while not in2b.messages:
                t1.send([append(1, 2, index)])
                index += 1
                await asyncio.sleep(0.02)
            assert t1.stats.reconnects >= 1
            assert t1.is_connected(2)
            before = len(in2b.messages)
            t1.send([append(1, 2, 1000)])
            await in2b.wait_for(lambda: len(in2b.messages) > before)
            assert in2b.messages[-1].entries[0].index == 1000
        finally:
            await stop_all([t1, t2b])

    run(body, timeout=30)


def test_unreachable_peer_drops_and_reports(run, config_for, inbox_factory):
    async def body():
        inbox = inbox_factory()
        unreachable: list[int] = []
        t1 = GrpcTransport(
            config_for(1), on_message=inbox.on_message, on_unreachable=unreachable.append
        )
        await t1.start()
        try:
            t1.set_peer(2, "127.0.0.1:1")  # nothing listens there
            for i in range(20):
                t1.send([append(1, 2, i + 1)])
                await asyncio.sleep(0.01)
            assert unreachable and set(unreachable) == {2}
            assert t1.stats.messages_dropped > 0
            assert not t1.is_connected(2)
            t1.send([append(1, 9, 1)])  # unknown peer: dropped, not raised
        finally:
            await t1.stop()

    run(body)


def test_wrong_cluster_is_refused_and_counted(run, config_for, inbox_factory, eventually):
    async def body():
        in1, in2 = inbox_factory(), inbox_factory()
        t1 = GrpcTransport(config_for(1, cluster_id="blue"), on_message=in1.on_message)
        t2 = GrpcTransport(config_for(2, cluster_id="green"), on_message=in2.on_message)
        await t1.start()
        await t2.start()
        t1.set_peer(2, t2.address)
        try:
            t1.send([append(1, 2, 1)])
            await eventually(lambda: t1.stats.refusals.get("refused_by_peer"))
            assert in2.messages == []
            assert t2.stats.batches_refused >= 1
            assert t2.stats.refusals.get("cluster_mismatch", 0) >= 1
            assert t1.stats.refusals.get("refused_by_peer", 0) >= 1
            link = t1._links[2]
            # The error names the id the sender used, and keeps the receiver's to itself.
            assert "cluster id" in link.last_error and "blue" in link.last_error
            assert "green" not in link.last_error
        finally:
            await stop_all([t1, t2])

    run(body)


def test_unknown_sender_is_refused(run, config_for, inbox_factory, eventually):
    async def body():
        (t1, t2, t3), (_, in2, _) = await pair(config_for, inbox_factory, n=3)
        try:
            t2.remove_peer(3)  # node 2 no longer knows node 3
            t3.send([append(3, 2, 1)])
            t1.send([append(1, 2, 7)])
            await in2.wait_for(lambda: len(in2.messages) >= 1)
            await eventually(lambda: t2.stats.refusals.get("unknown_sender"))
            assert [m.from_ for m in in2.messages] == [1]
        finally:
            await stop_all([t1, t2, t3])

    run(body)


def test_bad_messages_in_a_batch_are_dropped_alone(run, config_for, inbox_factory):
    async def body():
        (t1, t2), (_, in2) = await pair(config_for, inbox_factory)
        try:
            batch = raft_pb2.RaftBatch(cluster_id="test")
            setattr(batch, "from", 1)
            batch.messages.append(encode(append(1, 2, 1)))
            local = raft_pb2.RaftMessage(type=100, to=2, term=1)  # HUP: never on the wire
            setattr(local, "from", 1)
            batch.messages.append(local)
            # SNAPSHOT_STATUS: local too (the shell reports a transfer's end to its own core).
            status = raft_pb2.RaftMessage(type=int(MessageType.SNAPSHOT_STATUS), to=2, term=1)
            setattr(status, "from", 1)
            batch.messages.append(status)
            batch.messages.append(encode(append(3, 2, 2)))  # not from the batch's sender
            batch.messages.append(encode(append(1, 3, 3)))  # not addressed to node 2
            batch.messages.append(encode(append(1, 2, 4)))

            async def batches():
                yield batch

            async with grpc.aio.insecure_channel(t2.address) as ch:
                call = raft_pb2_grpc.RaftPeerStub(ch).Stream(batches())
                await in2.wait_for(lambda: len(in2.messages) >= 2)
                call.cancel()
            assert [m.entries[0].index for m in in2.messages] == [1, 4]
            assert t2.stats.messages_refused == 4
            assert t2.stats.refusals["undecodable"] == 2  # the two local-only types
        finally:
            await stop_all([t1, t2])

    run(body)


def test_oversized_message_refused_without_killing_the_server(run, config_for, inbox_factory):
    async def body():
        kw = {
            "network": {"max_message_bytes": 256 * 1024, "snapshot_chunk_bytes": 64 * 1024},
            "raft": {"max_msg_bytes": 128 * 1024},
        }
        (t1, t2), (_, in2) = await pair(config_for, inbox_factory, **kw)
        try:
            big = raft_pb2.RaftBatch(cluster_id="test")
            setattr(big, "from", 1)
            big.messages.append(encode(append(1, 2, 1, b"z" * (1024 * 1024))))

            async def batches():
                yield big

            opts = [("grpc.max_send_message_length", 8 * 1024 * 1024)]
            async with grpc.aio.insecure_channel(t2.address, options=opts) as ch:
                call = raft_pb2_grpc.RaftPeerStub(ch).Stream(batches())
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    async for _ in call:
                        pass
                assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # The sender's own limit: a message too large is dropped, the rest still flows.
            t1.send([append(1, 2, 1, b"z" * (1024 * 1024)), append(1, 2, 2)])
            await in2.wait_for(lambda: len(in2.messages) >= 1)
            assert [m.entries[0].index for m in in2.messages] == [2]
            assert t1.stats.oversized_dropped == 1
            assert t2.stats.batches_received == 1
        finally:
            await stop_all([t1, t2])

    run(body)


async def _pieces(data: bytes, step: int):
    for i in range(0, len(data), step):
        yield data[i : i + step]
        await asyncio.sleep(0)


META = SnapshotMeta(index=120, term=3, conf_state=ConfState(voters=frozenset({1, 2, 3})))


def test_snapshot_streams_beside_the_appends(run, config_for, inbox_factory):
    async def body():
        kw = {"network": {"snapshot_chunk_bytes": 64 * 1024}}
        (t1, t2), (_, in2) = await pair(config_for, inbox_factory, **kw)
        try:
            data = bytes(range(256)) * 2000 + b"tail"  # 512,004 bytes: 8 chunks, uneven pieces
            task = t1.send_snapshot(2, META, _pieces(data, 10_007), term=3)
            for i in range(1, 51):
                t1.send([append(1, 2, i)])
            result = await task
            assert result.accepted, result.error
            assert result.sent_bytes == len(data)
            await in2.wait_for(lambda: len(in2.messages) >= 50)
            (snap,) = in2.snapshots
            assert (snap.from_, snap.term, snap.meta, snap.size_bytes) == (1, 3, META, len(data))
            assert snap.path.read_bytes() == data
            assert t2.stats.snapshots_received == 1 and t1.stats.snapshots_sent == 1
            assert len(t1.channels) == 1  # the stream and the snapshot share one connection
            leftovers = [p for p in t2.snapshot_dir.iterdir() if p != snap.path]
            assert leftovers == []
        finally:
            await stop_all([t1, t2])

    run(body)


def test_empty_snapshot_and_sync_iterable(run, config_for, inbox_factory):
    async def body():
        (t1, t2), (_, in2) = await pair(config_for, inbox_factory)
        try:
            result = await t1.send_snapshot(2, META, [], term=3)
            assert result.accepted, result.error
            assert in2.snapshots[0].path.read_bytes() == b""
            result = await t1.send_snapshot(2, META, [b"ab", b"", b"cd"])
            assert result.accepted and in2.snapshots[1].path.read_bytes() == b"abcd"
        finally:
            await stop_all([t1, t2])

    run(body)


def _chunk(seq: int, data: bytes, **kw) -> raft_pb2.SnapshotChunk:
    c = raft_pb2.SnapshotChunk(cluster_id="test", to=2, term=3, seq=seq, data=data, **kw)
    setattr(c, "from", 1)
    if "checksum" not in kw:
        c.checksum = zlib.crc32(data)
    if seq == 0:
        c.meta.CopyFrom(meta_to_proto(META))
    return c


@pytest.mark.parametrize(
    "case",
    ["bad_chunk_crc", "bad_total_crc", "bad_total_bytes", "gap", "no_last", "wrong_cluster"],
)
def test_bad_snapshot_is_refused_and_leaves_nothing(run, config_for, inbox_factory, case):
    async def body():
        (t1, t2), (_, in2) = await pair(config_for, inbox_factory)
        a, b = b"a" * 1000, b"b" * 500
        total = zlib.crc32(a + b)
        chunks = [_chunk(0, a), _chunk(1, b, last=True, total_checksum=total, total_bytes=1500)]
        if case == "bad_chunk_crc":
            chunks[1].data = b"B" + b[1:]  # corrupted in flight; its checksum no longer holds
        elif case == "bad_total_crc":
            chunks[1].total_checksum = total ^ 1
        elif case == "bad_total_bytes":
            chunks[1].total_bytes = 1501
        elif case == "gap":
            chunks[1].seq = 2
        elif case == "no_last":
            chunks[1].last = False
        elif case == "wrong_cluster":
            for c in chunks:
                c.cluster_id = "other"

        async def feed():
            for c in chunks:
                yield c

        try:
            async with grpc.aio.insecure_channel(t2.address) as ch:
                ack = await raft_pb2_grpc.RaftPeerStub(ch).InstallSnapshot(feed())
            assert not ack.accepted and ack.error
            assert in2.snapshots == []
            assert t2.stats.snapshots_refused == 1
            assert not t2.snapshot_dir.exists() or list(t2.snapshot_dir.iterdir()) == []
            # The receiver is unharmed: a good transfer right after succeeds.
            result = await t1.send_snapshot(2, META, [a, b], term=3)
            assert result.accepted, result.error
            assert in2.snapshots[0].path.read_bytes() == a + b
        finally:
            await stop_all([t1, t2])

    run(body)


def test_interrupted_snapshot_leaves_receiver_unharmed(run, config_for, inbox_factory, eventually):
    async def body():
        kw = {"network": {"snapshot_chunk_bytes": 4096}}
        (t1, t2), (_, in2) = await pair(config_for, inbox_factory, **kw)
        started = asyncio.Event()

        async def slow():
            for _ in range(1000):
                yield b"s" * 4096
                started.set()
                await asyncio.sleep(0.005)

        try:
            task = t1.send_snapshot(2, META, slow(), term=3)
            await started.wait()
            await asyncio.sleep(0.05)
            # A newer request to the same peer cancels the transfer in flight.
            retry = t1.send_snapshot(2, META, [b"fresh"], term=3)
            with pytest.raises(asyncio.CancelledError):
                await task
            result = await retry
            assert result.accepted, result.error
            (snap,) = in2.snapshots
            assert snap.path.read_bytes() == b"fresh"
            # The cancelled transfer's partial file goes once the receiver sees the call end.
            await eventually(lambda: list(t2.snapshot_dir.iterdir()) == [snap.path])
            assert t2.stats.snapshots_received == 1
        finally:
            await stop_all([t1, t2])

    run(body)


def test_snapshot_source_failure_is_reported(run, config_for, inbox_factory):
    async def body():
        (t1, t2), (_, in2) = await pair(config_for, inbox_factory)

        async def broken():
            yield b"x" * 10
            raise OSError("disk gone")

        try:
            result = await t1.send_snapshot(2, META, broken())
            assert not result.accepted and "disk gone" in result.error
            assert in2.snapshots == []
        finally:
            await stop_all([t1, t2])

    run(body)


def test_health_service_answers(run, config_for, inbox_factory):
    async def body():
        (t1,), _ = await pair(config_for, inbox_factory, n=1)
        try:
            async with grpc.aio.insecure_channel(t1.address) as ch:
                stub = health_pb2_grpc.HealthStub(ch)
                for service in ("", PEER_SERVICE_NAME):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Check(health_pb2.HealthCheckRequest(service="nope"))
                assert info.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            await t1.stop()

    run(body)


def test_fault_switch(run, config_for, inbox_factory):
    async def body():
        (t1, t2), (in1, in2) = await pair(config_for, inbox_factory)
        try:
            t1.faults.isolate(2)
            t1.send([append(1, 2, 1)])
            t2.send([append(2, 1, 1)])
            await asyncio.sleep(0.2)
            assert in1.messages == [] and in2.messages == []
            result = await t1.send_snapshot(2, META, [b"x"])
            assert not result.accepted
            t1.faults.heal()
            t1.send([append(1, 2, 2)])
            t2.send([append(2, 1, 2)])
            await in2.wait_for(lambda: len(in2.messages) == 1)
            await in1.wait_for(lambda: len(in1.messages) >= 1)
            assert in2.messages[0].entries[0].index == 2
        finally:
            await stop_all([t1, t2])

    run(body)


def test_fault_switch_refused_unless_enabled(config_for, inbox_factory):
    cfg = config_for(1, network={"fault_injection": False})
    t = GrpcTransport(cfg, on_message=inbox_factory().on_message)
    with pytest.raises(ConfigError) as info:
        t.faults.isolate(2)
    assert info.value.key == "network.fault_injection"
    with pytest.raises(ConfigError):
        t.faults.heal()
    assert not t.faults.blocks_to(2)


def test_listen_failure_is_clear(run, config_for, inbox_factory):
    async def body():
        (t1,), _ = await pair(config_for, inbox_factory, n=1)
        try:
            cfg = config_for(2, cluster={"listen_addr": t1.address})
            t2 = GrpcTransport(cfg, on_message=inbox_factory().on_message)
            with pytest.raises(Exception, match="cannot listen on"):
                await t2.start()
            await t2.stop()
        finally:
            await t1.stop()

    run(body)


def _request_consumers() -> list[asyncio.Task]:
    """grpc.aio's tasks that feed a stream call from our request generator."""
    return [
        t for t in asyncio.all_tasks()
        if not t.done() and "_consume_request_iterator" in repr(t.get_coro())
    ]  # fmt: skip


def test_a_stream_that_fails_leaves_no_request_task_behind(run, config_for, inbox_factory):
    """When the peer ends the stream the call is already done, so cancelling it does not
    cancel grpc.aio's request task: the generator must return by itself, or the task stays
    parked and is destroyed pending ("aclose(): asynchronous generator is already running")."""

    async def body():
        (t1, t2), (_, in2) = await pair(config_for, inbox_factory)
        t1.send([append(1, 2, 1)])
        await in2.wait_for(lambda: len(in2.messages) == 1)
        await t2.stop()
        for _ in range(500):
            if not t1.is_connected(2) and not _request_consumers():
                break
            await asyncio.sleep(0.01)
        assert not t1.is_connected(2)
        assert _request_consumers() == []
        await t1.stop()
        await asyncio.sleep(0.05)
        gc.collect()  # a task left pending would be reported to the loop here, failing run()

    run(body)


def test_a_peer_that_moves_is_followed(run, config_for, inbox_factory, eventually):
    async def body():
        (t1, t2), (_, in2) = await pair(config_for, inbox_factory)
        t1.send([append(1, 2, 1)])
        await in2.wait_for(lambda: len(in2.messages) == 1)
        await t2.stop()
        in2b = inbox_factory()
        t2b = GrpcTransport(config_for(2), on_message=in2b.on_message)  # a new port
        t2b.set_peer(1, t1.address)
        await t2b.start()
        try:
            t1.set_peer(2, t2b.address)
            t1.send([append(1, 2, 2)])
            await in2b.wait_for(lambda: len(in2b.messages) == 1)
            assert in2b.messages[0].entries[0].index == 2
            await eventually(lambda: t2.address not in t1.channels)
            assert t2b.address in t1.channels
            t1.remove_peer(2)
            t1.send([append(1, 2, 3)])
            await asyncio.sleep(0.1)
            assert len(in2b.messages) == 1
        finally:
            await stop_all([t1, t2b])

    run(body)


def test_on_a_server_the_node_owns(run, config_for, inbox_factory):
    """The node may serve its client API on the same server: it binds and starts it."""

    async def body():
        (t1,), _ = await pair(config_for, inbox_factory, n=1)
        server = grpc.aio.server()
        in2 = inbox_factory()
        t2 = GrpcTransport(config_for(2), on_message=in2.on_message, server=server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await t2.start()
        try:
            t1.set_peer(2, f"127.0.0.1:{port}")
            t2.set_peer(1, t1.address)
            t1.send([append(1, 2, 1)])
            await in2.wait_for(lambda: len(in2.messages) == 1)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                reply = await health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=PEER_SERVICE_NAME)
                )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            await stop_all([t1, t2])
            await server.stop(None)

    run(body)
