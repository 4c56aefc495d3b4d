"""The ``dengine-unary`` benchmark target: dengine through plain generated gRPC stubs.

Theory of operation
-------------------
A client in another language reaches dengine through the unary RPCs of
``protos/dengine/v1/client.proto`` (``Kv.Put``, ``Kv.Get``), not through the Python client's
coalescing Batch stream. This target is that client, written the way the etcd target drives
etcd: the generated stubs on ``connections`` grpc.aio channels to the leader (found with
``Cluster.Status``), one call per operation, no session and no retry. Opened with ``spread``,
channel ``i`` goes to member ``i mod n`` and reads go out on every channel (a follower serves
them, a linearizable one after its ReadIndex round); writes still go to the leader only, on
the channels that reach it (a follower does not forward a dengine write). A call fails when gRPC
raises or when the answer carries an error, so both ways a server may report one count.
Compared with the etcd target it measures the two servers under the same kind of client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

__all__ = ["UnaryTarget"]

MiB = 1024 * 1024


class UnaryCallFailed(RuntimeError):
    """An answer that carried an error instead of a result."""


class UnaryTarget:
    """dengine's Kv service through plain unary calls on ``connections`` channels."""

    name = "dengine-unary"
    spreads_reads = True

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 10.0) -> None:
        self.endpoints = [e.removeprefix("http://") for e in endpoints]
        self.timeout = timeout
        self._channels: list[Any] = []
        self._kv: list[Any] = []
        self._write_kv: list[Any] = []

    async def leader_endpoint(self) -> str:
        """The client address of the leader, as the members' ``Status`` answers name it."""
        import grpc

        from dengine.v1 import client_pb2 as pb
        from dengine.v1 import client_pb2_grpc as pbg

        async def status(ep: str) -> Any:
            async with grpc.aio.insecure_channel(ep) as ch:
                return await pbg.ClusterStub(ch).Status(pb.StatusRequest(), timeout=2.0)

        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            answers = await asyncio.gather(*(status(e) for e in self.endpoints),
                                           return_exceptions=True)
            for ep, st in zip(self.endpoints, answers, strict=True):
                if isinstance(st, BaseException) or not st.leader_id:
                    continue
                if st.id == st.leader_id:
                    return ep
                if st.leader_addr:
                    return str(st.leader_addr).removeprefix("http://")
            if asyncio.get_running_loop().time() > deadline:
                raise ConnectionError(f"no dengine leader among {', '.join(self.endpoints)}: "
                                      f"{answers}")
            await asyncio.sleep(0.1)

    async def open(self, connections: int, spread: bool = False) -> None:
        import grpc

        from dengine.v1 import client_pb2 as pb
        from dengine.v1 import client_pb2_grpc as pbg

        await self.close()
        self._pb = pb
        self._consistency = {"linearizable": pb.LINEARIZABLE, "lease": pb.LEASE,
                             "serializable": pb.SERIALIZABLE}
        leader = await self.leader_endpoint()
        # spread: the leader first, then every other endpoint
        members = [leader, *(e for e in self.endpoints if e != leader)] if spread else [leader]
        opts = [("grpc.max_receive_message_length", 64 * MiB)]
        for i in range(max(1, connections)):
            # A distinct channel argument keeps grpc from sharing one subchannel among them.
            ch = grpc.aio.insecure_channel(members[i % len(members)],
                                           options=[*opts, ("dengine.bench.channel", i)])
            self._channels.append(ch)
            self._kv.append(pbg.KvStub(ch))
        self._write_kv = self._kv[::len(members)]  # channels 0, n, 2n...: the leader's

    @staticmethod
    def _check(resp: Any) -> Any:
        if resp.HasField("error") and resp.error.code != 0:
            raise UnaryCallFailed(f"{resp.error.code}: {resp.error.message}")
        return resp

    async def put(self, slot: int, key: bytes, value: bytes) -> None:
        self._check(await self._write_kv[slot % len(self._write_kv)].Put(
            self._pb.PutRequest(key=key, value=value), timeout=self.timeout))

    async def get(self, slot: int, key: bytes, consistency: str) -> bool:
        req = self._pb.GetRequest(key=key, consistency=self._consistency[consistency])
        resp = self._check(await self._kv[slot % len(self._kv)].Get(req, timeout=self.timeout))
        return bool(resp.found)

    async def close(self) -> None:
        chans, self._channels, self._kv, self._write_kv = self._channels, [], [], []
        for ch in chans:
            await ch.close()
