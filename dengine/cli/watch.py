"""``dengine watch``: print the changes to a key or a prefix as they are applied.

One line per event, ``PUT key value (rev N, version V)`` or ``DELETE key (rev N)``, until Ctrl-C
or ``--count`` events. ``--rev N`` starts at revision N (replayed from the watch history; older
than the history is exit code 1 with the oldest revision kept). The watch resumes on another
member when the one serving it goes away, without a gap or a repeated event.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``watch`` to the ``dengine`` command."""
    from dengine.cli.client import _common, run
    from dengine.cli.errors import EXIT_CODES_HELP

    p = subparsers.add_parser(
        "watch", help="print changes to a key (or every key under a prefix) as they happen",
        description=__doc__.split("\n\n")[1], parents=[_common()], epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("key")
    p.add_argument("--prefix", action="store_true", help="watch every key that starts with KEY")
    p.add_argument("--rev", type=int, default=0, metavar="N",
                   help="start at revision N (default: from now)")
    p.add_argument("--prev-kv", action="store_true", help="also print each previous value")
    p.add_argument("--count", type=int, default=0, metavar="N",
                   help="exit after N events (default: run until Ctrl-C)")
    p.add_argument("--progress", action="store_true",
                   help="also print progress notifications (the revision seen so far)")
    p.set_defaults(func=lambda args: run(args, _watch))


def _text(b: bytes) -> str:
    return b.decode("utf-8", errors="backslashreplace")


def _watch(client: Any, args: argparse.Namespace) -> int:
    if args.rev < 0:
        from dengine.errors import InvalidArgument

        raise InvalidArgument("--rev must be >= 0")
    seen = 0
    updates = client.watch(args.key, prefix=args.prefix, start_revision=args.rev,
                           prev_kv=args.prev_kv, progress=args.progress)
    try:
        for u in updates:
            if not u.events:
                print(f"PROGRESS rev {u.revision}", flush=True)
            for e in u.events:
                if e.type == "put":
                    line = f"PUT {_text(e.key)} {_text(e.value)} (rev {e.revision}, " \
                           f"version {e.version}" + (f", lease {e.lease}" if e.lease else "") + ")"
                else:
                    line = f"DELETE {_text(e.key)} (rev {e.revision})"
                if args.prev_kv and e.prev_value is not None:
                    line += f" was {_text(e.prev_value)}"
                print(line, flush=True)
                seen += 1
                if args.count and seen >= args.count:
                    return 0
    finally:
        updates.close()
        sys.stdout.flush()
    return 0
