"""``dengine bench`` and ``dengine bench compare``: command-line entry points."""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Any

from dengine.bench.options import add_workload_flags, run_loop, spec_overrides, write_json
from dengine.bench.stats import Summary
from dengine.bench.workloads import WORKLOADS

__all__ = ["register"]

_EPILOG = "workloads: " + ", ".join(
    f"{w.name} ({w.clients} client{'s' if w.clients > 1 else ''}, {w.connections} conn.)"
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
    p.add_argument("--target", choices=("dengine", "etcd"), default="dengine")
    p.add_argument("--endpoints", default=None, metavar="HOST:PORT,...",
                   help="cluster endpoints (etcd default: 127.0.0.1:2379)")
    p.add_argument("--embedded", action="store_true",
                   help="start a 3-node cluster with node 1 in this process and use its "
                        "in-process client (no gRPC on the client path)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="--embedded: where the cluster lives (default: a temporary directory)")
    add_workload_flags(p)
    p.set_defaults(func=_run_bench)
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    from dengine.bench.compare import add_compare_parser

    add_compare_parser(sub)


def _run_bench(args: argparse.Namespace) -> int:
    from dengine.bench.runner import select_workloads
    from dengine.cli.errors import USAGE

    try:
        specs = select_workloads(args.workload, **spec_overrides(args))
    except ValueError as e:
        print(f"dengine: error: {e}", file=sys.stderr)
        return USAGE
    progress = False if args.no_progress else None
    try:
        summaries = run_loop(_bench(args, specs, progress))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    write_json(args.json, {"results": [s.to_dict() for s in summaries]})
    return 0


async def _bench(args: argparse.Namespace, specs: list, progress: bool | None) -> list[Summary]:
    from dengine.bench.runner import run_all
    from dengine.bench.targets import EmbeddedTarget, make_target

    print(Summary.HEADER, flush=True)
    if args.embedded:
        from dengine.bench.local import embedded_cluster
        from dengine.observability.logging import configure_logging

        configure_logging("warning")
        with tempfile.TemporaryDirectory(prefix="dengine-bench-") as tmp:
            async with embedded_cluster(args.data_dir or tmp) as node:
                return await run_all(EmbeddedTarget(node, timeout=args.timeout), specs,
                                     progress=progress)
    endpoints = _endpoints(args)
    target = make_target(args.target, endpoints, args.timeout)
    return await run_all(target, specs, progress=progress)


def _endpoints(args: argparse.Namespace) -> list[str]:
    if args.endpoints:
        return [e for e in args.endpoints.split(",") if e]
    if args.target == "etcd":
        return ["127.0.0.1:2379"]
    from dengine.local.cluster import recorded_endpoints

    found = recorded_endpoints()
    if found is None:
        from dengine.cli.errors import USAGE, CliError

        raise CliError("no --endpoints given and no local cluster found; start one with "
                       "`dengine cluster up`, or use --embedded", USAGE)
    return found[0]
