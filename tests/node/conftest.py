"""Fixtures for node tests: a loop runner (asyncio and uvloop, failing on unhandled loop
exceptions) and an in-process cluster of nodes on the in-memory transport."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog

from dengine.config import build_config
from dengine.node import EmbeddedClient, Node, NodeBuilder
from dengine.statemachine import open_kv
from dengine.storage.memory import MemoryLogStore
from dengine.testing.loops import LOOP_KINDS, run_checked
from dengine.transport import MemoryNetwork

#: Fast timings: elections in a few hundred milliseconds.
FAST_RAFT = {"tick_ms": 5, "heartbeat_ms": 20, "election_ms": 150, "lease_ms": 100}

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@pytest.fixture(params=LOOP_KINDS)
def run(request) -> Callable[..., Any]:
    """``run(coro_fn, *args, timeout=30)`` on a fresh loop of the parametrized kind; fails
    the test on any unhandled event-loop exception."""

    def runner(coro_fn: Callable[..., Awaitable[Any]], *args: Any, timeout: float = 30) -> Any:
        return run_checked(request.param, coro_fn, *args, timeout=timeout)

    return runner


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


#: The peer transport of the gRPC clusters here; DENGINE_NETWORK__PEER_TRANSPORT=tcp runs these
#: tests over the tcp one (as it does ``dengine serve``, hence the integration tests).
PEER_TRANSPORT = os.environ.get("DENGINE_NETWORK__PEER_TRANSPORT", "grpc")


class Cluster:
    """Nodes of one cluster in this process, on a MemoryNetwork (or gRPC on loopback)."""

    def __init__(self, tmp_path, n: int = 3, *, storage: str = "memory", grpc: bool = False,
                 cluster_id: str = "test", peer_transport: str = PEER_TRANSPORT,
                 **raft: Any) -> None:
        self.tmp = tmp_path
        self.peer_transport = peer_transport
        self.storage = storage
        self.grpc = grpc
        self.cluster_id = cluster_id
        self.raft = {**FAST_RAFT, **raft}
        self.net = MemoryNetwork(cluster_id)
        ports = free_ports(n + 2) if grpc else [9000 + i for i in range(1, n + 3)]
        self.addresses = {i: f"127.0.0.1:{ports[i - 1]}" for i in range(1, n + 3)}
        self.initial = {i: self.addresses[i] for i in range(1, n + 1)}
        self.nodes: dict[int, Node] = {}
        self._memory: dict[int, tuple[Any, Any]] = {}

    def config(self, node_id: int, *, join: str = "", **sections: Any) -> Any:
        layers = {
            "cluster": {"cluster_id": self.cluster_id, "node_id": node_id,
                        "initial_members": self.initial, "data_dir": str(self.tmp / f"n{node_id}"),
                        "listen_addr": self.addresses[node_id], "join": join},
            "raft": dict(self.raft),
            "network": {"fault_injection": True, "backoff_initial_ms": 20,
                        "backoff_max_ms": 200, "peer_transport": self.peer_transport},
            "storage": {"engine": self.storage},
            "statemachine": {"engine": "memory" if self.storage == "memory" else "rocksdb"},
        }
        for name, values in sections.items():
            layers.setdefault(name, {}).update(values)
        return build_config(layers)

    def build(self, node_id: int, **kw: Any) -> Node:
        b = NodeBuilder(self.config(node_id, **kw)).seed(node_id)
        if self.storage == "memory":
            # Memory stores outlive a node's stop: a restart finds what was "persisted".
            if node_id not in self._memory:
                self._memory[node_id] = (MemoryLogStore(), open_kv("memory"))
            store, sm = self._memory[node_id]
            b.log_store(store).state_machine(sm)
        if not self.grpc:
            b.memory_transport(self.net)
        return b.build()

    async def start_node(self, node_id: int, **kw: Any) -> Node:
        node = self.build(node_id, **kw)
        await node.start()
        self.nodes[node_id] = node
        return node

    async def start(self) -> Cluster:
        for i in self.initial:
            await self.start_node(i)
        return self

    async def leader(self, timeout: float = 10.0, exclude: tuple[int, ...] = ()) -> Node:
        async with asyncio.timeout(timeout):
            while True:
                for n in self.nodes.values():
                    if n.running and n.is_leader and n.node_id not in exclude:
                        return n
                await asyncio.sleep(0.01)

    def followers(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.running and not n.is_leader]

    def client(self, node: Node | int) -> EmbeddedClient:
        return EmbeddedClient(self.nodes[node] if isinstance(node, int) else node)

    async def wait_applied(self, index: int, nodes: list[Node] | None = None,
                           timeout: float = 10.0) -> None:
        nodes = nodes if nodes is not None else [n for n in self.nodes.values() if n.running]
        async with asyncio.timeout(timeout):
            while any(n.state_machine.applied_index() < index for n in nodes):
                await asyncio.sleep(0.01)

    async def stop_node(self, node_id: int) -> None:
        await self.nodes[node_id].stop("test stops it")

    async def close(self) -> None:
        for n in self.nodes.values():
            await n.stop("test over")


@pytest.fixture
def cluster_factory(tmp_path):
    made: list[Cluster] = []

    def make(n: int = 3, **kw: Any) -> Cluster:
        c = Cluster(tmp_path, n, **kw)
        made.append(c)
        return c

    return make
