"""The ``-spread`` read workloads: every member serves reads (counted by the members
themselves), the leader-only ones leave the followers idle, and the report gives spread /
leader-only per target."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from dengine.bench.compare import render_report
from dengine.bench.runner import run_all
from dengine.bench.spread import goal_line, report_lines, spread_ratios
from dengine.bench.stats import Summary
from dengine.bench.workloads import WORKLOADS, leader_only_of
from dengine.config import build_config
from dengine.local.cluster import free_ports
from dengine.node import NodeBuilder
from dengine.statemachine import open_kv
from dengine.storage.memory import MemoryLogStore

PAIRS = (("read-serializable", "read-serializable-spread"),
         ("read-linearizable", "read-linearizable-spread"))
SMALL = {"ops": 240, "warmup_ops": 0, "key_space": 20, "clients": 12, "connections": 3}


def test_spread_workloads_are_their_leader_only_ones_spread() -> None:
    for base, spread in PAIRS:
        assert leader_only_of(spread) == base and leader_only_of(base) is None
        a, b = WORKLOADS[base], WORKLOADS[spread]
        assert b.spread and not a.spread
        assert (a.clients, a.connections, a.consistency, a.read_ratio) == \
            (b.clients, b.connections, b.consistency, b.read_ratio)


def _gets(node: Any) -> float:
    """Reads this node answered (its own dengine_client_requests counter)."""
    v = node.metrics.registry.get_sample_value(
        "dengine_client_requests_total", {"method": "get", "status": "OK"})
    return v or 0.0


def test_spread_reads_reach_every_dengine_member(tmp_path: Path) -> None:
    """Against 3 in-process members: the leader-only rows are served by the leader alone, the
    spread rows by all three, through dengine's client (spread_reads) and plain unary calls."""
    from dengine.bench.targets import DengineTarget
    from dengine.bench.unary import UnaryTarget

    addrs = {i: f"127.0.0.1:{p}" for i, p in enumerate(free_ports(3), 1)}

    async def main() -> list[tuple[str, str, list[float], Summary]]:
        nodes = []
        for i, addr in addrs.items():
            cfg = build_config({
                "cluster": {"cluster_id": "s", "node_id": i, "initial_members": addrs,
                            "data_dir": str(tmp_path / f"n{i}"), "listen_addr": addr},
                "raft": {"tick_ms": 10, "heartbeat_ms": 50, "election_ms": 300,
                         "lease_ms": 200},
                "storage": {"engine": "memory"}, "statemachine": {"engine": "memory"},
            })
            nodes.append(NodeBuilder(cfg).log_store(MemoryLogStore()).state_machine(
                open_kv("memory")).build())
        for n in nodes:
            await n.start()
        out = []
        try:
            while not any(n.is_leader for n in nodes):
                await asyncio.sleep(0.02)
            endpoints = list(addrs.values())
            preloaded: set = set()
            pinned = DengineTarget(endpoints, pin_reads=True)
            pinned.name = "dengine-pinned"
            for target in (DengineTarget(endpoints), pinned, UnaryTarget(endpoints)):
                for pair in PAIRS:
                    for name in pair:
                        spec = WORKLOADS[name].with_(**SMALL)
                        before = [_gets(n) for n in nodes]
                        [s] = await run_all(target, [spec], progress=False,
                                            preloaded=preloaded, echo=False)
                        served = [_gets(n) - b for n, b in zip(nodes, before, strict=True)]
                        out.append((target.name, name, served, s))
        finally:
            for n in nodes:
                await n.stop()
        return out

    runs = asyncio.run(main())
    assert len(runs) == 12
    for target, name, served, s in runs:
        assert (s.ops, s.errors, s.misses) == (240, 0, 0), (target, name, s)
        assert sum(served) == 240, (target, name, served)  # no warm-up: the timed reads
        if target.startswith("dengine-p") or target == "dengine":  # the client's own counters
            c = s.extra["client_counters"]
            assert (c["stream_requests"], c["unary_calls"]) == (240, 0), c
            assert 1 <= c["stream_messages"] <= 240
        if WORKLOADS[name].spread:
            assert s.extra.get("spread") is True
            # dengine's client gives each calling task a member in turn (four tasks each), so
            # every member serves a share; a member slowed by a loaded machine serves fewer
            # (44 of 240 seen beside a soak run). Unary calls go where their connection goes.
            assert min(served) >= (30 if target == "dengine" else 1), (target, name, served)
        else:
            assert sorted(served)[:2] == [0.0, 0.0], (target, name, served)


