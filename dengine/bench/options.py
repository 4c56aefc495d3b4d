"""Flags and helpers shared by ``dengine bench`` and ``dengine bench compare``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from dengine.cli.endpoints import seconds

__all__ = ["add_workload_flags", "spec_overrides", "run_loop", "write_json"]


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
    p.add_argument("--timeout", type=seconds, default=10.0, metavar="SECONDS",
                   help="per-operation deadline (default: 10)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the results as JSON to PATH (- for stdout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def spec_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The workload settings given on the command line (None: the workload's own)."""
    out = {"ops": args.ops, "connections": args.connections, "clients": args.clients,
           "key_bytes": args.key_bytes, "value_bytes": args.value_bytes,
           "key_space": args.key_space, "read_ratio": args.read_ratio,
           "consistency": args.consistency, "warmup_ops": args.warmup, "seed": args.seed}
    for k in ("ops", "connections", "clients", "key_bytes", "value_bytes", "key_space"):
        if out[k] is not None and out[k] < 1:
            raise ValueError(f"--{k.replace('_', '-')} must be at least 1, not {out[k]}")
    if out["warmup_ops"] is not None and out["warmup_ops"] < 0:
        raise ValueError(f"--warmup must be 0 or more, not {out['warmup_ops']}")
    if out["read_ratio"] is not None and not 0 <= out["read_ratio"] <= 1:
        raise ValueError(f"--read-ratio must be between 0 and 1, not {out['read_ratio']}")
    return out


def run_loop(coro: Any) -> Any:
    """Run ``coro`` on uvloop when installed, else asyncio."""
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def write_json(path: str | None, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` (``-``: stdout; None: nowhere)."""
    if not path:
        return
    text = json.dumps(data, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
    else:
        with open(path, "w") as fh:
            fh.write(text)
