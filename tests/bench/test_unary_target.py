"""The dengine-unary bench target drives a real node through the generated stubs only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from dengine.bench.unary import UnaryCallFailed, UnaryTarget
from dengine.bench.workloads import WORKLOADS, run_workload
from dengine.config import build_config
from dengine.local.cluster import free_ports
from dengine.node import NodeBuilder
from dengine.statemachine import open_kv
from dengine.storage.memory import MemoryLogStore


def test_unary_target_runs_workloads_and_counts_refusals(tmp_path: Path) -> None:
    addr = f"127.0.0.1:{free_ports(1)[0]}"

    async def main() -> tuple[list, str]:
        cfg = build_config({
            "cluster": {"cluster_id": "u", "node_id": 1, "initial_members": {1: addr},
                        "data_dir": str(tmp_path / "n1"), "listen_addr": addr},
            "raft": {"tick_ms": 10, "heartbeat_ms": 50, "election_ms": 300, "lease_ms": 200},
            "storage": {"engine": "memory"}, "statemachine": {"engine": "memory"},
        })
        node = NodeBuilder(cfg).log_store(MemoryLogStore()).state_machine(
            open_kv("memory")).build()
        await node.start()
        try:
            t = UnaryTarget([f"http://{addr}"], timeout=10)
            out = []
            for name in ("write-concurrent", "read-linearizable", "read-serializable"):
                spec = WORKLOADS[name].with_(ops=60, warmup_ops=5, key_space=12, clients=6,
                                             connections=2)
                await t.open(spec.connections)
                try:
                    out.append(await run_workload(t, spec, progress=False))
                finally:
                    await t.close()
            await t.open(1)
            try:
                # Larger than a proposal batch may be: refused, in the answer or as a status.
                with pytest.raises((UnaryCallFailed, grpc.aio.AioRpcError)) as e:
                    await t.put(0, b"k", b"x" * (2 * cfg.raft.max_batch_bytes))
            finally:
                await t.close()
            return out, str(e.value)
        finally:
            await node.stop()

    res, refused = asyncio.run(main())
    assert [(s.target, s.ops, s.errors, s.misses) for s in res] == \
        [("dengine-unary", 60, 0, 0)] * 3
    assert refused
