"""Embedded mode with the default parts: a one-node cluster inside this asyncio program."""

from __future__ import annotations

import socket

from dengine.config import build_config
from dengine.node import EmbeddedClient, NodeBuilder


def _config(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        addr = f"127.0.0.1:{s.getsockname()[1]}"
    return build_config({
        "cluster": {"node_id": 1, "initial_members": {1: addr},
                    "data_dir": str(tmp_path / "data")},
        "raft": {"tick_ms": 5, "heartbeat_ms": 20, "election_ms": 100, "lease_ms": 60},
    })


def test_default_parts_embedded_node_keeps_its_data_across_a_restart(run, tmp_path):
    config = _config(tmp_path)

    async def first():
        node = NodeBuilder(config).serve_clients(False).build()
        assert type(node.log_store).__name__ == "RocksLogStore"
        assert type(node.state_machine.engine).__name__ == "RocksEngine"
        await node.start()
        assert type(node.transport).__name__ == "GrpcTransport"
        assert await node.wait_for_leader() == 1
        try:
            async with EmbeddedClient(node) as c:
                await c.put("greeting", "hello")
                assert (await c.get("greeting")).value == b"hello"
                assert (await c.status()).role == "leader"
                return (await c.get("greeting")).revision
        finally:
            await node.stop()

    async def second():
        node = NodeBuilder(config).serve_clients(False).build()
        await node.start()
        try:
            await node.wait_for_leader()
            c = EmbeddedClient(node)
            kv = await c.get("greeting", consistency="serializable")
            assert kv is not None and kv.value == b"hello"
            return kv.revision
        finally:
            await node.stop()

    rev = run(first)
    assert run(second) == rev
