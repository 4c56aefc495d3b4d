"""``dengine bench`` and ``dengine bench compare``: command-line entry points."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any

from dengine.bench.options import add_workload_flags, run_loop, spec_overrides, write_json
from dengine.bench.stats import Summary
from dengine.bench.workloads import WORKLOADS

__all__ = ["register"]

_EPILOG = "workloads: " + ", ".join(
    f"{w.name} ({w.clients} client{'s' if w.clients > 1 else ''}, {w.connections} conn."
    + (" to every member)" if w.spread else ")")
    for w in WORKLOADS.values())


def register(subparsers: Any) -> None:
    """Add ``bench`` (and ``bench compare``) to the ``dengine`` command."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "bench", help="measure throughput and latency (dengine or etcd)",
        description=(
            "Run client workloads and print throughput and average, p50, p99 and p99.9 "
            "latency.\n\n--target dengine (default) uses dengine's Python client against "
            "--endpoints (default: the local cluster of `dengine cluster up`); --target etcd "
            "drives an etcd v3 cluster through plain unary gRPC calls; --embedded starts a "
            "3-node cluster, one node inside this process, and uses its in-process client.\n"
            "`dengine bench compare` runs everything against dengine and etcd side by side."),
        epilog=_EPILOG, formatter_class=fmt)
    p.add_argument("--target", choices=("dengine", "etcd", "etcd-go"), default="dengine",
                   help="etcd-go: etcd driven by its Go client (benches/etcd-go)")
    p.add_argument("--client", choices=("stream", "unary"), default="stream",
                   help="--target dengine: its Python client's Batch stream (default), or "
                        "plain unary gRPC calls through the generated stubs")
    p.add_argument("--endpoints", default=None, metavar="HOST:PORT,...",
                   help="cluster endpoints (default: $DENGINE_ENDPOINTS, else the cluster "
                        "recorded in --data-dir; etcd: 127.0.0.1:2379)")
    p.add_argument("--embedded", action="store_true",
                   help="start a 3-node cluster with node 1 in this process and use its "
                        "in-process client (no gRPC on the client path)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="use the local cluster `dengine cluster up` recorded in DIR "
                        "(default: ./data)")
    p.add_argument("--work-dir", default=None, metavar="DIR",
                   help="--embedded: where its cluster lives (default: a temporary directory)")
    p.add_argument("--preload", type=int, default=0, metavar="N",
                   help="run the workloads, then load N keys (batched), then run them again "
                        "and compare (dengine targets only)")
    p.add_argument("--settle", action="store_true",
                   help="with --preload --embedded: after the run at N keys, have every member "
                        "flush and compact its store and wait until none owes a compaction "
                        "(steady state after the bulk load), then run the workloads again")
    p.add_argument("--compare-scan", action="store_true",
                   help="with --preload: also time a full scan by `dengine scan` against one "
                        "by the Python client (each its own process)")
    add_workload_flags(p)
    from dengine.cli.security import add_tls_flags

    add_tls_flags(p.add_argument_group("TLS"))
    p.set_defaults(func=_run_bench)
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    from dengine.bench.compare import add_compare_parser

    add_compare_parser(sub)


def _run_bench(args: argparse.Namespace) -> int:
    from dengine.bench.runner import select_workloads
    from dengine.cli.errors import USAGE, report
    from dengine.errors import DengineError

    try:
        specs = select_workloads(args.workload, **spec_overrides(args))
        if args.embedded:  # node 1's in-process client reads from node 1 only
            if args.workload and any(s.spread for s in specs):
                raise ValueError("the -spread workloads read from every member: give "
                                 "--endpoints (or --data-dir), not --embedded")
            specs = [s for s in specs if not s.spread]
        if args.preload < 0 or (args.preload and args.target != "dengine"):
            raise ValueError("--preload needs a number of keys >= 0 and a dengine target")
        if args.compare_scan and not args.preload:
            raise ValueError("--compare-scan times a scan of the preloaded keys: give --preload")
    except ValueError as e:
        print(f"dengine: error: {e}", file=sys.stderr)
        return USAGE
    progress = False if args.no_progress else None
    if args.embedded and (args.endpoints or args.data_dir):
        print("dengine: error: --embedded starts its own cluster: it takes --work-dir, not "
              "--endpoints or --data-dir", file=sys.stderr)
        return USAGE
    where = None
    try:
        if not args.embedded:
            where = _endpoints(args)
        summaries = run_loop(_bench(args, where, specs, progress))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except DengineError as e:
        return report(e, where.where if where is not None else None)
    if args.preload:
        summaries, after, secs, scan, settled, steady = summaries
        from dengine.bench.preload import comparison_rows

        print(f"\npreloaded {args.preload:,} keys in {secs:.1f}s "
              f"({args.preload / max(secs, 1e-9):,.0f} keys/s)")
        print("right after the load:")
        print("\n".join(comparison_rows(summaries, after, args.preload)), flush=True)
        if steady is not None:
            print(f"steady state after the bulk load (--settle, {settled['seconds']:.1f}s):")
            print("\n".join(comparison_rows(summaries, steady, args.preload)), flush=True)
        if scan is not None:
            print(scan.row(), flush=True)
        write_json(args.json, {"results": [s.to_dict() for s in summaries],
                               "preload": {"keys": args.preload, "seconds": secs,
                                           "settle_s": settled and settled["seconds"],
                                           "settle": settled,
                                           "results": [s.to_dict() for s in after],
                                           "settled_results": steady and [
                                               s.to_dict() for s in steady],
                                           "scan": scan and scan.to_dict()}})
        return 0
    from dengine.bench.spread import report_lines, spread_ratios

    spread = spread_ratios(summaries)
    if spread:
        print("\n".join(report_lines(spread)), flush=True)
    write_json(args.json, {"results": [s.to_dict() for s in summaries],
                           **({"spread": spread} if spread else {})})
    return 0


