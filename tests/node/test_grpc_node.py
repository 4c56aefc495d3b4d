"""Three nodes in this process on real gRPC over loopback: the client API as a remote client
sees it (unary calls, the Batch stream, NOT_LEADER hints, bad input) and a join by address."""

from __future__ import annotations

import asyncio

import grpc
import structlog

from dengine.node.serve import join_cluster
from dengine.transport import status
from dengine.v1 import client_pb2 as pb
from dengine.v1 import client_pb2_grpc as pbg


async def _stubs(address: str):
    ch = grpc.aio.insecure_channel(address)
    return ch, pbg.KvStub(ch), pbg.ClusterStub(ch)


async def _refused(call) -> grpc.aio.AioRpcError:
    try:
        resp = await call
    except grpc.aio.AioRpcError as e:
        return e
    raise AssertionError(f"the call succeeded: {resp}")


def test_client_api_over_grpc(run, cluster_factory):
    async def main():
        c = await cluster_factory(grpc=True, max_msg_bytes=256 * 1024).start()
        channels = []
        try:
            leader = await c.leader()
            follower = c.followers()[0]
            ch, kv, cluster = await _stubs(leader.address)
            fch, fkv, _ = await _stubs(follower.address)
            channels += [ch, fch]

            put = await kv.Put(pb.PutRequest(key=b"a", value=b"1"))
            assert not put.HasField("error") and put.revision > 1
            got = await kv.Get(pb.GetRequest(key=b"a", consistency=pb.LEASE))
            assert got.found and got.kv.value == b"1"

            # A unary call's error is its gRPC status; the hint is in the trailing metadata.
            refused = await _refused(fkv.Put(pb.PutRequest(key=b"a", value=b"2")))
            assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
            trailing = dict(refused.trailing_metadata())
            assert (trailing["dengine-leader-id"], trailing["dengine-leader-addr"]) == (
                str(leader.node_id), leader.address)
            err = status.from_rpc_error(refused)
            assert (err.leader_id, err.leader_addr) == (leader.node_id, leader.address)

            big = await _refused(kv.Put(pb.PutRequest(key=b"big", value=b"x" * (300 * 1024))))
            assert big.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "raft.max_msg_bytes" in big.details()

            st = await cluster.Status(pb.StatusRequest())
            assert st.role == "leader" and st.leader_id == leader.node_id
            assert sorted(m.id for m in st.members) == [1, 2, 3]

            await _batch_stream(kv)
            # The node is still serving after all that.
            assert (await kv.Get(pb.GetRequest(key=b"s7"))).kv.value == b"v7"
        finally:
            for ch in channels:
                await ch.close()
            await c.close()

    run(main)


async def _batch_stream(kv) -> None:
    call = kv.Batch()
    reqs = [pb.ClientRequest(request_id=i, put=pb.PutRequest(key=b"s%d" % i, value=b"v%d" % i))
            for i in range(1, 101)]
    reqs.append(pb.ClientRequest(request_id=1000))  # no operation: INVALID_ARGUMENT
    reqs.append(pb.ClientRequest(request_id=1001, get=pb.GetRequest(key=b"a")))
    await call.write(pb.ClientRequestBatch(requests=reqs[:50]))
    await call.write(pb.ClientRequestBatch(requests=reqs[50:]))
    await call.done_writing()
    answers = {}
    messages = 0
    async for batch in call:
        messages += 1
        for r in batch.responses:
            answers[r.request_id] = r
    assert set(answers) == {r.request_id for r in reqs}
    assert messages < len(reqs)  # answers were coalesced
    assert answers[1000].put.error.code == pb.INVALID_ARGUMENT
    assert answers[1001].get.found
    revs = {answers[i].put.revision for i in range(1, 101)}
    assert len(revs) == 100 and 0 not in revs


def test_a_new_node_joins_through_any_member(run, cluster_factory):
    async def main():
        c = await cluster_factory(grpc=True).start()
        channels = []
        try:
            leader = await c.leader()
            follower = c.followers()[0]
            ch, kv, cluster = await _stubs(leader.address)
            channels.append(ch)
            for i in range(10):
                await kv.Put(pb.PutRequest(key=b"k%d" % i, value=b"v"))
            new = await c.start_node(4, join=follower.address)
            # Asked through a follower: the NOT_LEADER hint leads it to the leader.
            await asyncio.wait_for(
                join_cluster(new, follower.address, structlog.get_logger(), attempts=20), 10)
            await c.wait_applied(leader.state_machine.applied_index(), [new])
            assert new.state_machine.get(b"k9").value == b"v"
            assert new.core.role.name == "LEARNER"
            st = await cluster.Promote(pb.PromoteRequest(id=4))
            assert not st.HasField("error")
            assert (4, pb.VOTER) in {(m.id, m.role) for m in st.members}
            await kv.Put(pb.PutRequest(key=b"after", value=b"promote"))
            await c.wait_applied(leader.state_machine.applied_index(), [new])
            assert new.core.role.name == "FOLLOWER"
        finally:
            for ch in channels:
                await ch.close()
            await c.close()

    run(main)


def test_a_batch_stream_beyond_the_in_flight_cap_is_answered_in_full(run, cluster_factory):
    async def main():
        c = cluster_factory(grpc=True)
        for i in c.initial:
            await c.start_node(i, network={"stream_max_in_flight": 4})
        ch = None
        try:
            leader = await c.leader()
            ch, kv, _ = await _stubs(leader.address)
            await kv.Put(pb.PutRequest(key=b"a", value=b"1"))
            await _batch_stream(kv)
        finally:
            if ch is not None:
                await ch.close()
            await c.close()

    run(main)


def test_three_nodes_over_the_tcp_peer_transport(run, cluster_factory):
    """network.peer_transport = "tcp": the nodes elect and replicate on the TCP stream, a
    follower restarted (with a new stream port) is found again, and the fault switch cuts it."""
    from dengine.transport import TcpTransport

    async def main():
        c = await cluster_factory(grpc=True, peer_transport="tcp").start()
        try:
            leader = await c.leader()
            assert all(isinstance(n.transport, TcpTransport) for n in c.nodes.values())
            kv = c.client(leader)
            await kv.put(b"k", b"1")
            await c.wait_applied(leader.state_machine.applied_index())
            assert all(link.via == "tcp" for link in leader.transport._links.values())

            follower = c.followers()[0]
            fid = follower.node_id
            await c.stop_node(fid)
            await kv.put(b"k", b"2")  # the other follower is enough for a quorum
            restarted = await c.start_node(fid)  # on another free stream port, most likely
            await kv.put(b"k", b"3")
            await c.wait_applied(leader.state_machine.applied_index(), timeout=20)

            # Cut the restarted follower off: it falls behind; healed, it catches up.
            leader.transport.faults.isolate(fid)
            restarted.transport.faults.isolate(leader.node_id)
            await kv.put(b"k", b"4")
            behind = restarted.state_machine.applied_index()
            assert behind < leader.state_machine.applied_index()
            leader.transport.faults.heal()
            restarted.transport.faults.heal()
            await c.wait_applied(leader.state_machine.applied_index(), timeout=20)
        finally:
            await c.close()

    run(main, timeout=60)
