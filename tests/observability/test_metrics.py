"""Prometheus metrics: /metrics answers on a running node and its series move with writes;
nodes in one process keep separate registries."""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from dengine.config import build_config
from dengine.node import EmbeddedClient, Node, NodeBuilder
from dengine.observability.metrics import NodeMetrics
from dengine.statemachine import open_kv
from dengine.storage.memory import MemoryLogStore
from dengine.transport import MemoryNetwork

FAST_RAFT = {"tick_ms": 10, "heartbeat_ms": 50, "election_ms": 300, "lease_ms": 200}


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` in an exposition text (labels must match exactly the
    given subset); 0 when absent."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def build(tmp_path: Path, node_id: int, members: dict[int, str], net: Any = None,
          metrics_port: int = 0) -> Node:
    cfg = build_config({
        "cluster": {"cluster_id": "m", "node_id": node_id, "initial_members": members,
                    "data_dir": str(tmp_path / f"n{node_id}"), "listen_addr": members[node_id]},
        "raft": FAST_RAFT,
        "storage": {"engine": "memory"}, "statemachine": {"engine": "memory"},
        "observability": {"metrics_port": metrics_port},
    })
    b = NodeBuilder(cfg).seed(node_id).log_store(MemoryLogStore()).state_machine(
        open_kv("memory"))
    if net is not None:
        b.memory_transport(net)
    return b.build()


async def wait_leader(nodes: list[Node]) -> Node:
    async with asyncio.timeout(10):
        while True:
            for n in nodes:
                if n.is_leader:
                    return n
            await asyncio.sleep(0.01)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        return r.read().decode()


def test_metrics_endpoint_moves_with_writes(tmp_path: Path) -> None:
    port = free_port()

    async def main() -> tuple[str, str, str]:
        node = build(tmp_path, 1, {1: f"127.0.0.1:{free_port()}"}, metrics_port=port)
        await node.start()
        try:
            await wait_leader([node])
            before = await asyncio.to_thread(scrape, port)
            client = EmbeddedClient(node)
            for i in range(5):
                await client.put(f"k{i}", "v")
            await client.get("k1", consistency="linearizable")
            await client.get("k1", consistency="serializable")
            after = await asyncio.to_thread(scrape, port)
        finally:
            await node.stop()
        return before, after, node.metrics.text()

    before, after, _ = asyncio.run(main())
    assert value(after, "dengine_role", node_id="1", role="leader") == 1
    assert value(after, "dengine_term", node_id="1") >= 1
    assert value(after, "dengine_leader_id") == 1
    for name, labels in [("dengine_proposals_total", {"outcome": "proposed"}),
                         ("dengine_proposals_total", {"outcome": "committed"}),
                         ("dengine_proposal_commit_seconds_count", {}),
                         ("dengine_commit_apply_seconds_count", {}),
                         ("dengine_fsync_seconds_count", {}),
                         ("dengine_persist_batch_entries_count", {})]:
        assert value(after, name, **labels) - value(before, name, **labels) >= 1, name
    # five puts and the registration of the client's session
    assert value(after, "dengine_proposals_total", outcome="committed") - \
        value(before, "dengine_proposals_total", outcome="committed") == 6
    assert value(after, "dengine_commit_index") - value(before, "dengine_commit_index") == 6
    assert value(after, "dengine_applied_index") == value(after, "dengine_commit_index")
    assert value(after, "dengine_client_requests_total", method="put", status="OK") == 5
    assert value(after, "dengine_client_requests_total", method="get", status="OK") == 2
    assert value(after, "dengine_read_index_requests_total") == 1
    assert value(after, "dengine_leader_changes_total") == 1
    assert value(after, "dengine_elections_total") >= 1
    # The server is gone with the node.
    with pytest.raises(OSError):
        scrape(port)


def test_nodes_in_one_process_have_their_own_series(tmp_path: Path) -> None:
    async def main() -> dict[int, str]:
        net = MemoryNetwork("m")
        members = {i: f"127.0.0.1:{9100 + i}" for i in (1, 2, 3)}
        nodes = [build(tmp_path, i, members, net) for i in members]
        for n in nodes:
            await n.start()
        try:
            lead = await wait_leader(nodes)
            c = EmbeddedClient(lead)
            for i in range(3):
                await c.put(f"k{i}", "v")
            async with asyncio.timeout(5):
                while any(n.state_machine.applied_index() < lead.core.commit_index
                          for n in nodes):
                    await asyncio.sleep(0.01)
            return {n.node_id: n.metrics.text() for n in nodes} | {0: str(lead.node_id)}
        finally:
            for n in nodes:
                await n.stop()

    texts = asyncio.run(main())
    lead = int(texts.pop(0))
    regs = set()
    for node_id, text in texts.items():
        assert value(text, "dengine_term", node_id=str(node_id)) >= 1
        assert 'node_id="' + str(node_id) + '"' in text
        others = [i for i in texts if i != node_id]
        assert all(f'node_id="{i}"' not in text for i in others)
        regs.add(node_id)
        if node_id == lead:
            assert value(text, "dengine_messages_sent_total", type="append") >= 3
            # the three puts and the registration of the client's session
            assert value(text, "dengine_proposals_total", outcome="committed") == 4
        else:
            assert value(text, "dengine_messages_received_total", type="append",
                         peer=str(lead)) >= 1
            assert value(text, "dengine_proposals_total", outcome="proposed") == 0
            assert value(text, "dengine_role", role="follower") == 1


def test_registries_are_not_shared() -> None:
    a, b = NodeMetrics(1), NodeMetrics(2)
    a.elections.inc()
    assert a.registry is not b.registry
    assert value(a.text(), "dengine_elections_total") == 1
    assert value(b.text(), "dengine_elections_total") == 0
