"""Clusters a benchmark starts for itself: dengine node processes, one node in-process.

:func:`dengine_processes` starts a 3-node ``dengine serve`` cluster (RocksDB, fsync on: the
defaults) through :class:`~dengine.local.cluster.LocalCluster`; :func:`embedded_cluster` starts
nodes 2..n as processes and node 1 inside this process, then hands node 1 the leadership so its
in-process client can serve every workload. Both stop everything they started on the way out,
also on an error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from dengine.client.types import ClientTLS
from dengine.local.cluster import LocalCluster, free_ports

__all__ = ["dengine_processes", "embedded_cluster", "wait_dengine_leader"]


async def wait_dengine_leader(endpoints: list[str], timeout: float = 30.0) -> Any:
    """The leader's NodeStatus once a leader answers."""
    from dengine.client import Client

    async with Client(endpoints, timeout=timeout) as client:
        return await client.status(timeout=timeout)


@contextlib.asynccontextmanager
async def dengine_processes(root: str | Path, n: int = 3,
                            base: Mapping[str, Mapping[str, Any]] | None = None,
                            etcd_api: bool = False) -> AsyncIterator[LocalCluster]:
    """A running ``n``-node cluster of ``dengine serve`` processes under ``root`` (serving
    etcd's API too with ``etcd_api``: ``lc.etcd_endpoints``)."""
    ports = free_ports(2 * n if etcd_api else n)
    lc = LocalCluster.create(root, n, ports=ports[:n], base=base, cluster_id="dengine-bench",
                             etcd_ports=ports[n:] if etcd_api else None)
    try:
        lc.start()
        async with _client(lc.endpoints, lc.client_tls) as client:
            await lc.wait_leader(client, timeout=60)
        yield lc
    finally:
        await asyncio.to_thread(lc.stop, 10.0)


@contextlib.asynccontextmanager
async def _client(endpoints: list[str], tls: ClientTLS | None = None
                  ) -> AsyncIterator[Any]:
    from dengine.client import Client

    async with Client(endpoints, timeout=2.0, **(tls or {})) as client:
        yield client


@contextlib.asynccontextmanager
async def embedded_cluster(root: str | Path, n: int = 3,
                           base: Mapping[str, Mapping[str, Any]] | None = None
                           ) -> AsyncIterator[Any]:
    """Node 1 in this process (yielded, leading), nodes 2..n as ``dengine serve`` processes."""
    from dengine.config import load_config
    from dengine.node import NodeBuilder

    lc = LocalCluster.create(root, n, ports=free_ports(n), base=base, cluster_id="dengine-bench")
    node = None
    try:
        lc.start([i for i in lc.nodes if i != 1])
        node = NodeBuilder(load_config(lc.nodes[1].config_path)).build()
        await node.start()
        async with _client(lc.endpoints) as client:
            deadline = asyncio.get_running_loop().time() + 60
            while node.leader_id is None:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError("no leader elected within 60s")
                await asyncio.sleep(0.05)
            if not node.is_leader:
                await client.transfer_leader(1, timeout=30)
            while not node.is_leader:
                await asyncio.sleep(0.05)
        yield node
    finally:
        if node is not None:
            await node.stop("the benchmark is over")
        await asyncio.to_thread(lc.stop, 10.0)
