"""Exactly-once on real node processes: a client pushed out of a full session table has its
retried writes refused with SESSION_EXPIRED on every node, also after kill -9 of the whole
cluster; clients whose sessions were pushed out go on writing under new ones."""

from __future__ import annotations

import grpc
import pytest

from dengine import errors as E
from dengine.transport import status as S
from dengine.v1 import client_pb2 as pb
from dengine.v1 import client_pb2_grpc as pbg


async def _rpc(address: str, method: str, req):
    async with grpc.aio.insecure_channel(address) as ch:
        try:
            return await getattr(pbg.KvStub(ch), method)(req, timeout=5)
        except grpc.RpcError as e:
            raise S.from_rpc_error(e) from e


def _put(cid: int) -> pb.PutRequest:
    return pb.PutRequest(key=b"k", value=b"v1", session=pb.Session(client_id=cid, seq=1))


def _cas(cid: int) -> pb.CompareAndSetRequest:
    return pb.CompareAndSetRequest(key=b"k", expected_value=b"v1", new_value=b"v2",
                                   session=pb.Session(client_id=cid, seq=2))


async def _refused(address: str, old: int) -> None:
    with pytest.raises(E.SessionExpired):
        await _rpc(address, "Put", _put(old))
    with pytest.raises(E.SessionExpired):
        await _rpc(address, "CompareAndSet", _cas(old))


def test_an_evicted_clients_retries_are_refused_by_real_nodes(cluster_factory, run):
    lc = cluster_factory(statemachine={"max_sessions": 4})

    async def go():
        async with lc.client() as c:
            leader = (await lc.wait_leader(c)).address
            old = (await _rpc(leader, "RegisterSession", pb.RegisterSessionRequest())).client_id
            first = await _rpc(leader, "Put", _put(old))
            cas = await _rpc(leader, "CompareAndSet", _cas(old))
            assert cas.succeeded
            again = await _rpc(leader, "CompareAndSet", _cas(old))  # still held: first answer
            assert again.succeeded and again.revision == cas.revision
            clients = [lc.client() for _ in range(6)]
            try:
                for i, other in enumerate(clients):
                    await other.put(f"c{i}", "x")
                await clients[0].put("k", "newest")  # its session was pushed out too
            finally:
                for other in clients:
                    await other.close()
            kv = await c.get("k")
            assert (kv.value, kv.version) == (b"newest", 3)
            await _refused(leader, old)
            applied = (await c.status(leader)).applied_index
            for n in lc.nodes.values():
                await lc.wait_applied(c, n.id, applied)
                got = await c.get("k", endpoint=n.address, consistency="serializable")
                assert (got.value, got.version) == (b"newest", 3), n.id
            assert first.revision < kv.revision
        lc.kill_all()
        lc.start()
        async with lc.client() as c:
            leader = (await lc.wait_leader(c)).address
            await _refused(leader, old)
            kv = await c.get("k")
            assert (kv.value, kv.version) == (b"newest", 3)

    run(go)
