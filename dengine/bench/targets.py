"""What a benchmark talks to: dengine's client, dengine's in-process client, or etcd v3.

Every target has the same four calls (``open``, ``put``, ``get``, ``close``); ``slot`` is the
number of the benchmark client making the call, so a target can give each client its own
connection (``slot % connections``) the way the workload asks.

The etcd target is what a Python program reaching etcd today does: plain unary gRPC calls
(``KV.Put``, ``KV.Range`` with ``serializable`` off or on) on grpc.aio channels, from the minimal
proto in ``protos/etcd/``. It sends everything to the leader, as dengine's client does, so both
serve linearizable reads without a forwarding hop. etcd has no lease reads in its API: ``lease``
is sent as a linearizable read (etcd's own linearizable reads use ReadIndex).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dengine.client.types import ClientTLS

__all__ = ["DengineTarget", "EmbeddedTarget", "EtcdTarget", "make_target"]

MiB = 1024 * 1024


class DengineTarget:
    """dengine's async :class:`~dengine.client.Client`, ``connections`` channels to the leader
    (its default KV path: the coalescing Batch stream). ``spread``: the client's
    ``spread_reads``, each benchmark client (a task) kept to one member given out in turn,
    ``connections`` shared out among them (rounded up: 4 channels to each of 3 members for
    10). With ``pin_reads`` a spread workload instead pins benchmark client ``slot`` to member
    ``slot mod n`` (``get`` with ``endpoint=``), the way the unary and etcd targets spread:
    the same servers and stream, placed by the benchmark instead of the client."""

    name = "dengine"
    spreads_reads = True

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 10.0,
                 use_stream: bool = True, tls: ClientTLS | None = None,
                 pin_reads: bool = False) -> None:
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.use_stream = use_stream
        self.tls: ClientTLS = tls.copy() if tls else {}  # Client keyword arguments
        self.pin_reads = pin_reads
        self.client: Any = None
        self._pins: list[str] = []

    async def open(self, connections: int, spread: bool = False) -> None:
        from dengine.client import Client

        await self.close()
        per_member = -(-connections // len(self.endpoints)) if spread else connections
        self._pins = self.endpoints if spread and self.pin_reads else []
        self.client = Client(self.endpoints, timeout=self.timeout, pool_size=max(1, per_member),
                             use_stream=self.use_stream,
                             spread_reads=spread and not self.pin_reads, **self.tls)
        await self.client.status(timeout=self.timeout)  # find the leader before timing

    async def put(self, slot: int, key: bytes, value: bytes) -> None:
        await self.client.put(key, value)

    async def get(self, slot: int, key: bytes, consistency: str) -> bool:
        if self._pins:
            return await self.client.get(key, consistency=consistency,
                                         endpoint=self._pins[slot % len(self._pins)]) is not None
        return await self.client.get(key, consistency=consistency) is not None

    def counters(self) -> dict[str, int]:
        """The client's calls so far: Batch stream messages and the requests they carried,
        and unary calls (how well concurrent callers share messages)."""
        st = self.client.stats
        return {"stream_messages": st.messages_sent, "stream_requests": st.requests_sent,
                "unary_calls": self.client.unary_calls}

    async def put_many(self, slot: int, pairs: list[tuple[bytes, bytes]]) -> None:
        """One atomic batch of puts (``--preload``)."""
        await self.client.write_batch(puts=pairs)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None


class EmbeddedTarget:
    """The in-process client of a node running in this process (one client per benchmark
    client, so each has its own write session)."""

    name = "embedded"

    def __init__(self, node: Any, *, timeout: float = 10.0) -> None:
        self.node = node
        self.timeout = timeout
        self._clients: dict[int, Any] = {}

    def _client(self, slot: int) -> Any:
        c = self._clients.get(slot)
        if c is None:
            from dengine.node import EmbeddedClient

            c = self._clients[slot] = EmbeddedClient(self.node, timeout=self.timeout)
        return c

    async def open(self, connections: int) -> None:
        return None

    async def put(self, slot: int, key: bytes, value: bytes) -> None:
        await self._client(slot).put(key, value)

    async def get(self, slot: int, key: bytes, consistency: str) -> bool:
        return await self._client(slot).get(key, consistency=consistency) is not None

    async def put_many(self, slot: int, pairs: list[tuple[bytes, bytes]]) -> None:
        await self._client(slot).write_batch(puts=pairs)

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            await c.close()


class EtcdTarget:
    """etcd v3 through plain unary gRPC calls on ``connections`` channels to its leader
    (``spread``, or ``leader_only=False``: channel ``i`` to endpoint ``i mod n``; a follower
    forwards writes to the leader and serves reads itself, linearizable ones via ReadIndex)."""

    name = "etcd"
    spreads_reads = True

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 10.0,
                 leader_only: bool = True, tls: ClientTLS | None = None) -> None:
        self.endpoints = [e.removeprefix("http://").removeprefix("https://") for e in endpoints]
        self.timeout = timeout
        self.leader_only = leader_only
        # cacert, cert, key (paths): TLS with a client certificate
        self.tls: ClientTLS = tls.copy() if tls else {}
        self._channels: list[Any] = []
        self._kv: list[Any] = []

    async def leader_endpoint(self) -> str:
        """The endpoint whose member id is the leader every answering member names."""

        from dengine.etcd.pb import rpc_pb2 as pb
        from dengine.etcd.pb import rpc_pb2_grpc as pbg

        async def status(ep: str) -> Any:
            async with self._channel(ep, []) as ch:
                return await pbg.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=2.0)

        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            answers = await asyncio.gather(*(status(e) for e in self.endpoints),
                                           return_exceptions=True)
            for ep, st in zip(self.endpoints, answers, strict=True):
                if not isinstance(st, BaseException) and st.leader and \
                        st.header.member_id == st.leader:
                    return ep
            if asyncio.get_running_loop().time() > deadline:
                raise ConnectionError(f"no etcd leader among {', '.join(self.endpoints)}: "
                                      f"{answers}")
            await asyncio.sleep(0.1)

    async def open(self, connections: int, spread: bool = False) -> None:

        from dengine.etcd.pb import rpc_pb2 as pb
        from dengine.etcd.pb import rpc_pb2_grpc as pbg

        await self.close()
        self._put_req, self._range_req = pb.PutRequest, pb.RangeRequest
        eps = [await self.leader_endpoint()] if self.leader_only and not spread \
            else self.endpoints
        opts = [("grpc.max_receive_message_length", 64 * MiB)]
        for i in range(max(1, connections)):
            # A distinct channel argument keeps grpc from sharing one subchannel among them.
            ch = self._channel(eps[i % len(eps)], [*opts, ("dengine.bench.channel", i)])
            self._channels.append(ch)
            self._kv.append(pbg.KVStub(ch))

    def _channel(self, endpoint: str, options: list[Any]) -> Any:
        import grpc

        if not self.tls:
            return grpc.aio.insecure_channel(endpoint, options=options)
        from dengine.security.tls import client_credentials

        creds = client_credentials(self.tls.get("cacert"), self.tls.get("cert"),
                                   self.tls.get("key"))
        return grpc.aio.secure_channel(endpoint, creds, options=options)

    async def put(self, slot: int, key: bytes, value: bytes) -> None:
        await self._kv[slot % len(self._kv)].Put(self._put_req(key=key, value=value),
                                                 timeout=self.timeout)

    async def get(self, slot: int, key: bytes, consistency: str) -> bool:
        req = self._range_req(key=key, serializable=consistency == "serializable")
        resp = await self._kv[slot % len(self._kv)].Range(req, timeout=self.timeout)
        return len(resp.kvs) > 0

    async def close(self) -> None:
        chans, self._channels, self._kv = self._channels, [], []
        for ch in chans:
            await ch.close()


def make_target(kind: str, endpoints: Sequence[str], timeout: float = 10.0,
                tls: ClientTLS | None = None) -> Any:
    """A target by name; ``tls`` (cacert, cert, key) reaches a cluster that speaks TLS."""
    if kind == "dengine":
        return DengineTarget(endpoints, timeout=timeout, tls=tls)
    if kind == "etcd":
        return EtcdTarget(endpoints, timeout=timeout, tls=tls)
    if kind in ("dengine-unary", "etcd-go") and tls:
        raise ValueError(f"the {kind} target dials without TLS; use dengine or etcd")
    if kind == "dengine-unary":
        from dengine.bench.unary import UnaryTarget

        return UnaryTarget(endpoints, timeout=timeout)
    if kind == "etcd-go":
        from dengine.bench.etcd_go import EtcdGoTarget

        return EtcdGoTarget(endpoints, timeout=timeout)
    raise ValueError(f"unknown target {kind!r} (dengine, dengine-unary, etcd or etcd-go)")
