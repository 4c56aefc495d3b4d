"""The ``serve`` subcommand's flags, apart from the node: registering them imports only the
config module, so ``dengine --version`` and ``--help`` load neither gRPC nor RocksDB; the node
(:mod:`dengine.node.serve`) is imported when ``serve`` runs."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_serve_parser"]


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand: one flag per config key, and ``--join``."""
    from dengine.config import add_config_flags

    p = subparsers.add_parser(
        "serve", help="run a node", description="Run one dengine node until SIGTERM/SIGINT."
    )
    add_config_flags(p)
    p.add_argument(
        "--join", dest="cluster.join", metavar="HOST:PORT", default=argparse.SUPPRESS,
        help="address of a member to ask to add this new node (short for --cluster.join)",
    )  # fmt: skip
    p.set_defaults(func=_run_serve)
    return p


def _run_serve(args: argparse.Namespace) -> int:
    from dengine.node.serve import run_serve

    return run_serve(args)