def _etcd_ranges(endpoint: str) -> float:
    """Range calls this etcd member answered OK (its /metrics on the client port)."""
    text = urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("grpc_server_handled_total{") and 'grpc_method="Range"' in line \
                and 'grpc_code="OK"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.skipif(not shutil.which("etcd"),
                    reason="etcd not installed (apt-get install etcd-server)")
def test_spread_reads_reach_every_etcd_member(tmp_path: Path) -> None:
    """etcd's rows: from Python unary calls and from its Go client, the spread rows are
    answered by every member, the leader-only rows by the leader only."""
    from dengine.bench import etcd_go
    from dengine.bench.etcd_cluster import EtcdCluster
    from dengine.bench.targets import EtcdTarget

    ec = EtcdCluster(tmp_path / "etcd", free_ports(6))
    ec.start()
    try:
        async def main() -> list[tuple[str, str, list[float], Summary]]:
            targets: list[Any] = [EtcdTarget(ec.endpoints)]
            if etcd_go.etcd_go_unavailable() is None:
                targets.append(etcd_go.EtcdGoTarget(ec.endpoints))
            await targets[0].leader_endpoint()
            out = []
            for target in targets:
                preloaded: set = set()
                for pair in PAIRS:
                    for name in pair:
                        spec = WORKLOADS[name].with_(**SMALL)
                        before = [_etcd_ranges(e) for e in ec.endpoints]
                        [s] = await run_all(target, [spec], progress=False,
                                            preloaded=preloaded, echo=False)
                        served = [_etcd_ranges(e) - b
                                  for e, b in zip(ec.endpoints, before, strict=True)]
                        out.append((target.name, name, served, s))
            return out

        runs = asyncio.run(main())
    finally:
        ec.stop()
    assert {t for t, *_ in runs} >= {"etcd"}
    for target, name, served, s in runs:
        assert (s.ops, s.errors, s.misses) == (240, 0, 0), (target, name, s)
        if WORKLOADS[name].spread:  # where a connection goes decides, not how fast it is
            assert min(served) >= 1, (target, name, served)
        else:
            assert sorted(served)[:2] == [0.0, 0.0], (target, name, served)


def _s(target: str, wl: str, rnd: int, tput: float, cpu: float = 10.0,
       messages: int = 0) -> Summary:
    extra: dict[str, Any] = {"round": rnd, "cpu_us_per_op": {"servers": cpu}}
    if messages:
        extra["client_counters"] = {"stream_messages": messages, "stream_requests": 100,
                                    "unary_calls": 0}
    return Summary(wl, target, 100, 0, 0, 1.0, tput, 1.0, 1.0, 2.0, 3.0, 4.0, extra)


