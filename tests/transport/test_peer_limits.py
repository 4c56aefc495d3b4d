"""The receiving side refuses what a forged or broken peer could use to hurt a node: snapshots
past the size cap, several snapshot transfers at once, numbers out of range. Each refusal is
counted by reason and logged with the peer's address."""

from __future__ import annotations

import asyncio
import zlib

import grpc

from dengine.raft.messages import Message, MessageType
from dengine.raft.types import ConfState, SnapshotMeta
from dengine.transport import GrpcTransport
from dengine.transport.convert import encode, meta_to_proto
from dengine.v1 import raft_pb2, raft_pb2_grpc

META = SnapshotMeta(index=50, term=2, conf_state=ConfState(voters=frozenset({1, 2, 3})))


def chunk(sender: int, seq: int, data: bytes, **kw) -> raft_pb2.SnapshotChunk:
    c = raft_pb2.SnapshotChunk(cluster_id="test", to=2, term=2, seq=seq, data=data,
                               checksum=zlib.crc32(data), **kw)
    setattr(c, "from", sender)
    if seq == 0:
        c.meta.CopyFrom(meta_to_proto(META))
    return c


async def start(config_for, inbox_factory, node_id: int, **kw):
    inbox = inbox_factory()
    t = GrpcTransport(config_for(node_id, **kw), on_message=inbox.on_message,
                      on_snapshot=inbox.on_snapshot)
    await t.start()
    return t, inbox


def test_a_snapshot_past_the_size_cap_is_refused_and_its_file_removed(run, config_for,
                                                                        inbox_factory):
    async def body():
        t2, in2 = await start(config_for, inbox_factory, 2,
                              network={"max_snapshot_bytes": 10_000})

        async def feed():
            for seq in range(100):  # 100 x 1000 bytes, ten times the cap
                yield chunk(1, seq, b"z" * 1000)

        try:
            async with grpc.aio.insecure_channel(t2.address) as ch:
                ack = await raft_pb2_grpc.RaftPeerStub(ch).InstallSnapshot(feed())
            assert not ack.accepted and "max_snapshot_bytes" in ack.error
            assert in2.snapshots == [] and t2.stats.snapshots_refused == 1
            assert list(t2.snapshot_dir.iterdir()) == []
            assert t2.refusals.counts.get("snapshot_refused") == 1
        finally:
            await t2.stop()

    run(body)


def test_one_snapshot_transfer_at_a_time(run, config_for, inbox_factory):
    async def body():
        t2, in2 = await start(config_for, inbox_factory, 2)
        first_in = asyncio.Event()
        release = asyncio.Event()

        async def slow():  # node 1's transfer: holds the slot until released
            yield chunk(1, 0, b"a" * 100)
            first_in.set()
            await release.wait()
            data = b"a" * 100
            yield chunk(1, 1, b"", last=True, total_checksum=zlib.crc32(data), total_bytes=100)

        async def other():  # node 3's transfer while node 1's runs
            data = b"b" * 100
            yield chunk(3, 0, data, last=True, total_checksum=zlib.crc32(data), total_bytes=100)

        try:
            async with grpc.aio.insecure_channel(t2.address) as ch:
                stub = raft_pb2_grpc.RaftPeerStub(ch)
                first = asyncio.ensure_future(stub.InstallSnapshot(slow()))
                await first_in.wait()
                await asyncio.sleep(0.2)
                ack = await stub.InstallSnapshot(other())
                assert not ack.accepted and "one at a time" in ack.error
                release.set()
                ack = await first
                assert ack.accepted, ack.error
                # The slot is free again: node 3 may send now.
                ack = await stub.InstallSnapshot(other())
                assert ack.accepted, ack.error
            assert [s.from_ for s in in2.snapshots] == [1, 3]
        finally:
            await t2.stop()

    run(body)


def test_out_of_range_numbers_are_refused_at_the_edge_and_counted(run, config_for,
                                                                 inbox_factory, eventually):
    async def body():
        t2, in2 = await start(config_for, inbox_factory, 2)
        batch = raft_pb2.RaftBatch(cluster_id="test")
        setattr(batch, "from", 1)
        bad = encode(Message(MessageType.HEARTBEAT, 2, 1, term=1))
        bad.term = 2**64 - 1
        good = encode(Message(MessageType.HEARTBEAT, 2, 1, term=1))
        batch.messages.extend([bad, good])

        async def feed():
            yield batch
            await asyncio.sleep(0.5)

        try:
            async with grpc.aio.insecure_channel(t2.address) as ch:
                call = raft_pb2_grpc.RaftPeerStub(ch).Stream(feed())
                await in2.wait_for(lambda: len(in2.messages) == 1)
                call.cancel()
            assert in2.messages[0].term == 1
            assert t2.refusals.counts.get("undecodable") == 1
        finally:
            await t2.stop()

    run(body)
