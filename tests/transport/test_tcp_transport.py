"""The tcp peer transport (network.peer_transport = "tcp") between real transports on 127.0.0.1.

Messages travel on the length-prefixed TCP stream (not a RaftPeer.Stream call); every check of
the gRPC stream holds on it: cluster id, known sender, removed sender, each message decoded
within 2^63 and addressed as its batch says; a garbage, oversized or silent connection is
refused, counted and closed without touching the node. Every test runs on asyncio and uvloop.
"""

from __future__ import annotations

import asyncio

from dengine.raft.messages import Message, MessageType
from dengine.raft.types import Entry
from dengine.transport import GrpcTransport, TcpTransport
from dengine.transport.convert import encode
from dengine.transport.tcp_transport import FRAME_HEADER, frame, make_transport
from dengine.v1 import raft_pb2

TCP = {"peer_transport": "tcp"}


def append(frm: int, to: int, index: int, data: bytes = b"x") -> Message:
    return Message(MessageType.APPEND, to=to, from_=frm, term=1, log_term=1, index=index - 1,
                   entries=(Entry(1, index, 0, data),), commit=index - 1)


def hb(frm: int, to: int) -> Message:
    return Message(MessageType.HEARTBEAT, to=to, from_=frm, term=1)


async def start(config_for, inbox_factory, node_id: int, cls=TcpTransport, **kw):
    inbox = inbox_factory()
    kw.setdefault("network", {}).update(TCP if cls is TcpTransport else {})
    t = cls(config_for(node_id, **kw), on_message=inbox.on_message)
    await t.start()
    return t, inbox


async def connect(t, peer: int, eventually) -> None:
    async def up() -> bool:
        return t.is_connected(peer)

    for _ in range(500):
        if t.is_connected(peer):
            return
        t.send([hb(t.node_id, peer)])
        await asyncio.sleep(0.02)
    raise AssertionError(f"node {t.node_id} never connected to {peer}")


