"""Optional tracing: a no-op until an OpenTelemetry SDK is installed; then one span per request
with index and term. The recording case runs in a child process, since an OpenTelemetry tracer
provider is process-global and must not leak into other tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import asyncio, json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from dengine.config import build_config
from dengine.node import EmbeddedClient, NodeBuilder
from dengine.statemachine import open_kv
from dengine.storage.memory import MemoryLogStore

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

async def main():
    cfg = build_config({
        "cluster": {"cluster_id": "t", "node_id": 1, "initial_members": {1: "127.0.0.1:9"},
                    "data_dir": sys.argv[1], "listen_addr": "127.0.0.1:9"},
        "raft": {"tick_ms": 10, "heartbeat_ms": 50, "election_ms": 300, "lease_ms": 200},
        "storage": {"engine": "memory"}, "statemachine": {"engine": "memory"}})
    from dengine.transport import MemoryNetwork
    node = (NodeBuilder(cfg).log_store(MemoryLogStore()).state_machine(open_kv("memory"))
            .memory_transport(MemoryNetwork("t")).build())
    await node.start()
    try:
        while not node.is_leader:
            await asyncio.sleep(0.01)
        c = EmbeddedClient(node)
        rev = await c.put("k", "v")
        await c.get("k")
        await c.get("missing")
        return rev, node.core.term
    finally:
        await node.stop()

rev, term = asyncio.run(main())
spans = [{"name": s.name, "attrs": dict(s.attributes), "ok": s.status.is_ok}
         for s in exporter.get_finished_spans()]
print(json.dumps({"rev": rev, "term": term, "spans": spans}))
"""


def test_spans_per_request_with_index_and_term(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DENGINE_")
           or k == "DENGINE_PURE_PYTHON"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "n1")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    spans = out["spans"]
    assert [s["name"] for s in spans] == ["dengine.register_session", "dengine.put",
                                          "dengine.get", "dengine.get"]
    spans = spans[1:]  # the put's session was registered first, a request of its own
    put = spans[0]["attrs"]
    assert put["dengine.index"] == out["rev"] and put["dengine.term"] == out["term"]
    assert put["dengine.node_id"] == 1 and put["dengine.status"] == "OK"
    assert all(s["attrs"]["dengine.status"] == "OK" and s["ok"] for s in spans)
    assert "dengine.index" not in spans[1]["attrs"]


def test_no_provider_means_no_span() -> None:
    trace = pytest.importorskip("opentelemetry.trace")
    from dengine.observability.tracing import request_tracing

    class FakeNode:
        node_id = 1

    tracing = request_tracing(FakeNode())
    assert tracing is not None
    # Nothing in this process installs an SDK provider (the recording test runs in a child).
    assert isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider,
                                                    trace.NoOpTracerProvider))
    assert tracing.start("put") is None
