"""``dengine bench`` and ``dengine bench compare``: command-line entry points."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from typing import Any

from dengine.bench.stats import Summary
from dengine.bench.workloads import WORKLOADS

__all__ = ["register", "add_workload_flags", "spec_overrides"]

_EPILOG = "workloads: " + ", ".join(
    f"{w.name} ({w.clients} client{'s' if w.clients > 1 else ''}, {w.connections} conn.)"
    for w in WORKLOADS.values())


def add_workload_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``bench`` and ``bench compare``."""
    p.add_argument("--workload", "-w", action="append", metavar="NAME",
                   help="workload to run (repeat or comma-separate; default: all)")
    p.add_argument("--ops", type=int, default=None, metavar="N",
                   help="operations per workload (default: 10000)")
    p.add_argument("--connections", type=int, default=None, metavar="N",
                   help="gRPC connections (default: per workload, 1 or 10)")
    p.add_argument("--clients", type=int, default=None, metavar="N",
                   help="concurrent clients (default: per workload, 1 or 100)")
    p.add_argument("--key-bytes", type=int, default=None, metavar="N", help="key size (8)")
    p.add_argument("--value-bytes", type=int, default=None, metavar="N", help="value size (256)")
    p.add_argument("--key-space", type=int, default=None, metavar="N",
                   help="distinct keys written and read (default: 10000)")
    p.add_argument("--read-ratio", type=float, default=None, metavar="F",
                   help="share of reads in every selected workload (mixed: 0.9)")
    p.add_argument("--consistency", choices=("linearizable", "lease", "serializable"),
                   default=None, help="read consistency for every selected workload")
    p.add_argument("--warmup", type=int, default=None, metavar="N",
                   help="untimed operations before each workload (default: 200)")
    p.add_argument("--seed", type=int, default=None, help="seed of the key choice")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="per-operation deadline (default: 10)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the results as JSON to PATH (- for stdout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def spec_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {"ops": args.ops, "connections": args.connections, "clients": args.clients,
           "key_bytes": args.key_bytes, "value_bytes": args.value_bytes,
           "key_space": args.key_space, "read_ratio": args.read_ratio,
           "consistency": args.consistency, "warmup_ops": args.warmup, "seed": args.seed}
    for k in ("ops", "connections", "clients", "key_bytes", "value_bytes", "key_space"):
        if out[k] is not None and out[k] < 1:
            raise ValueError(f"--{k.replace('_', '-')} must be at least 1, not {out[k]}")
    if out["read_ratio"] is not None and not 0 <= out["read_ratio"] <= 1:
        raise ValueError(f"--read-ratio must be between 0 and 1, not {out['read_ratio']}")
    return out


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
    from dengine.cli_security import add_tls_flags

    add_tls_flags(p.add_argument_group("TLS"))
    p.set_defaults(func=_run_bench)
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    from dengine.bench.compare import add_compare_parser

    add_compare_parser(sub)


def _run_bench(args: argparse.Namespace) -> int:
    from dengine.bench.runner import select_workloads
    from dengine.cli_errors import USAGE

    try:
        specs = select_workloads(args.workload, **spec_overrides(args))
    except ValueError as e:
        print(f"dengine: error: {e}", file=sys.stderr)
        return USAGE
    progress = False if args.no_progress else None
    try:
        summaries = _run_loop(_bench(args, specs, progress))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    write_json(args.json, {"results": [s.to_dict() for s in summaries]})
    return 0


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


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
    from dengine.cli_security import client_tls

    recorded = None
    if not args.endpoints and args.target == "dengine":
        from dengine.cli_cluster import recorded_endpoints

        found = recorded_endpoints()
        recorded = os.path.dirname(found[1]) if found else None
    target = make_target(args.target, endpoints, args.timeout, tls=client_tls(args, recorded))
    return await run_all(target, specs, progress=progress)


def _endpoints(args: argparse.Namespace) -> list[str]:
    if args.endpoints:
        return [e for e in args.endpoints.split(",") if e]
    if args.target == "etcd":
        return ["127.0.0.1:2379"]
    from dengine.cli_cluster import recorded_endpoints

    found = recorded_endpoints()
    if found is None:
        from dengine.cli_errors import USAGE, CliError

        raise CliError("no --endpoints given and no local cluster found; start one with "
                       "`dengine cluster up`, or use --embedded", USAGE)
    return found[0]


def write_json(path: str | None, data: Any) -> None:
    if not path:
        return
    text = json.dumps(data, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
    else:
        with open(path, "w") as fh:
            fh.write(text)