def test_spread_ratio_is_the_median_of_per_round_ratios_per_target() -> None:
    runs = [
        _s("dengine", "read-serializable", 1, 100), _s("dengine", "read-serializable-spread", 1, 300),
        _s("dengine", "read-serializable", 2, 200), _s("dengine", "read-serializable-spread", 2, 100),
        _s("dengine", "read-serializable", 3, 100), _s("dengine", "read-serializable-spread", 3, 150),
        _s("etcd", "read-serializable", 1, 100), _s("etcd", "read-serializable-spread", 1, 250, 5),
        # dengine-pinned runs the spread rows only, measured against dengine's leader-only row
        _s("dengine-pinned", "read-serializable-spread", 1, 120),
        # a spread run without its leader-only run in the same round gives no ratio
        _s("etcd-go", "read-linearizable-spread", 1, 100),
    ]
    sr = spread_ratios(runs)
    assert set(sr) == {"read-serializable-spread"}
    d = sr["read-serializable-spread"]["dengine"]
    assert d["ratio"] == 1.5 and d["rounds"] == 3  # of 3.0, 0.5, 1.5 (not 183/133)
    assert (d["leader_only_ops_s"], d["spread_ops_s"]) == (100, 150)
    assert sr["read-serializable-spread"]["dengine-pinned"]["ratio"] == 1.2
    e = sr["read-serializable-spread"]["etcd"]
    assert e["ratio"] == 2.5 and e["cpu_ratio"] == 0.5
    table = "\n".join(report_lines(sr))
    assert "| read-serializable-spread | dengine | 100 | 150 | **1.50** |" in table
    assert "| read-serializable-spread | etcd | 100 | 250 | **2.50** |" in table
    rows = [line.split(" | ")[1] for line in table.splitlines() if line.startswith("| read-")]
    assert rows == ["dengine", "dengine-pinned", "etcd"]  # a fixed order, whoever ran first
    assert goal_line(sr) == ["- reads spread over all members scale (3 members serve more "
                             "than 1; spread / leader-only: read-serializable-spread 1.50x): "
                             "met (each benchmark client pinned to one member, dengine-pinned: "
                             "read-serializable-spread 1.20x)"]
    slow = [_s("dengine", "read-linearizable", 1, 100, messages=2),
            _s("dengine", "read-linearizable-spread", 1, 80, messages=20)]
    assert "**missed** on read-linearizable-spread (0.80x) (each" in \
        goal_line(spread_ratios(runs + slow))[0]
    text = render_report(runs + slow, {
        "date": "d", "machine": "m", "cpu": "c", "cores": 2, "memory": "1 GiB", "python": "3",
        "dengine": "x", "etcd": "3.4", "grpcio": "1",
        "params": {"ops": 100, "rounds": 1, "workloads": ["read-linearizable",
                                                          "read-linearizable-spread"]}})
    assert "## Reads spread over every member" in text and "(0.80x)" in text
    # the run's own flags, so the line reproduces it
    assert "`dengine bench compare --rounds 1 -w read-linearizable,read-linearizable-spread`" \
        in text
    assert re.search(r"\| read-linearizable-spread \| dengine \| 100 \| 80 \| \*\*0\.80\*\* \|"
                     r".* \| 50\.0 -> 5\.0 \|", text)


def test_bench_embedded_refuses_a_spread_workload(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dengine", "bench", "--embedded", "-w",
         "read-serializable-spread", "--work-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not --embedded" in proc.stderr


class _Fake:
    """A dict behind the target interface that records how it was opened."""

    spreads_reads = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.data: dict[bytes, bytes] = {}
        self.opened: list[bool] = []

    async def open(self, connections: int, spread: bool = False) -> None:
        self.opened.append(spread)

    async def close(self) -> None: ...

    async def put(self, slot: int, key: bytes, value: bytes) -> None:
        self.data[key] = value

    async def get(self, slot: int, key: bytes, consistency: str) -> bool:
        return key in self.data


def test_compare_rounds_run_dengine_pinned_on_the_spread_rows_only() -> None:
    import argparse

    from dengine.bench.compare import _rounds

    targets = {n: _Fake(n) for n in ("dengine", "dengine-pinned", "etcd")}
    specs = [WORKLOADS[n].with_(ops=20, warmup_ops=0, key_space=5, clients=2)
             for n in PAIRS[0]]
    runs = asyncio.run(_rounds(targets, specs, argparse.Namespace(rounds=1, no_progress=True),
                               {"dengine": lambda: []}, [], []))
    assert sorted((s.target, s.workload) for s in runs) == [
        ("dengine", "read-serializable"), ("dengine", "read-serializable-spread"),
        ("dengine-pinned", "read-serializable-spread"),
        ("etcd", "read-serializable"), ("etcd", "read-serializable-spread")]
    assert targets["dengine-pinned"].opened == [True]
    assert targets["etcd"].opened == [False, True]
    assert set(spread_ratios(runs)["read-serializable-spread"]) == \
        {"dengine", "dengine-pinned", "etcd"}