async def raw(port: int, *frames: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for f in frames:
        writer.write(f)
    await writer.drain()
    return reader, writer


def hello(cluster_id: str = "test", sender: int = 1, messages=()) -> raft_pb2.RaftBatch:
    b = raft_pb2.RaftBatch(cluster_id=cluster_id)
    setattr(b, "from", sender)
    b.messages.extend(messages)
    return b


async def read_ack(reader) -> raft_pb2.RaftBatchAck:
    (n,) = FRAME_HEADER.unpack(await reader.readexactly(4))
    ack = raft_pb2.RaftBatchAck()
    ack.ParseFromString(await reader.readexactly(n))
    return ack


async def closed(reader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionError:
        return True


def test_config_picks_the_transport(config_for, inbox_factory):
    inbox = inbox_factory()
    tcp = make_transport(config_for(1, network=TCP), on_message=inbox.on_message)
    plain = make_transport(config_for(1), on_message=inbox.on_message)
    assert type(tcp) is TcpTransport and type(plain) is GrpcTransport


def test_batches_travel_on_the_tcp_stream_in_order(run, config_for, inbox_factory, eventually):
    async def body():
        t1, _ = await start(config_for, inbox_factory, 1)
        t2, in2 = await start(config_for, inbox_factory, 2)
        t1.set_peer(2, t2.address)
        t2.set_peer(1, t1.address)
        try:
            await connect(t1, 2, eventually)
            assert t1._links[2].via == "tcp" and t2.stream_port
            in2.messages.clear()
            for i in range(1, 501):
                t1.send([append(1, 2, i)])
            await in2.wait_for(lambda: len(in2.messages) >= 500)
            assert [m.entries[0].index for m in in2.messages] == list(range(1, 501))
            assert in2.messages[0] == append(1, 2, 1)
            assert t2.stats.refusals == {}
        finally:
            await t1.stop()
            await t2.stop()

    run(body)


def test_a_grpc_peer_gets_the_grpc_stream(run, config_for, inbox_factory, eventually):
    async def body():
        t1, in1 = await start(config_for, inbox_factory, 1)
        t2, in2 = await start(config_for, inbox_factory, 2, cls=GrpcTransport)
        t1.set_peer(2, t2.address)
        t2.set_peer(1, t1.address)
        try:
            await connect(t1, 2, eventually)
            await connect(t2, 1, eventually)
            assert t1._links[2].via == "grpc"
            await in2.wait_for(lambda: bool(in2.messages))
            await in1.wait_for(lambda: bool(in1.messages))
        finally:
            await t1.stop()
            await t2.stop()

    run(body)


def test_garbage_oversized_and_silent_connections_are_refused_and_counted(
        run, config_for, inbox_factory, eventually):
    async def body():
        t2, in2 = await start(config_for, inbox_factory, 2,
                              network={"connect_timeout_ms": 300})
        port = t2.stream_port
        try:
            # Not a protobuf message.
            r, w = await raw(port, FRAME_HEADER.pack(6) + b"\xff\xff\xff\xff\xff\xff")
            assert await closed(r)
            w.close()
            # A length past network.max_message_bytes: refused before reading it; a hello
            # past 64 KiB too, though within the limit.
            r, w = await raw(port, FRAME_HEADER.pack(2**31))
            assert await closed(r)
            w.close()
            r, w = await raw(port, FRAME_HEADER.pack(1024 * 1024))
            assert await closed(r)
            w.close()
            # A good hello, then garbage: the connection closes, the node carries on.
            r, w = await raw(port, frame(hello()), FRAME_HEADER.pack(3) + b"\x0a\xff\x01")
            assert (await read_ack(r)).error == ""
            assert await closed(r)
            w.close()
            # Nothing at all.
            r, w = await raw(port)
            assert await closed(r)
            w.close()
            counts = t2.refusals.counts
            assert counts.get("malformed_frame") == 2, counts
            assert counts.get("oversized_frame") == 2 and counts.get("no_hello") == 1, counts
            assert in2.messages == []
            # Still serving.
            r, w = await raw(port, frame(hello(messages=[encode(hb(1, 2))])))
            assert (await read_ack(r)).error == ""
            await in2.wait_for(lambda: len(in2.messages) == 1)
            w.close()
        finally:
            await t2.stop()

    run(body)


def test_wrong_cluster_and_unknown_sender_are_refused(run, config_for, inbox_factory):
    async def body():
        t2, in2 = await start(config_for, inbox_factory, 2)
        t2.set_peer(1, "127.0.0.1:1")
        port = t2.stream_port
        try:
            r, w = await raw(port, frame(hello("other", 1, [encode(hb(1, 2))])))
            ack = await read_ack(r)
            assert "cluster" in ack.error and not ack.sender_removed
            assert await closed(r)
            w.close()
            r, w = await raw(port, frame(hello("test", 7, [encode(hb(7, 2))])))
            assert "not a member" in (await read_ack(r)).error
            assert await closed(r)
            w.close()
            # Accepted as node 1, then a batch claiming node 7: the stream is refused.
            r, w = await raw(port, frame(hello()), frame(hello("test", 7, [encode(hb(7, 2))])))
            assert (await read_ack(r)).error == ""
            assert "not a member" in (await read_ack(r)).error
            w.close()
            counts = t2.refusals.counts
            assert counts.get("cluster_mismatch") == 1 and counts.get("unknown_sender") == 2
            assert in2.messages == [] and t2.stats.batches_refused == 3
        finally:
            await t2.stop()

    run(body)


def test_forged_and_out_of_range_messages_are_dropped_one_by_one(run, config_for,
                                                                  inbox_factory):
    async def body():
        t2, in2 = await start(config_for, inbox_factory, 2)
        t2.set_peer(1, "127.0.0.1:1")
        try:
            big = encode(hb(1, 2))
            big.term = 2**63
            forged = encode(hb(3, 2))  # from node 3 in node 1's batch
            r, w = await raw(t2.stream_port,
                             frame(hello()), frame(hello(messages=[big, forged, encode(hb(1, 2))])))
            assert (await read_ack(r)).error == ""
            await in2.wait_for(lambda: len(in2.messages) == 1)
            assert in2.messages[0].from_ == 1
            counts = t2.refusals.counts
            assert counts.get("undecodable") == 1 and counts.get("misaddressed") == 1
            assert t2.stats.messages_refused == 2
            w.close()
        finally:
            await t2.stop()

    run(body)


def test_a_removed_sender_is_told_and_stops(run, config_for, inbox_factory, eventually):
    async def body():
        t1, _ = await start(config_for, inbox_factory, 1)
        t2, _ = await start(config_for, inbox_factory, 2)
        removed = []
        t1.on_removed = lambda: removed.append(True)
        t2.removed_check = lambda peer: peer == 1
        t1.set_peer(2, t2.address)
        try:
            await connect(t1, 2, eventually)
            t2.remove_peer(1)  # node 2 committed node 1's removal
            t1.send([hb(1, 2)])
            await eventually(lambda: bool(removed))
            assert t2.refusals.counts.get("removed_sender") == 1
        finally:
            await t1.stop()
            await t2.stop()

    run(body)


def test_reconnects_after_a_restart_on_a_new_stream_port(run, config_for, inbox_factory,
                                                          eventually):
    async def body():
        t1, _ = await start(config_for, inbox_factory, 1)
        t2, in2 = await start(config_for, inbox_factory, 2)
        t1.set_peer(2, t2.address)
        await connect(t1, 2, eventually)
        port = t2.port
        await t2.stop()
        t2b, in2b = await start(config_for, inbox_factory, 2,
                                cluster={"listen_addr": f"127.0.0.1:{port}"})
        t2b.set_peer(1, t1.address)
        try:
            index = 1
            while not in2b.messages:
                t1.send([append(1, 2, index)])
                index += 1
                await asyncio.sleep(0.02)
            assert t1.stats.reconnects >= 1 and t1._links[2].via == "tcp"
        finally:
            await t1.stop()
            await t2b.stop()

    run(body)


def test_the_fault_switch_cuts_the_tcp_stream(run, config_for, inbox_factory, eventually):
    async def body():
        t1, in1 = await start(config_for, inbox_factory, 1)
        t2, in2 = await start(config_for, inbox_factory, 2)
        t1.set_peer(2, t2.address)
        t2.set_peer(1, t1.address)
        try:
            await connect(t1, 2, eventually)
            await connect(t2, 1, eventually)
            await asyncio.sleep(0.1)
            in1.messages.clear()
            in2.messages.clear()
            t2.faults.set(drop_from=[1])  # node 2 ignores node 1; node 1 still hears node 2
            for i in range(1, 21):
                t1.send([append(1, 2, i)])
                t2.send([hb(2, 1)])
                await asyncio.sleep(0.01)
            await in1.wait_for(lambda: len(in1.messages) >= 20)
            assert in2.messages == []
            t2.faults.heal()
            t1.send([append(1, 2, 99)])
            await in2.wait_for(lambda: len(in2.messages) == 1)
            t1.faults.isolate(2)
            t1.send([append(1, 2, 100)])
            await asyncio.sleep(0.2)
            assert len(in2.messages) == 1 and t1.stats.messages_dropped >= 1
        finally:
            await t1.stop()
            await t2.stop()

    run(body)
