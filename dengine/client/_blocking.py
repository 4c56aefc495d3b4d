"""A blocking iterator over an async generator run on the sync client's loop thread."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["blocking_iter"]


def blocking_iter(client: Any, agen: AsyncGenerator[T, None]) -> Iterator[T]:
    """Each item of ``agen``, produced on ``client``'s loop (``client._run``); the generator is
    closed there too when the caller stops iterating, unless that loop is already closed."""
    try:
        while True:
            try:
                yield client._run(agen.__anext__())
            except StopAsyncIteration:
                return
    finally:
        if not client._loop.is_closed():
            client._run(agen.aclose())
