"""``dengine storage``: what each member's stores owe to compaction, and compacting them.

``storage status`` asks every member for its status and prints the compaction bytes its
RocksDB stores (state machine and log) estimate they owe and the flushes and compactions
running. ``storage compact`` asks every member in turn to flush and compact its state machine
store (as etcd's ``defrag``: maintenance, each member on its own, not through the log): after a
bulk load, so that the load's level-0 files and memtables are not compacted later in the middle
of ordinary traffic. Reads and writes go on meanwhile; it needs the ``admin`` role.
"""

from __future__ import annotations

import argparse
from typing import Any

from dengine.cli.client import _common, run
from dengine.cli.each_member import act_on_each, print_each
from dengine.cli.endpoints import seconds
from dengine.cli.errors import EXIT_CODES_HELP
from dengine.errors import DengineError

__all__ = ["register"]

_FMT = argparse.RawDescriptionHelpFormatter


def register(subparsers: Any) -> None:
    """Add ``storage status`` and ``storage compact`` to the ``dengine`` command."""
    common = _common()
    storage = subparsers.add_parser(
        "storage", help="members' storage: compaction owed, or compact it (maintenance)",
        description=__doc__.split("\n\n", 1)[1], epilog=EXIT_CODES_HELP, formatter_class=_FMT)
    storage.set_defaults(func=lambda _a: (storage.print_help(), 2)[1])
    sub = storage.add_subparsers(title="commands", metavar="COMMAND")
    for name, help, func in (
            ("status", "show what every member's stores owe to compaction", _status),
            ("compact", "flush and compact every member's state machine store, one at a time",
             _compact)):
        p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                           parents=[common], epilog=EXIT_CODES_HELP, formatter_class=_FMT)
        p.set_defaults(func=lambda args, f=func: run(args, f))
        if name == "compact":
            p.add_argument("--wait", type=seconds, default=600.0, metavar="SECONDS",
                           help="how long one member's compaction may take (default: 600)")


def _describe(st: Any) -> str:
    return (f"node {st.id} at {st.address}: {st.compaction_pending_bytes} compaction bytes "
            f"owed, {st.compactions_running} flushes/compactions running")


def _status(c: Any, args: argparse.Namespace) -> int:
    return print_each(c, _describe)


def _compact(c: Any, args: argparse.Namespace) -> int:
    def compact(addr: str, st: Any) -> str:
        return f"compacted in {c.compact_storage(addr, timeout=args.wait):.2f}s"

    return act_on_each(c, compact, not_done="not compacted", refused=DengineError,
                       refusal="not compacted")
