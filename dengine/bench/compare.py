"""``dengine bench compare`` (and ``benches/compare_etcd.py``): dengine and etcd side by side.

Theory of operation
-------------------
On loopback it starts a 3-node dengine cluster (``dengine serve`` processes, RocksDB, fsync on)
and a 3-node etcd cluster (fsync on, etcd's default), then runs every workload against each,
alternating which goes first, for ``--rounds`` rounds, so slow drift of the machine (other load,
thermal, page cache) falls on both alike. The report (markdown, with a JSON of every run beside
it) gives the machine, the versions, the medians of the rounds side by side, and dengine/etcd
ratios taken per round and then reduced to their median (so one noisy round cannot swing them).
Every process it started is stopped on the way out: on success, on failure, on Ctrl-C and on
SIGTERM (and, on Linux, if this process is killed outright, by the children's parent-death
signal).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dengine.bench.stats import Summary
from dengine.bench.tls_rows import PAIRS as TLS_PAIRS

__all__ = ["add_compare_parser", "run_compare", "render_report", "ratios", "goal_lines"]

#: The throughput goals (dengine over etcd driven by its Go client, medians of the rounds);
#: against etcd driven from Python when the Go client cannot run here.
THROUGHPUT_GOALS = {"write-concurrent": 2.0, "read-linearizable": 2.0, "read-serializable": 2.0,
                    "mixed": 2.0}
#: (dengine side, baseline, key prefix in :func:`ratios`): dengine's client against etcd from
#: Python and against etcd's Go client; plain unary calls to each from the same Python client.
PAIRS = (("dengine", "etcd", ""), ("dengine", "etcd-go", "go_"),
         ("dengine-unary", "etcd", "unary_"), ("dengine-etcd", "etcd", "etcdapi_"),
         *TLS_PAIRS)

DEFAULT_OUT = "benches/reports"


def add_compare_parser(sub: Any) -> None:
    from dengine.bench.options import add_workload_flags

    p = sub.add_parser(
        "compare", help="dengine vs etcd on this machine, side by side, as a markdown report",
        description=__doc__.split("Theory of operation")[0].strip() + "\n\n" + (
            "Needs etcd on PATH (Debian/Ubuntu: sudo apt-get install -y etcd-server "
            "etcd-client)."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, metavar="N", help="rounds (default: 3)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"where the report goes (default: {DEFAULT_OUT})")
    p.add_argument("--etcd-bin", default=None, metavar="PATH", help="etcd executable")
    p.add_argument("--work-dir", default=None, metavar="DIR",
                   help="data directories of both clusters (default: a temporary directory)")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true",
                     help="only the TLS rows: write-concurrent and read-linearizable against "
                          "dengine and etcd, each plain and with mutual TLS (certificates "
                          "from `dengine certs init`)")
    tls.add_argument("--no-tls", action="store_true",
                     help="leave out the TLS rows (and their two clusters)")
    add_workload_flags(p)
    p.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from dengine.bench.etcd_cluster import INSTALL_HINT, etcd_binary
    from dengine.bench.options import run_loop, spec_overrides, write_json
    from dengine.bench.runner import select_workloads

    binary = etcd_binary(args.etcd_bin)
    if binary is None:
        print(f"dengine: error: {INSTALL_HINT}", file=sys.stderr)
        return 2
    try:
        from dengine.bench.tls_rows import TLS_WORKLOADS

        names = args.workload or (list(TLS_WORKLOADS) if args.tls else None)
        specs = select_workloads(names, **spec_overrides(args))
    except ValueError as e:
        print(f"dengine: error: {e}", file=sys.stderr)
        return 2
    if args.rounds < 1:
        print("dengine: error: --rounds must be at least 1", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C, through every finally that stops a cluster.
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="dengine-compare-") as tmp:
            root = Path(args.work_dir or tmp)
            runs = run_loop(_compare(root, binary, specs, args))
    except KeyboardInterrupt:
        print("\ninterrupted: every cluster process was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old)
    meta = machine_info(binary)
    meta["tls"] = "off" if args.no_tls else ("only" if args.tls else "rows")
    meta["params"] = {"rounds": args.rounds, "workloads": [s.name for s in specs],
                      "ops": specs[0].ops, "key_bytes": specs[0].key_bytes,
                      "value_bytes": specs[0].value_bytes, "key_space": specs[0].key_space}
    text = render_report(runs, meta)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    path = out / f"compare-etcd-{stamp}.md"
    path.write_text(text)
    from dengine.bench.spread import spread_ratios

    data = {"meta": meta, "runs": [s.to_dict() for s in runs], "spread": spread_ratios(runs)}
    (out / f"compare-etcd-{stamp}.json").write_text(json.dumps(data, indent=2) + "\n")
    write_json(args.json, data)
    print(text)
    print(f"report written to {path}")
    return 0


def _raise_interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


async def _compare(root: Path, binary: str, specs: list, args: argparse.Namespace
                   ) -> list[Summary]:
    from dengine.bench.etcd_cluster import EtcdCluster
    from dengine.bench.local import dengine_processes
    from dengine.bench.targets import DengineTarget, EtcdTarget
    from dengine.bench.tls_rows import TLS_WORKLOADS, tls_clusters
    from dengine.bench.unary import UnaryTarget
    from dengine.local.cluster import free_ports

    etcd = EtcdCluster(root / "etcd", free_ports(6), binary=binary)
    with_tls = not args.no_tls and any(s.name in TLS_WORKLOADS for s in specs)
    runs: list[Summary] = []
    try:
        etcd.start()
        async with contextlib.AsyncExitStack() as stack:
            lc = await stack.enter_async_context(
                dengine_processes(root / "dengine", etcd_api=not args.tls))
            etcd.check_alive()
            etcd_target = EtcdTarget(etcd.endpoints, timeout=args.timeout)
            targets = {"dengine": DengineTarget(lc.endpoints, timeout=args.timeout),
                       "etcd": etcd_target}
            if not args.tls:  # --tls: the TLS rows and their plain baselines only
                if any(s.spread for s in specs):  # runs the spread workloads only
                    pinned = DengineTarget(lc.endpoints, timeout=args.timeout, pin_reads=True)
                    pinned.name = "dengine-pinned"
                    targets[pinned.name] = pinned
                targets.update(_etcd_go_target(etcd.endpoints, args.timeout))
                targets["dengine-unary"] = UnaryTarget(lc.endpoints, timeout=args.timeout)
                # the same etcd client, pointed at dengine's etcd API (dengine.etcd)
                dengine_etcd = EtcdTarget(lc.etcd_endpoints, timeout=args.timeout)
                dengine_etcd.name = "dengine-etcd"
                targets["dengine-etcd"] = dengine_etcd
            etcd_pids = lambda: [p.pid for p in etcd.procs]  # noqa: E731
            pids: dict[str, Any] = {"etcd": etcd_pids, "etcd-go": etcd_pids}
            checks = [lc.check_alive, etcd.check_alive]
            tls_names: list[str] = []
            if with_tls:
                side = await stack.enter_async_context(
                    tls_clusters(root, binary, args.timeout))
                targets.update(side.targets)
                pids.update(side.pids)
                checks.append(side.check_alive)
                tls_names = list(side.targets)
            await etcd_target.leader_endpoint()
            pids.setdefault("dengine", lambda: [n.pid for n in lc.nodes.values()])
            runs = await _rounds(targets, specs, args, pids, checks, tls_names)
    finally:
        await asyncio.to_thread(etcd.stop)
    return runs


async def _rounds(targets: dict[str, Any], specs: list, args: argparse.Namespace,
                  pids: dict[str, Any], checks: list[Any], tls_names: list[str]
                  ) -> list[Summary]:
    """Every round: each workload against each target, who goes first rotating (the TLS
    targets only on the TLS workloads). ``pids[name]()``: the target's server processes
    (dengine's for a target without its own entry)."""
    from dengine.bench.runner import run_all
    from dengine.bench.spread import LEADER_ONLY_TARGET
    from dengine.bench.tls_rows import TLS_WORKLOADS

    progress = False if args.no_progress else None
    preloaded: set = set()
    runs: list[Summary] = []
    print(Summary.HEADER, flush=True)
    for rnd in range(1, args.rounds + 1):
        for i, spec in enumerate(specs):
            names = [n for n in targets if (n not in tls_names or spec.name in TLS_WORKLOADS)
                     and (n not in LEADER_ONLY_TARGET or spec.spread)]
            shift = (rnd + i) % len(names)  # who goes first rotates
            for name in names[shift:] + names[:shift]:
                for check in checks:
                    check()
                of = pids.get(name, pids["dengine"])
                [s] = await run_all(targets[name], [spec], progress=progress,
                                    preloaded=preloaded, echo=False,
                                    cpu=lambda of=of: cpu_seconds(of()))
                s.extra["round"] = rnd
                print(s.row() + f"  (round {rnd})", flush=True)
                runs.append(s)
    return runs


def _etcd_go_target(endpoints: list[str], timeout: float) -> dict[str, Any]:
    """``{"etcd-go": target}`` when etcd's Go client can be built here, else ``{}`` with the
    reason printed (the report then compares with etcd driven from Python only)."""
    from dengine.bench.etcd_go import EtcdGoTarget, EtcdGoUnavailable

    try:
        return {"etcd-go": EtcdGoTarget(endpoints, timeout=timeout)}
    except EtcdGoUnavailable as e:
        print(f"etcd-go target skipped: {e}", file=sys.stderr, flush=True)
        return {}


def cpu_seconds(pids: list[int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the server processes and by this one."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / hz
        except (OSError, IndexError, ValueError):
            pass
    return {"servers": total, "client": time.process_time()}


# ---------------------------------------------------------------------------------------------
# The report


def machine_info(etcd_bin: str) -> dict[str, Any]:
    import grpc

    from dengine import core_info
    from dengine._version import __version__
    from dengine.bench.etcd_cluster import etcd_version

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu, "cores": os.cpu_count(), "memory": mem,
        "python": platform.python_version(),
        "dengine": f"{__version__} ({core_info()})",
        "etcd": etcd_version(etcd_bin),
        "grpcio": grpc.__version__,
    }


def ratios(runs: list[Summary]) -> dict[str, dict[str, float]]:
    """Per workload: medians over the rounds of dengine/baseline for throughput, avg, p99,
    p99.9 and CPU (``ratio_*`` against etcd driven from Python, ``ratio_go_*`` against etcd's
    Go client, ``ratio_unary_*`` dengine's unary calls against etcd's), plus the median of each
    side's own figures (``dengine_*``, ``etcd_*``, ``etcd-go_*``, ``dengine-unary_*``)."""
    by: dict[tuple[str, int], dict[str, Summary]] = {}
    for s in runs:
        by.setdefault((s.workload, s.extra.get("round", 1)), {})[s.target] = s
    out: dict[str, dict[str, list[float]]] = {}
    for (wl, _rnd), group in by.items():
        acc = out.setdefault(wl, {})
        for side, s in group.items():
            for f in ("throughput", "avg_ms", "p99_ms", "p999_ms"):
                acc.setdefault(f"{side}_{f}", []).append(getattr(s, f))
            acc.setdefault(f"{side}_errors", []).append(float(s.errors))
            for k, v in s.extra.get("cpu_us_per_op", {}).items():
                acc.setdefault(f"{side}_cpu_{k}", []).append(v)
        for side, base, prefix in PAIRS:
            d, e = group.get(side), group.get(base)
            if d is None or e is None:
                continue
            for f in ("throughput", "avg_ms", "p99_ms", "p999_ms"):
                den = getattr(e, f)
                if den:
                    acc.setdefault(f"ratio_{prefix}{f}", []).append(getattr(d, f) / den)
            dc, ec = d.extra.get("cpu_us_per_op"), e.extra.get("cpu_us_per_op")
            if dc and ec and sum(ec.values()) > 0:
                acc.setdefault(f"ratio_{prefix}cpu", []).append(
                    sum(dc.values()) / sum(ec.values()))
    return {wl: {k: statistics.median(v) for k, v in acc.items()} for wl, acc in out.items()}


def render_report(runs: list[Summary], meta: dict[str, Any]) -> str:
    from dengine.bench.spread import goal_line as spread_goal
    from dengine.bench.spread import report_lines as report_spread
    from dengine.bench.spread import spread_ratios
    from dengine.bench.tls_rows import goal_line as tls_goal
    from dengine.bench.tls_rows import report_lines as report_tls

    r = ratios(runs)
    sr = spread_ratios(runs)
    p = meta.get("params", {})
    go = any("etcd-go_throughput" in v for v in r.values())
    lines = [
        "# dengine vs etcd on one machine",
        "",
        f"{meta['date']}. Both clusters: 3 nodes on loopback on this machine, fsync on "
        "(dengine: RocksDB log, `storage.sync = true`; etcd: its default WAL fsync). "
        "dengine is driven by its own Python client (Batch stream); etcd by plain unary "
        "gRPC calls from Python (`KV.Put`, `KV.Range`)"
        + (" and, as `etcd-go`, by its own Go client (clientv3, `benches/etcd-go`)" if go
           else "") + ", all to the leader"
        + (" (the `-spread` rows to every member, see below)." if sr else ".")
        + (" With TLS: a second dengine and a second etcd cluster, mutual TLS everywhere "
           "(see TLS below)." if meta.get("tls") in ("rows", "only") else ""),
        "",
        f"- machine: {meta['machine']}, {meta['cpu']}, {meta['cores']} cores, {meta['memory']}",
        f"- Python {meta['python']}, grpcio {meta['grpcio']}",
        f"- dengine {meta['dengine']}",
        f"- etcd {meta['etcd']}",
        f"- {p.get('ops')} ops per workload, {p.get('key_bytes')}-byte keys, "
        f"{p.get('value_bytes')}-byte values, {p.get('key_space')} keys; "
        f"{p.get('rounds')} rounds, the targets taking turns to go first",
        "",
        "Figures are medians over the rounds; ratios are dengine/etcd per round, then the "
        "median (throughput: higher is better for dengine; latency: lower is better).",
        "",
    ]
    go_head = ("etcd-go ops/s | ratio | ", "etcd-go avg ms | ratio | ", "etcd-go p99 ms | ratio | ")
    go_cols = go_head if go else ("", "", "")
    lines += [
        "| workload | dengine ops/s | etcd ops/s | ratio | " + go_cols[0]
        + "dengine avg ms | etcd avg ms | ratio | " + go_cols[1]
        + "dengine p99 ms | etcd p99 ms | ratio | " + go_cols[2]
        + "dengine p99.9 ms | etcd p99.9 ms |",
        "|---|" + "---:|" * (11 + (6 if go else 0)),
    ]
    for wl, v in r.items():
        def g(k: str, fmt: str = ".2f", v: dict[str, float] = v) -> str:
            return format(v[k], fmt) if k in v else "-"

        def gocol(f: str, fmt: str, bold: bool = False) -> str:
            if not go:
                return ""
            ratio = g(f"ratio_go_{f}")
            return f"{g(f'etcd-go_{f}', fmt)} | " + (f"**{ratio}**" if bold else ratio) + " | "

        lines.append(
            f"| {wl} | {g('dengine_throughput', ',.0f')} | {g('etcd_throughput', ',.0f')} | "
            f"**{g('ratio_throughput')}** | {gocol('throughput', ',.0f', True)}"
            f"{g('dengine_avg_ms')} | {g('etcd_avg_ms')} | "
            f"{g('ratio_avg_ms')} | {gocol('avg_ms', '.2f')}{g('dengine_p99_ms')} | "
            f"{g('etcd_p99_ms')} | {g('ratio_p99_ms')} | {gocol('p99_ms', '.2f')}"
            f"{g('dengine_p999_ms')} | {g('etcd_p999_ms')} |")
    if any("ratio_unary_throughput" in v for v in r.values()):
        lines += ["", "The same plain unary gRPC calls from Python to each (dengine's "
                  "`Kv.Put`/`Kv.Get` through the generated stubs, no session, no stream; "
                  "etcd's `KV.Put`/`KV.Range`):", "",
                  "| workload | dengine unary ops/s | etcd ops/s | ratio | dengine unary p99 ms "
                  "| etcd p99 ms | ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
        for wl, v in r.items():
            def u(k: str, fmt: str = ".2f", v: dict[str, float] = v) -> str:
                return format(v[k], fmt) if k in v else "-"

            lines.append(
                f"| {wl} | {u('dengine-unary_throughput', ',.0f')} | "
                f"{u('etcd_throughput', ',.0f')} | **{u('ratio_unary_throughput')}** | "
                f"{u('dengine-unary_p99_ms')} | {u('etcd_p99_ms')} | {u('ratio_unary_p99_ms')} |")
    if any("ratio_etcdapi_throughput" in v for v in r.values()):
        lines += ["", "The same etcd client (unary `KV.Put`/`KV.Range` from Python) against "
                  "dengine's etcd API (`[etcd_api] listen`) and against etcd:", "",
                  "| workload | dengine etcd-API ops/s | etcd ops/s | ratio | dengine etcd-API "
                  "p99 ms | etcd p99 ms | ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
        for wl, v in r.items():
            def a(k: str, fmt: str = ".2f", v: dict[str, float] = v) -> str:
                return format(v[k], fmt) if k in v else "-"

            lines.append(
                f"| {wl} | {a('dengine-etcd_throughput', ',.0f')} | "
                f"{a('etcd_throughput', ',.0f')} | **{a('ratio_etcdapi_throughput')}** | "
                f"{a('dengine-etcd_p99_ms')} | {a('etcd_p99_ms')} | "
                f"{a('ratio_etcdapi_p99_ms')} |")
    if any("ratio_cpu" in v or "ratio_go_cpu" in v for v in r.values()):
        sides = ["dengine", "etcd", *(["etcd-go"] if go else [])]
        lines += ["", "CPU time per operation (microseconds, user + system, medians): the "
                  "three server processes together, and the benchmark client process. On a "
                  "shared machine this moves less than the rates above.", "",
                  "| workload | " + " | ".join(f"{sd} servers | {sd} client" for sd in sides)
                  + " | ratio to etcd (total) |" + (" ratio to etcd-go (total) |" if go else ""),
                  "|---|" + "---:|" * (2 * len(sides) + 1 + (1 if go else 0))]
        for wl, v in r.items():
            cells = [format(v[k], ".0f") if k in v else "-"
                     for sd in sides for k in (f"{sd}_cpu_servers", f"{sd}_cpu_client")]
            cells += [format(v[k], ".2f") if k in v else "-"
                      for k in ("ratio_cpu", *(["ratio_go_cpu"] if go else []))]
            lines.append(f"| {wl} | " + " | ".join(cells) + " |")
    lines += report_tls(r)
    lines += report_spread(sr)
    lines += ["", *goal_lines(r), *tls_goal(r), *spread_goal(sr)]
    errs = [(s.target, s.workload, s.extra.get("round"), s.errors, s.misses) for s in runs
            if s.errors or s.misses]
    lines += ["", "etcd has no lease reads in its API: its `read-lease` row is a linearizable "
              "Range. `mixed` is 90% linearizable reads, 10% writes."]
    if errs:
        lines += ["", "Errors / misses: " + "; ".join(
            f"{t} {w} round {rd}: {e} errors, {m} misses" for t, w, rd, e, m in errs)]
    lines += ["", "## Every run", "", "```", Summary.HEADER]
    lines += [s.row() + f"  round {s.extra.get('round')}" for s in runs]
    flags = {"only": " --tls", "off": " --no-tls"}.get(str(meta.get("tls")), "")
    flags += _run_flags(p)
    lines += ["```", "", "Reproduce: `dengine bench compare" + flags + "` (or `python "
              "benches/compare_etcd.py" + flags + "`)"
              + (f" with `--ops {p.get('ops')}`" if p.get("ops") != 10_000 else "") + ".", ""]
    return "\n".join(lines)


def _run_flags(p: dict[str, Any]) -> str:
    """``--rounds`` and ``-w`` as the run had them, where they differ from the defaults."""
    from dengine.bench.runner import select_workloads
    from dengine.bench.tls_rows import TLS_WORKLOADS

    out = f" --rounds {p['rounds']}" if p.get("rounds", 3) != 3 else ""
    wl = p.get("workloads")
    if wl and wl not in ([s.name for s in select_workloads(None)], list(TLS_WORKLOADS)):
        out += " -w " + ",".join(wl)
    return out


def goal_lines(r: dict[str, dict[str, float]]) -> list[str]:
    """The goals, each met or missed and by how much, from :func:`ratios`: against etcd's Go
    client where it ran, else against etcd driven from Python (and the report says which)."""
    go = any("ratio_go_throughput" in v for v in r.values())
    prefix, base = ("go_", "etcd-go") if go else ("", "etcd (Python client)")
    out = [f"Goals (dengine/{base}, medians):", ""]

    def mark(ok: bool) -> str:
        return "met" if ok else "**missed**"

    for wl, goal in THROUGHPUT_GOALS.items():
        v = r.get(wl, {}).get(f"ratio_{prefix}throughput")
        if v is not None:
            out.append(f"- {wl} throughput >= {goal:g}x: {v:.2f}x, {mark(v >= goal)}"
                       + ("" if v >= goal else f" (by {goal / v:.2f}x)"))
    v = r.get("write-single", {}).get(f"ratio_{prefix}avg_ms")
    if v is not None:
        out.append(f"- write-single average latency <= {base}'s: {v:.2f}x, {mark(v <= 1)}")
    slower = [f"{wl} ({x['ratio_unary_throughput']:.2f}x)" for wl, x in r.items()
              if x.get("ratio_unary_throughput", 1) < 1]
    if any("ratio_unary_throughput" in x for x in r.values()):
        out.append("- unary calls at least etcd's rate for the same unary client on every "
                   "workload: " + (mark(True) if not slower
                                   else f"{mark(False)} on " + ", ".join(slower)))
    worse = [f"{wl} ({x[f'ratio_{prefix}p99_ms']:.2f}x)" for wl, x in r.items()
             if x.get(f"ratio_{prefix}p99_ms", 0) >= 1]
    out.append(f"- p99 below {base}'s on every workload: "
               + (mark(True) if not worse else f"{mark(False)} on " + ", ".join(worse)))
    return out
