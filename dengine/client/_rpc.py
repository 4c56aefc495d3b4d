"""Small pieces every client call shares."""

from __future__ import annotations

import asyncio

from dengine.transport import status as S
from dengine.v1 import client_pb2

__all__ = ["raise_error", "now"]


def raise_error(err: client_pb2.Error) -> None:
    """Raise the typed error a response carries (nothing when it carries none)."""
    exc = S.from_proto(err)
    if exc is not None:
        raise exc


def now() -> float:
    """The running loop's clock (deadlines are measured on it)."""
    return asyncio.get_running_loop().time()
