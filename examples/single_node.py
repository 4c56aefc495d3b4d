"""One dengine node inside your own asyncio program.

The node keeps its Raft log and its key-value state in RocksDB under a data directory, talks
gRPC on a loopback port (so `dengine get --endpoints HOST:PORT KEY` would reach it too), and
is used here through the embedded client, which calls the node in-process with no network hop.
A one-node cluster is its own majority: every write is committed as soon as it is on disk.

The second half stops the node and starts a new one on the same directory: the data is still
there, because a write is acknowledged only once it is durable.

Run it:  python examples/single_node.py
"""

from __future__ import annotations

import asyncio
import socket
import tempfile

from dengine.client import Client, Put
from dengine.config import build_config
from dengine.node import EmbeddedClient, Node, NodeBuilder
from dengine.observability.logging import configure_logging


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_node(config) -> Node:
    node = NodeBuilder(config).build()
    await node.start()
    while not node.is_leader:  # one election timeout, then it elects itself
        await asyncio.sleep(0.02)
    return node


async def main() -> None:
    configure_logging("warning")  # the node logs through structlog; info shows every election
    with tempfile.TemporaryDirectory(prefix="dengine-single-") as data_dir:
        address = f"127.0.0.1:{free_port()}"
        config = build_config({
            "cluster": {"node_id": 1, "initial_members": {1: address}, "data_dir": data_dir},
            "raft": {"heartbeat_ms": 50, "election_ms": 300, "lease_ms": 200},
        })

        node = await start_node(config)
        print(f"node 1 leads its one-node cluster at {address}")
        db = EmbeddedClient(node)

        revision = await db.put("greeting", "hello")
        print(f"put greeting=hello            -> revision {revision}")
        kv = await db.get("greeting")
        print(f"get greeting                  -> {kv.value.decode()} (version {kv.version})")

        cas = await db.cas("greeting", expected_value="hello", new_value="hello, raft")
        print(f"compare-and-set hello -> 'hello, raft' -> succeeded={cas.succeeded}")

        # An atomic batch: all three keys are written by one log entry, or none is.
        await db.batch([Put("fruit/apple", "3"), Put("fruit/pear", "5"), Put("fruit/plum", "0")])
        await db.delete("fruit/plum")
        page = await db.scan(prefix="fruit/")
        print("scan fruit/                   -> "
              + ", ".join(f"{kv.key.decode()}={kv.value.decode()}" for kv in page.kvs))

        # The same node over the network, as any other program would reach it.
        async with Client([address]) as client:
            value = await client.get_value("greeting")
            print(f"network client: get greeting  -> {value.decode()}")

        await node.stop()
        print("node stopped; starting a new one on the same data directory")

        node = await start_node(config)
        db = EmbeddedClient(node)
        kv = await db.get("greeting")
        page = await db.scan(prefix="fruit/")
        print(f"after the restart: greeting={kv.value.decode()}, "
              f"{len(page.kvs)} fruit keys, applied index {node.status()['applied_index']}")
        assert kv.value == b"hello, raft" and len(page.kvs) == 2
        await node.stop()

if __name__ == "__main__":
    asyncio.run(main())
