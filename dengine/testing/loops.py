"""Run a coroutine on a fresh asyncio or uvloop loop and fail on unhandled loop exceptions.

The async tests of every layer run on both loops (as asyncpg and uvloop do) through this one
runner: an exception that no task retrieved, or that a callback raised, fails the test instead
of scrolling past in a log.

One kind of report is not ours and is left out: grpc.aio binds its completion-queue poller to
every event loop that used gRPC in the process, and when a later loop (the next test's) wakes
the poller after an earlier loop was closed, the poller's callback raises
``RuntimeError('Event loop is closed')`` (or ``BlockingIOError`` when two live loops race for
its wake-up byte); see grpc/grpc#25364 and #23377. Only reports whose callback is exactly that
poller are left out.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

LOOP_KINDS = ("asyncio", "uvloop")

_GRPC_POLLER = "PollerCompletionQueue._handle_events"


def is_grpc_poller_noise(context: dict[str, Any]) -> bool:
    """True for grpc.aio's poller waking a loop that is closed or not the one it serves."""
    exc = context.get("exception")
    where = f"{context.get('message', '')} {context.get('handle', '')!r}"
    if _GRPC_POLLER not in where:
        return False
    return isinstance(exc, BlockingIOError) or (
        isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc)
    )


def describe_problems(problems: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{p.get('message')}: {p.get('exception')!r} {p.get('task') or p.get('future') or ''}"
        for p in problems
    )


def run_checked(
    kind: str, coro_fn: Callable[..., Awaitable[Any]], *args: Any, timeout: float = 20
) -> Any:
    """``coro_fn(*args)`` on a new loop of ``kind`` ('asyncio' or 'uvloop') within ``timeout``
    seconds; raises AssertionError if the loop saw an unhandled exception."""
    if kind not in LOOP_KINDS:
        raise ValueError(f"unknown loop kind {kind!r}; choose one of {', '.join(LOOP_KINDS)}")
    problems: list[dict[str, Any]] = []

    def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not is_grpc_poller_noise(context):
            problems.append(context)

    async def main() -> Any:
        asyncio.get_running_loop().set_exception_handler(handler)
        return await asyncio.wait_for(coro_fn(*args), timeout)

    result = uvloop.run(main()) if kind == "uvloop" else asyncio.run(main())
    gc.collect()  # "Task exception was never retrieved" is reported when a task is collected
    if problems:
        raise AssertionError("unhandled event-loop exception(s): " + describe_problems(problems))
    return result
