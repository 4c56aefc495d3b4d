"""End to end: three nodes in one process, a client writing and reading through the leader.

The whole path a request takes (embedded client, request handler, proposal batch, Raft core,
Ready, log store, transport to the followers and back, apply, future resolved) on two
transports: the in-memory one (``memory``: no sockets, so the time is dengine's own) and real
gRPC on loopback (``grpc``: the production peer transport). Storage is in memory, so disk noise
stays out; ``asv_bench/benchmarks/storage.py`` measures the disk. Each timed call runs ``OPS``
operations, sequentially or from ``CONCURRENCY`` concurrent callers.

The cluster runs on its own event loop in a background thread for the whole benchmark (a loop
that stopped between timed calls would let election timers fire); a timed call hands the loop
a coroutine and waits for it.

``python asv_bench/benchmarks/end_to_end.py`` prints operations per second for each case.
"""

from __future__ import annotations

import asyncio
import importlib
import shutil
import socket
import tempfile
import threading
import time

OPS = 200
CONCURRENCY = 50
VALUE = b"v" * 256
TRANSPORTS = ["memory", "grpc"]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class _Cluster:
    """Three nodes on a background loop; ``run(coro)`` runs a coroutine there."""

    def __init__(self, transport: str) -> None:
        from dengine.observability.logging import configure_logging

        configure_logging("error")
        self.tmp = tempfile.mkdtemp(prefix="dengine-asv-")
        self.loop = _new_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nodes = self.run(self._start(transport), timeout=60)
        self.leader = self.run(self._leader(), timeout=30)
        from dengine.node import EmbeddedClient

        # The first read imports the client's result types: do it here, not in a timed call
        # (in a fresh process, as asv --quick runs, it cost more than the 200 reads).
        importlib.import_module("dengine.client.types")
        self.clients = [EmbeddedClient(self.leader) for _ in range(CONCURRENCY)]

    def run(self, coro, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self, transport: str):
        from dengine.config import build_config
        from dengine.node import NodeBuilder
        from dengine.statemachine import open_kv
        from dengine.storage.memory import MemoryLogStore
        from dengine.transport import MemoryNetwork

        net = MemoryNetwork("asv") if transport == "memory" else None
        ports = _free_ports(3) if transport == "grpc" else [19001, 19002, 19003]
        members = {i: f"127.0.0.1:{p}" for i, p in enumerate(ports, start=1)}
        nodes = []
        for i in members:
            cfg = build_config({
                "cluster": {"cluster_id": "asv", "node_id": i, "initial_members": members,
                            "data_dir": f"{self.tmp}/n{i}", "listen_addr": members[i]},
                "raft": {"tick_ms": 10, "heartbeat_ms": 50, "election_ms": 500,
                         "lease_ms": 400},
                "storage": {"engine": "memory"}, "statemachine": {"engine": "memory"},
            })
            b = NodeBuilder(cfg).seed(i).log_store(MemoryLogStore()).state_machine(
                open_kv("memory"))
            if net is not None:
                b.memory_transport(net)
            node = b.build()
            await node.start()
            nodes.append(node)
        return nodes

    async def _leader(self):
        while True:
            for n in self.nodes:
                if n.is_leader:
                    return n
            await asyncio.sleep(0.01)

    def close(self) -> None:
        async def stop() -> None:
            for n in self.nodes:
                await n.stop("benchmark over")
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:  # e.g. grpc's stream feeders: end them before the loop stops
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            self.run(stop(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


def _new_loop():
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


async def _sequential_puts(c: _Cluster) -> None:
    client = c.clients[0]
    for i in range(OPS):
        await client.put(b"%08d" % i, VALUE)


async def _concurrent(c: _Cluster, read: str | None) -> None:
    per = OPS // CONCURRENCY

    async def one(w: int) -> None:
        client = c.clients[w]
        for i in range(per):
            key = b"%08d" % (w * per + i)
            if read is None:
                await client.put(key, VALUE)
            else:
                await client.get(key, consistency=read)

    await asyncio.gather(*(one(w) for w in range(CONCURRENCY)))


class EndToEnd:
    """Operations per timed call: ``OPS``; compare transports within one run."""

    params = TRANSPORTS
    param_names = ["transport"]
    timeout = 180
    number = 1
    repeat = (1, 5, 20.0)

    def setup(self, transport: str) -> None:
        self.c = _Cluster(transport)
        self.c.run(_concurrent(self.c, None))  # every key the reads ask for exists

    def teardown(self, transport: str) -> None:
        self.c.close()

    def time_put_sequential(self, transport: str) -> None:
        self.c.run(_sequential_puts(self.c))

    def time_put_concurrent(self, transport: str) -> None:
        self.c.run(_concurrent(self.c, None))

    def time_get_linearizable_concurrent(self, transport: str) -> None:
        self.c.run(_concurrent(self.c, "linearizable"))

    def time_get_lease_concurrent(self, transport: str) -> None:
        self.c.run(_concurrent(self.c, "lease"))


def main() -> None:
    cases = [("put_sequential", lambda c: _sequential_puts(c)),
             ("put_concurrent", lambda c: _concurrent(c, None)),
             ("get_linearizable_concurrent", lambda c: _concurrent(c, "linearizable")),
             ("get_lease_concurrent", lambda c: _concurrent(c, "lease"))]
    for transport in TRANSPORTS:
        c = _Cluster(transport)
        try:
            c.run(_concurrent(c, None))
            for name, make in cases:
                t0 = time.perf_counter()
                for _ in range(5):
                    c.run(make(c))
                rate = 5 * OPS / (time.perf_counter() - t0)
                print(f"{transport:<7} {name:<30} {rate:>9,.0f} ops/s")
        finally:
            c.close()


if __name__ == "__main__":
    main()
