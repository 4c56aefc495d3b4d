"""``dengine alarm``: list the alarms members raised, and disarm them once the cause is gone.

``alarm list`` asks every member for its status and prints its alarms (NOSPACE: its storage
quota is used up; "NOSPACE on N": member N's, as the log recorded it). While any member has one
the cluster refuses writes other than deletes. ``alarm disarm`` asks every member to clear its
alarm, through the log; a member still over its quota refuses, so free space first (delete
keys, or raise ``storage.quota_bytes`` and restart it), then disarm.
"""

from __future__ import annotations

import argparse
from typing import Any

from dengine.cli.client import _common, run
from dengine.cli.each_member import act_on_each, print_each
from dengine.cli.errors import EXIT_CODES_HELP
from dengine.errors import QuotaExceeded

__all__ = ["register"]

_FMT = argparse.RawDescriptionHelpFormatter


def register(subparsers: Any) -> None:
    """Add ``alarm list`` and ``alarm disarm`` to the ``dengine`` command."""
    common = _common()
    alarm = subparsers.add_parser(
        "alarm", help="list or disarm alarms (NOSPACE: a member's storage quota is used up)",
        description=__doc__.split("\n\n", 1)[1], epilog=EXIT_CODES_HELP, formatter_class=_FMT)
    alarm.set_defaults(func=lambda _a: (alarm.print_help(), 2)[1])
    sub = alarm.add_subparsers(title="commands", metavar="COMMAND")
    for name, help, func in (("list", "show the alarms every member has raised", _list),
                             ("disarm", "clear every member's alarm once it is under its quota",
                              _disarm)):
        p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                           parents=[common], epilog=EXIT_CODES_HELP, formatter_class=_FMT)
        p.set_defaults(func=lambda args, f=func: run(args, f))


def _describe(st: Any) -> str:
    quota = f"{st.used_bytes} of {st.quota_bytes} bytes" if st.quota_bytes else \
        f"{st.used_bytes} bytes, no quota"
    return f"node {st.id} at {st.address}: {', '.join(st.alarms) or 'no alarm'} ({quota})"


def _list(c: Any, args: argparse.Namespace) -> int:
    return print_each(c, _describe)


def _disarm(c: Any, args: argparse.Namespace) -> int:
    def disarm(addr: str, st: Any) -> str:
        left = c.alarm_disarm(addr, timeout=args.timeout)
        return f"alarms left: {', '.join(left)}" if left else "no alarm"

    return act_on_each(c, disarm, not_done="not disarmed", refused=QuotaExceeded,
                       refusal="still over its quota, alarm kept")
