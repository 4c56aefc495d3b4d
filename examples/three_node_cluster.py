"""Three dengine nodes inside one asyncio program: replication, redirects, failover, catch-up.

Each node is a full Raft member with its own RocksDB data directory and its own gRPC port on
loopback; they replicate to each other exactly as separate processes would. The program uses
the embedded client of whichever node it chooses, so it sees what a client of that node sees:
a follower refuses a write and names the leader (NotLeader).

Run it:  python examples/three_node_cluster.py
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from pathlib import Path

from dengine.config import Config, build_config
from dengine.errors import NotLeader
from dengine.node import EmbeddedClient, Node, NodeBuilder
from dengine.observability.logging import configure_logging


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def node_config(node_id: int, members: dict[int, str], root: Path) -> Config:
    """Only the node id and data directory differ between the three nodes."""
    return build_config({
        "cluster": {"cluster_id": "example", "node_id": node_id, "initial_members": members,
                    "data_dir": str(root / f"node-{node_id}")},
        "raft": {"heartbeat_ms": 50, "election_ms": 400, "lease_ms": 300},
    })


async def wait_for_leader(nodes: dict[int, Node]) -> Node:
    """The running node that leads, once there is one."""
    while True:
        for node in nodes.values():
            if node.running and node.is_leader:
                return node
        await asyncio.sleep(0.02)


async def wait_applied(nodes: list[Node], index: int) -> None:
    while any(n.status()["applied_index"] < index for n in nodes):
        await asyncio.sleep(0.02)


async def main() -> None:
    configure_logging("warning")
    with tempfile.TemporaryDirectory(prefix="dengine-three-") as tmp:
        root = Path(tmp)
        members = {i: f"127.0.0.1:{port}" for i, port in enumerate(free_ports(3), start=1)}
        configs = {i: node_config(i, members, root) for i in members}
        nodes = {i: NodeBuilder(cfg).build() for i, cfg in configs.items()}
        for node in nodes.values():
            await node.start()

        leader = await async_timeout(wait_for_leader(nodes))
        print(f"three nodes started; node {leader.node_id} was elected leader "
              f"(term {leader.status()['term']})")

        # Writes go to the leader, which replicates them to a majority before answering.
        db = EmbeddedClient(leader)
        last = 0
        for i in range(10):
            last = await db.put(f"city/{i:02d}", f"population {1000 * (i + 1)}")
        print(f"wrote 10 keys through node {leader.node_id}; the last one at log index {last}")

        # A follower refuses writes and says who leads; serializable reads it serves itself.
        follower = next(n for n in nodes.values() if n is not leader)
        try:
            await EmbeddedClient(follower).put("city/99", "nope")
        except NotLeader as e:
            print(f"node {follower.node_id} refused a write: {e}")
        await async_timeout(wait_applied(list(nodes.values()), last))
        kv = await EmbeddedClient(follower).get("city/03", consistency="serializable")
        print(f"node {follower.node_id} (a follower) reads city/03 locally: {kv.value.decode()}")

        # Stop the leader: the two others elect a new one and still hold every key.
        old = leader.node_id
        await leader.stop()
        print(f"stopped the leader, node {old}")
        leader = await async_timeout(wait_for_leader(nodes))
        page = await EmbeddedClient(leader).scan(prefix="city/")
        print(f"node {leader.node_id} is the new leader (term {leader.status()['term']}) and "
              f"reads all {len(page.kvs)} keys")
        assert len(page.kvs) == 10
        last = await EmbeddedClient(leader).put("city/10", "population 11000")

        # Restart the old leader on its data directory: it rejoins as a follower, catches up.
        nodes[old] = NodeBuilder(configs[old]).build()
        await nodes[old].start()
        await async_timeout(wait_applied([nodes[old]], last))
        kv = await EmbeddedClient(nodes[old]).get("city/10", consistency="serializable")
        print(f"node {old} restarted and caught up to index {last}: city/10 = {kv.value.decode()}")
        assert kv is not None

        for node in nodes.values():
            await node.stop()
        print("all nodes stopped")


async def async_timeout(awaitable, seconds: float = 30):
    """Any wait in this example gives up after ``seconds``, rather than hang."""
    return await asyncio.wait_for(awaitable, seconds)


if __name__ == "__main__":
    asyncio.run(main())