async def _bench(args: argparse.Namespace, where: Any, specs: list, progress: bool | None
                 ) -> Any:
    from dengine.bench.targets import EmbeddedTarget, make_target

    print(Summary.HEADER, flush=True)
    if args.embedded:
        from dengine.bench.local import embedded_cluster
        from dengine.observability.logging import configure_logging

        configure_logging("warning")
        with tempfile.TemporaryDirectory(prefix="dengine-bench-") as tmp:
            async with embedded_cluster(args.work_dir or tmp) as node:
                return await _runs(args, EmbeddedTarget(node, timeout=args.timeout), specs,
                                   progress, sorted(node.config.cluster.initial_members.values()))
    from dengine.cli.security import client_tls

    # A cluster recorded by `cluster up --tls` is reached with its client certificate.
    recorded = os.path.dirname(where.origin) if where.origin.endswith(".json") else None
    try:
        kind = "dengine-unary" if args.target == "dengine" and args.client == "unary" \
            else args.target
        target = make_target(kind, list(where.addresses), args.timeout,
                             tls=client_tls(args, recorded))
    except (RuntimeError, ValueError) as e:  # EtcdGoUnavailable, or TLS it cannot speak
        from dengine.cli.errors import USAGE, CliError

        raise CliError(str(e), USAGE) from e
    return await _runs(args, target, specs, progress, list(where.addresses))


async def _runs(args: argparse.Namespace, target: Any, specs: list, progress: bool | None,
                endpoints: list[str]) -> Any:
    """The workloads; with ``--preload N`` also the load and the second run (see preload)."""
    from dengine.bench.runner import run_all

    preloaded: set = set()
    cpu: Any = None
    if args.preload and getattr(target, "node", None) is not None:  # the embedded cluster
        from dengine.bench.preload import cluster_cpu

        cpu = cluster_cpu
    before = await run_all(target, specs, progress=progress, preloaded=preloaded, cpu=cpu)
    if not args.preload:
        return before
    from dengine.bench.preload import preload_keys

    kb = args.key_bytes or 16
    regain = None
    node = getattr(target, "node", None)
    if node is not None:  # the embedded cluster writes through node 1 only
        from dengine.bench.preload import regain_leadership

        async def regain() -> None:
            await regain_leadership(node, endpoints)
    secs = await preload_keys(target, args.preload, key_bytes=max(kb, 8),
                              value_bytes=args.value_bytes or 256, progress=progress,
                              regain=regain)
    print(f"-- at {args.preload:,} more keys --", flush=True)
    after = await run_all(target, specs, progress=progress, preloaded=preloaded, cpu=cpu)
    settled = steady = None
    if args.settle:
        from dengine.bench.preload import settle

        settled = await settle(target, endpoints)
        if settled is None:
            print("-- settle: only for --embedded (the members it started) --", flush=True)
        else:
            print(f"-- settled in {settled['seconds']:.1f}s (compactions "
                  + ", ".join(f"{s:.1f}s" for s in settled["compact_s"].values())
                  + f", then {settled['wait_s']:.1f}s until none owed one): "
                  f"at {args.preload:,} more keys, steady state --", flush=True)
            steady = await run_all(target, specs, progress=progress, preloaded=preloaded,
                                   cpu=cpu)
    scan = None
    if args.compare_scan:
        from dengine.bench.scan_compare import compare_scan

        scan = await compare_scan(endpoints, args.preload)
    return before, after, secs, scan, settled, steady


def _endpoints(args: argparse.Namespace) -> Any:
    """The target's endpoints and their origin (dengine: as every client command finds them)."""
    from dengine.cli.endpoints import Endpoints, parse_endpoints, resolve

    if args.target in ("etcd", "etcd-go"):
        if args.endpoints:
            return Endpoints(tuple(parse_endpoints(args.endpoints, "--endpoints")), "--endpoints")
        return Endpoints(("127.0.0.1:2379",), "the etcd default")
    return resolve(args.endpoints, args.data_dir)
