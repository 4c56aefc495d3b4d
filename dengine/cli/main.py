"""The ``dengine`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dengine.errors import DengineError


def build_parser() -> argparse.ArgumentParser:
    from dengine._version import __version__
    from dengine.cli.errors import EXIT_CODES_HELP

    parser = argparse.ArgumentParser(
        prog="dengine", description="dengine: a Raft consensus engine for Python.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="store_true",
        help="print the version and whether the compiled core is in use",
    )
    parser.set_defaults(func=None, _version=__version__)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    from dengine.cli.serve import add_serve_parser

    add_serve_parser(sub)
    from dengine.cli import client as cli_client
    from dengine.cli import cluster as cli_cluster

    cli_cluster.register(sub)
    cli_client.register(sub)
    from dengine.cli import security as cli_security

    cli_security.register(sub)
    from dengine.cli import alarm as cli_alarm

    cli_alarm.register(sub)
    from dengine.cli import storage as cli_storage

    cli_storage.register(sub)
    from dengine.cli import lease as cli_lease
    from dengine.cli import watch as cli_watch

    cli_watch.register(sub)
    cli_lease.register(sub)
    from dengine.bench import cli as cli_bench

    cli_bench.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except KeyboardInterrupt:  # Ctrl-C while the command is still loading
        return 130
    args = parser.parse_args(argv)
    try:
        if args.version:
            from dengine import core_info

            print(f"dengine {args._version}; {core_info()}")
            return 0
        if args.func is None:
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except DengineError as e:
        from dengine.cli.errors import exit_code

        print(f"dengine: error: {e}", file=sys.stderr)
        return exit_code(e)
