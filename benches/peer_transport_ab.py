"""A/B of the peer transports: two 3-node `dengine serve` clusters side by side, one with
network.peer_transport = "grpc", one with "tcp" (RocksDB, fsync on: the defaults otherwise),
driven by the same client code, workloads alternating between them round by round (who goes
first rotates), with the servers' CPU per operation over each timed phase.

    PYTHONPATH=$PWD python benches/peer_transport_ab.py --ops 2000 --rounds 3 --json out.json

``--variants grpc,tcp``: a variant is a peer transport, optionally followed by ``:KEY=VALUE``
network keys (``tcp:peer_stream_port=7400``); the first variant is the baseline of the ratios.
Prints one row per run and, at the end, each variant's ratios to the baseline per round and
their median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from dengine.bench.compare import cpu_seconds
from dengine.bench.local import dengine_processes
from dengine.bench.runner import run_all, select_workloads
from dengine.bench.stats import Summary
from dengine.bench.targets import DengineTarget


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def base_config(variant: str) -> dict[str, dict[str, Any]]:
    transport, *keys = variant.split(":")
    net: dict[str, Any] = {"peer_transport": transport}
    for item in keys:
        key, _, value = item.partition("=")
        net[key] = value
    return {"network": net}


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    specs = select_workloads(args.workloads.split(","), ops=args.ops)
    kinds = tuple(args.variants.split(","))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dengine-peer-ab-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            clusters = {}
            for n, kind in enumerate(kinds):
                clusters[kind] = await stack.enter_async_context(dengine_processes(
                    Path(tmp) / f"c{n}", base=base_config(kind)))
            targets = {k: DengineTarget(lc.endpoints, timeout=10.0) for k, lc in clusters.items()}
            preloaded: set = set()
            print(Summary.HEADER + "  server-us/op  load", flush=True)
            for rnd in range(1, args.rounds + 1):
                for i, spec in enumerate(specs):
                    shift = (rnd + i) % len(kinds)  # who goes first rotates
                    for kind in kinds[shift:] + kinds[:shift]:
                        lc = clusters[kind]
                        pids = [n.pid for n in lc.nodes.values()]
                        lc.check_alive()
                        la = load()
                        [s] = await run_all(targets[kind], [spec], echo=False,
                                            preloaded=preloaded,
                                            cpu=lambda pids=pids: cpu_seconds(pids))
                        s = dataclasses.replace(s, target=kind)
                        cpu = s.extra.get("cpu_us_per_op", {})
                        print(f"{s.row()}  {cpu.get('servers', 0):>9.0f}  {la}  (round {rnd})",
                              flush=True)
                        rows.append({"round": rnd, "kind": kind, "load": la, "time": time.time(),
                                     **s.to_dict()})
    return rows


def ratios(rows: list[dict[str, Any]], kinds: list[str]) -> None:
    base = kinds[0]
    by: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["workload"], r["round"]), {})[r["kind"]] = r
    for other in kinds[1:]:
        print(f"\n{other} / {base}, per round (rate; latency; server CPU per op):")
        per: dict[str, list[tuple[float, float, float]]] = {}
        for (w, rnd), runs in sorted(by.items()):
            if base not in runs or other not in runs:
                continue
            g, t = runs[base], runs[other]
            rate = t["throughput"] / g["throughput"]
            cg = g["extra"].get("cpu_us_per_op", {}).get("servers", 0)
            ct = t["extra"].get("cpu_us_per_op", {}).get("servers", 0)
            cpu = ct / cg if cg else float("nan")
            p50 = t["p50_ms"] / g["p50_ms"]
            per.setdefault(w, []).append((rate, p50, cpu))
            print(f"  {w:<18} round {rnd}: rate {rate:.2f}x, avg {t['avg_ms'] / g['avg_ms']:.2f}x, "
                  f"p50 {p50:.2f}x, p99 {t['p99_ms'] / g['p99_ms']:.2f}x, server CPU/op "
                  f"{cpu:.2f}x ({cg:.0f} -> {ct:.0f} us)")
        for w, vals in per.items():
            print(f"  {w:<18} median: rate {statistics.median(v[0] for v in vals):.2f}x, "
                  f"p50 {statistics.median(v[1] for v in vals):.2f}x, "
                  f"server CPU/op {statistics.median(v[2] for v in vals):.2f}x")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workloads", default="write-single,write-concurrent,read-linearizable")
    p.add_argument("--variants", default="grpc,tcp")
    p.add_argument("--json")
    args = p.parse_args()
    out = asyncio.run(main(args))
    ratios(out, args.variants.split(","))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
