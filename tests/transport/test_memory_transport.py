"""The in-memory transport: same contract as the gRPC one (order, refusals, faults, snapshots),
and the loop fixture itself (an unhandled loop exception fails a test)."""

from __future__ import annotations

import asyncio

import pytest

from dengine.errors import ConfigError
from dengine.raft.messages import Message, MessageType
from dengine.raft.types import SnapshotMeta
from dengine.transport import MemoryNetwork, MemoryTransport, Transport


def hb(frm: int, to: int, index: int) -> Message:
    return Message(MessageType.HEARTBEAT, to=to, from_=frm, term=1, index=index)


async def cluster(inbox_factory, n=3, wire=False, **kw):
    net = MemoryNetwork("test", wire=wire)
    inboxes = [inbox_factory() for _ in range(n)]
    ts = [
        net.transport(
            i + 1,
            on_message=inboxes[i].on_message,
            on_snapshot=inboxes[i].on_snapshot,
            peers=range(1, n + 1),
            **kw,
        )
        for i in range(n)
    ]
    for t in ts:
        await t.start()
    return net, ts, inboxes


def test_satisfies_the_protocol(inbox_factory):
    t = MemoryNetwork().transport(1, on_message=inbox_factory().on_message)
    assert isinstance(t, Transport)


@pytest.mark.parametrize("wire", [False, True])
def test_in_order_and_never_reentrant(run, inbox_factory, wire):
    async def body():
        _, (t1, t2, t3), (_, in2, in3) = await cluster(inbox_factory, wire=wire)
        t1.send([hb(1, 2, i) for i in range(100)] + [hb(1, 3, 0)])
        assert in2.messages == []  # delivery happens on a later loop turn
        await in2.wait_for(lambda: len(in2.messages) == 100)
        assert [m.index for m in in2.messages] == list(range(100))
        assert in3.messages == [hb(1, 3, 0)]
        for t in (t1, t2, t3):
            await t.stop()

    run(body)


def test_refusals_and_faults(run, inbox_factory):
    async def body():
        net, (t1, t2, t3), (in1, in2, _) = await cluster(inbox_factory)
        stranger = net.transport(9, on_message=lambda m: None, peers=[2])
        await stranger.start()
        stranger.send([hb(9, 2, 1)])  # node 2 does not know node 9
        other = MemoryTransport(net, 4, on_message=lambda m: None, peers=[2], cluster_id="x")
        await other.start()
        other.send([hb(4, 2, 1)])  # another cluster
        await asyncio.sleep(0)
        assert in2.messages == []
        assert t2.stats.refusals == {"unknown_sender": 1, "cluster_mismatch": 1}
        t1.faults.isolate(2)
        t1.send([hb(1, 2, 1)])
        t2.send([hb(2, 1, 1)])
        await asyncio.sleep(0)
        assert in1.messages == [] and in2.messages == []
        t1.faults.heal()
        t1.send([hb(1, 2, 2)])
        await in2.wait_for(lambda: len(in2.messages) == 1)
        for t in (t1, t2, t3, stranger, other):
            await t.stop()
        t1.send([hb(1, 2, 3)])  # stopped: silently nothing

    run(body)


def test_fault_switch_can_be_refused(inbox_factory):
    t = MemoryNetwork().transport(1, on_message=inbox_factory().on_message, fault_injection=False)
    with pytest.raises(ConfigError):
        t.faults.set(drop_to=[2])


def test_snapshot_verified_and_handed_over(run, inbox_factory, tmp_path):
    async def body():
        _, (t1, t2, t3), (_, in2, _) = await cluster(
            inbox_factory, snapshot_dir=tmp_path, snapshot_chunk_bytes=1000
        )
        meta = SnapshotMeta(index=10, term=2)
        data = b"0123456789" * 550
        result = await t1.send_snapshot(2, meta, [data[:777], data[777:]], term=2)
        assert result.accepted and result.sent_bytes == len(data)
        (snap,) = in2.snapshots
        assert snap.meta == meta and snap.path.read_bytes() == data
        t1.faults.isolate(3)
        result = await t1.send_snapshot(3, meta, [data])
        assert not result.accepted

        async def broken():
            yield b"x"
            raise OSError("disk gone")

        result = await t1.send_snapshot(2, meta, broken())
        assert not result.accepted and "disk gone" in result.error
        assert len(in2.snapshots) == 1 and sorted(tmp_path.iterdir()) == [snap.path]
        for t in (t1, t2, t3):
            await t.stop()

    run(body)


def test_snapshot_refused_by_the_node_leaves_no_file(run, inbox_factory, tmp_path):
    async def body():
        net = MemoryNetwork("test")

        async def refuse(incoming):
            raise RuntimeError("not now")

        t1 = net.transport(1, on_message=lambda m: None, peers=[2])
        t2 = net.transport(2, on_message=lambda m: None, on_snapshot=refuse, peers=[1],
                           snapshot_dir=tmp_path)  # fmt: skip
        await t1.start()
        await t2.start()
        result = await t1.send_snapshot(2, SnapshotMeta(index=1, term=1), [b"abc"])
        assert not result.accepted and "not now" in result.error
        assert list(tmp_path.iterdir()) == []
        await t1.stop()
        await t2.stop()

    run(body)


def test_loop_fixture_fails_on_an_unhandled_exception(run):
    """The guard every async test relies on: a task that dies unobserved fails the test."""

    async def body():
        async def boom():
            raise RuntimeError("lost")

        asyncio.get_running_loop().create_task(boom())
        await asyncio.sleep(0.01)

    with pytest.raises(AssertionError, match="unhandled event-loop exception"):
        run(body)
