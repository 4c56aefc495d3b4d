"""The client fills one batch stream before spilling to its other channels (what makes
``write-concurrent`` with 10 connections batch like one connection)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from dengine.client import Client
from dengine.client._pool import SPILL_IN_FLIGHT
from dengine.config import build_config
from dengine.node import NodeBuilder
from dengine.statemachine import open_kv
from dengine.storage.memory import MemoryLogStore


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_concurrent_callers_share_one_stream_of_a_pool(tmp_path: Path) -> None:
    addr = f"127.0.0.1:{_free_port()}"

    async def main() -> tuple[int, int, int, list[int]]:
        cfg = build_config({
            "cluster": {"cluster_id": "p", "node_id": 1, "initial_members": {1: addr},
                        "data_dir": str(tmp_path / "n1"), "listen_addr": addr},
            "raft": {"tick_ms": 10, "heartbeat_ms": 50, "election_ms": 300, "lease_ms": 200},
            "storage": {"engine": "memory"}, "statemachine": {"engine": "memory"},
        })
        node = NodeBuilder(cfg).log_store(MemoryLogStore()).state_machine(
            open_kv("memory")).build()
        await node.start()
        try:
            async with Client([addr], pool_size=10, timeout=10) as c:
                await c.put(b"warm", b"up")
                revs = await asyncio.gather(*(c.put(b"k%d" % i, b"v") for i in range(100)))
                got = await asyncio.gather(*(c.get(b"k%d" % i) for i in range(100)))
                loads = [ch.stream_load() for ch in c._conn(addr).channels]
                return (c.stats.streams_opened, c.stats.messages_sent, c.stats.requests_sent,
                        [len(set(revs)), sum(kv is not None for kv in got), *loads])
        finally:
            await node.stop()

    opened, messages, requests, (distinct, found, *loads) = asyncio.run(main())
    assert (distinct, found) == (100, 100)
    assert requests == 201
    assert opened == 1  # 100 callers stay below SPILL_IN_FLIGHT: one stream carries them
    assert messages < 100  # coalesced: many requests per message
    assert loads[0] == 0 and loads[1:] == [0] * 9  # idle now; the other nine never opened
    assert SPILL_IN_FLIGHT > 100
