"""Telling "nothing listens there" from "the cluster is busy", for clients that fail fast.

A ``fail_fast`` client (the ``dengine`` command's) gives up at once when no endpoint accepts a
connection at all (refused, unknown host): waiting for the deadline cannot help, and the user
learns in milliseconds that the addresses are wrong or the cluster is down.
"""

from __future__ import annotations

import re

from dengine.errors import Unavailable

__all__ = ["_Unreachable", "_no_connection"]


class _Unreachable(Unavailable):
    """No endpoint accepts a connection: final for a ``fail_fast`` client."""


_NO_CONNECTION = re.compile(
    r"connection refused|failed to connect to remote host|errors resolving|domain name not found"
    r"|name or service not known|no address associated",
    re.I,
)


def _no_connection(exc: object) -> str:
    """Why ``exc`` shows that nothing could be connected to ("" when it does not)."""
    if not isinstance(exc, Unavailable):
        return ""
    m = _NO_CONNECTION.search(exc.reason)
    if m is None:
        return ""
    text = m.group(0).lower()
    return "unknown host" if "resolv" in text or "name" in text or "address" in text else text
