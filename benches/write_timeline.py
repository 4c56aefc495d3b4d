"""Where a single write's latency goes: the stages of each write, one at a time, on 3-node
`dengine serve` clusters, from the opt-in timeline (``dengine.observability.timeline``).

    PYTHONPATH=$PWD python benches/write_timeline.py --ops 2000 --rounds 3 --variants grpc,tcp

Sets ``DENGINE_TIMELINE`` for this process (the client) and the node processes, runs the
bench's ``write-single`` workload against each variant's cluster, alternating round by round,
then merges the files on CLOCK_MONOTONIC: for each write (client call to client resume) the
first event of each stage on the leader and on the follower whose acknowledgement reached the
leader first. Prints, per variant, the median and p90 of each gap of that critical chain, their
sum against the measured latency, and the leader's own write and fsync beside it.

A variant is a peer transport, optionally with ``:KEY=VALUE`` network keys, as in
``peer_transport_ab.py``, and ``@NAME=VALUE`` environment variables for its node processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

_TL_DIR = tempfile.mkdtemp(prefix="dengine-timeline-")
os.environ["DENGINE_TIMELINE"] = _TL_DIR  # before dengine is imported: read once at import

from dengine.bench.local import dengine_processes  # noqa: E402
from dengine.bench.runner import run_all, select_workloads  # noqa: E402
from dengine.bench.targets import DengineTarget  # noqa: E402
from dengine.observability import timeline  # noqa: E402

# The critical chain: (process, stage, index rule). L leader, F the first follower to ack,
# C the client. Index rules: "=" the write's index, ">=" at least it, "" any.
CHAIN: list[tuple[str, str, str]] = [
    ("C", "c.call", ""), ("C", "c.write", ""),
    ("L", "s.req", ""), ("L", "s.handle", ""), ("L", "n.propose", ""),
    ("L", "n.proposed", "="), ("L", "n.ready_e", "="), ("L", "n.send_app", ">="),
    ("L", "t.out", "F"),
    ("F", "t.in", "L"), ("F", "n.recv_app", ">="), ("F", "n.step_app", ">="),
    ("F", "n.ready_e", ">="), ("F", "n.write0", ">="), ("F", "n.fsync0", ">="),
    ("F", "n.fsync1", ">="), ("F", "n.send_ack", ">="), ("F", "t.out", "L"),
    ("L", "t.in", "F"), ("L", "n.recv_ack", ">="), ("L", "n.step_ack", ">="),
    ("L", "n.ready_c", ">="), ("L", "n.apply0", ">="), ("L", "n.apply1", ">="),
    ("L", "s.handled", ""), ("L", "s.yield", ""),
    ("C", "c.read", ""), ("C", "c.resume", ""),
]
# The leader's own persistence, as offsets from its n.send_app.
SIDE = [("L", "n.write0", "="), ("L", "n.fsync0", "="), ("L", "n.fsync1", "="),
        ("L", "n.turn_end", "")]
# The Batch stream's write of the answer (when grpc.aio asks for the next one: not a stage of
# the chain, the client may read the answer first), as an offset from s.yield.
SIDE_YIELD = ("L", "s.written", "")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def read_events(pid: int) -> dict[str, list[tuple[int, int, int]]]:
    by_stage: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    path = Path(_TL_DIR) / f"{pid}.tl"
    if not path.exists():
        return by_stage
    for line in path.read_text().splitlines():
        t, s, a, b = line.split("\t")
        by_stage[s].append((int(t), int(a), int(b)))
    for v in by_stage.values():
        v.sort()
    return by_stage


def first(events: list[tuple[int, int, int]], after: int, before: int, rule: str, index: int,
          peer: int) -> int | None:
    import bisect
    i = bisect.bisect_left(events, (after, -1, -1))
    while i < len(events) and events[i][0] <= before:
        t, a, b = events[i]
        if rule == "=" and a != index:
            i += 1
            continue
        if rule == ">=" and a < index:
            i += 1
            continue
        if rule in ("F", "L") and a != peer:
            i += 1
            continue
        return t
    return None


def analyse(client: dict, nodes: dict[int, dict], start: int, end: int) -> dict[str, Any]:
    calls = [t for t, _, _ in client["c.call"] if start <= t <= end]
    resumes = [t for t, _, _ in client["c.resume"] if start <= t <= end]
    gaps: dict[str, list[float]] = defaultdict(list)
    side: dict[str, list[float]] = defaultdict(list)
    totals: list[float] = []
    leader_fsync_late = 0
    done = 0
    missed: dict[str, int] = defaultdict(int)
    for t0 in calls:
        t1 = next((r for r in resumes if r >= t0), None)
        if t1 is None:
            continue
        # The leader: the node that proposed in this window.
        lead = idx = None
        for nid, ev in nodes.items():
            for t, a, _ in ev.get("n.proposed", []):
                if t0 <= t <= t1:
                    lead, idx = nid, a
                    break
            if lead is not None:
                break
        if lead is None or idx is None:
            continue
        ack = [(t, b) for t, a, b in nodes[lead].get("n.recv_ack", []) if t0 <= t <= t1 and a >= idx]
        if not ack:
            continue
        fol = min(ack)[1]
        if fol not in nodes:
            continue
        procs = {"C": client, "L": nodes[lead], "F": nodes[fol]}
        peers = {"C": 0, "L": fol, "F": lead}
        prev_t, prev_name, ok = t0, "c.call", True
        row = []
        for proc, stage, rule in CHAIN[1:]:
            t = first(procs[proc].get(stage, []), prev_t, t1, rule, idx, peers[proc])
            if t is None:
                ok = False
                missed[f"{proc}:{stage}"] += 1
                break
            row.append((f"{prev_name} -> {proc}:{stage}", (t - prev_t) / 1000))
            prev_t, prev_name = t, f"{proc}:{stage}"
        if not ok:
            continue
        done += 1
        totals.append((t1 - t0) / 1000)
        for k, v in row:
            gaps[k].append(v)
        sent = first(nodes[lead].get("n.send_app", []), t0, t1, ">=", idx, 0)
        for proc, stage, rule in SIDE:
            t = first(procs[proc].get(stage, []), t0, t1 + 50_000_000, rule, idx, 0)
            if t is not None and sent is not None:
                side[f"L:n.send_app -> L:{stage}"].append((t - sent) / 1000)
        y = first(nodes[lead].get("s.yield", []), t0, t1, "", idx, 0)
        w = first(nodes[lead].get("s.written", []), y or t0, t1 + 50_000_000, "", idx, 0)
        if y is not None and w is not None:
            side["L:s.yield -> L:s.written"].append((w - y) / 1000)
        f1 = first(nodes[lead].get("n.fsync1", []), t0, t1 + 50_000_000, "=", idx, 0)
        got = first(nodes[lead].get("n.recv_ack", []), t0, t1, ">=", idx, 0)
        if f1 is not None and got is not None and f1 > got:
            leader_fsync_late += 1
    return {"writes": len(calls), "chained": done, "totals": totals, "gaps": gaps,
            "side": side, "leader_fsync_after_ack": leader_fsync_late, "missed": missed}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def report(name: str, res: dict[str, Any]) -> list[str]:
    out = [f"## {name}: {res['chained']} of {res['writes']} writes chained; "
           f"leader fsync done after the ack arrived in {res['leader_fsync_after_ack']}",
           "| gap | median us | p90 us | mean us |", "|---|---:|---:|---:|"]
    med_sum = mean_sum = 0.0
    for k, v in res["gaps"].items():
        m = statistics.median(v)
        med_sum += m
        mean_sum += statistics.fmean(v)
        out.append(f"| {k} | {m:.0f} | {pct(v, 0.9):.0f} | {statistics.fmean(v):.0f} |")
    tot = res["totals"]
    out.append(f"| **sum of the gaps** | {med_sum:.0f} | | {mean_sum:.0f} |")
    out.append(f"| **measured (client call -> resume)** | {statistics.median(tot):.0f} | "
               f"{pct(tot, 0.9):.0f} | {statistics.fmean(tot):.0f} |")
    for k, v in res["side"].items():
        out.append(f"| side: {k} | {statistics.median(v):.0f} | {pct(v, 0.9):.0f} | "
                   f"{statistics.fmean(v):.0f} |")
    return out


async def main(args: argparse.Namespace) -> None:
    specs = select_workloads(["write-single"], ops=args.ops)
    kinds = args.variants.split(",")
    windows: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    pids: dict[str, list[int]] = {}
    rates: dict[str, list[float]] = defaultdict(list)
    lat: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="dengine-tl-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            clusters = {}
            for n, kind in enumerate(kinds):
                spec, *envs = kind.split("@")
                transport, *keys = spec.split(":")
                net: dict[str, Any] = {"peer_transport": transport}
                for item in keys:
                    k, _, v = item.partition("=")
                    net[k] = v
                saved = dict(os.environ)
                os.environ.update(e.partition("=")[::2] for e in envs)
                try:
                    clusters[kind] = await stack.enter_async_context(
                        dengine_processes(Path(tmp) / f"c{n}", base={"network": net}))
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
                pids[kind] = [nd.pid for nd in clusters[kind].nodes.values()]
            targets = {k: DengineTarget(lc.endpoints, timeout=10.0) for k, lc in clusters.items()}
            preloaded: set = set()
            for rnd in range(1, args.rounds + 1):
                shift = rnd % len(kinds)
                for kind in kinds[shift:] + kinds[:shift]:
                    la = load()
                    start = time.monotonic_ns()
                    [s] = await run_all(targets[kind], specs, echo=False, preloaded=preloaded)
                    end = time.monotonic_ns()
                    windows[kind].append((start, end, la))
                    rates[kind].append(s.throughput)
                    lat[kind].append((s.avg_ms, s.p50_ms))
                    print(f"round {rnd} {kind}: {s.throughput:.0f} ops/s avg {s.avg_ms:.2f} ms p50 {s.p50_ms:.2f} ms, load {la}", flush=True)
    timeline.flush()
    client = read_events(os.getpid())
    lines = [f"# write-single timeline, {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}"]
    results = {}
    for kind in kinds:
        nodes = {i: read_events(pid) for i, pid in enumerate(pids[kind], 1)}
        merged: dict[str, Any] = {"writes": 0, "chained": 0, "totals": [], "gaps": defaultdict(list),
                                  "side": defaultdict(list), "leader_fsync_after_ack": 0,
                                  "missed": defaultdict(int)}
        for start, end, _ in windows[kind]:
            r = analyse(client, nodes, start, end)
            merged["writes"] += r["writes"]
            merged["chained"] += r["chained"]
            merged["totals"] += r["totals"]
            merged["leader_fsync_after_ack"] += r["leader_fsync_after_ack"]
            for k, v in r["gaps"].items():
                merged["gaps"][k] += v
            for k, v in r["side"].items():
                merged["side"][k] += v
            for k, v in r["missed"].items():
                merged["missed"][k] += v
        lines.append("")
        lines.append(f"rates {[round(x) for x in rates[kind]]} ops/s, loads "
                     f"{[w[2] for w in windows[kind]]}")
        lines += report(kind, merged)
        lines.append(f"unchained, by the first stage not found: {dict(merged['missed'])}")
        results[kind] = {k: (dict(v) if isinstance(v, defaultdict) else v)
                         for k, v in merged.items()}
    base = kinds[0]
    lines.append("")
    lines.append(f"per round, against {base} (avg latency ratio, p50 latency ratio):")
    for kind in kinds[1:]:
        pairs = [(a[0] / b[0], a[1] / b[1]) for a, b in zip(lat[kind], lat[base], strict=True)]
        lines.append(f"  {kind}: avg " + " ".join(f"{x:.2f}" for x, _ in pairs)
                     + f" (median {statistics.median(x for x, _ in pairs):.2f}); p50 "
                     + " ".join(f"{y:.2f}" for _, y in pairs)
                     + f" (median {statistics.median(y for _, y in pairs):.2f})")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {k: {"rates": rates[k], "loads": [w[2] for w in windows[k]], "latency_ms": lat[k],
                 "gaps_median": {g: statistics.median(v) for g, v in r["gaps"].items()},
                 "gaps_p90": {g: pct(v, 0.9) for g, v in r["gaps"].items()},
                 "gaps_mean": {g: statistics.fmean(v) for g, v in r["gaps"].items()},
                 "measured_mean": statistics.fmean(r["totals"]) if r["totals"] else None,
                 "side_median": {g: statistics.median(v) for g, v in r["side"].items()},
                 "measured_median": statistics.median(r["totals"]) if r["totals"] else None,
                 "measured_p90": pct(r["totals"], 0.9) if r["totals"] else None}
             for k, r in results.items()}, indent=1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default="grpc,tcp")
    ap.add_argument("--out", default=None)
    ap.add_argument("--json", default=None)
    asyncio.run(main(ap.parse_args()))
