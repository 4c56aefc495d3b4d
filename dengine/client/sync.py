"""A blocking client for scripts: the async :class:`~dengine.client.Client` on a private loop.

:class:`SyncClient` starts one daemon thread running its own event loop (uvloop) and submits each call
to it, waiting for the answer; so scripts and REPLs need no asyncio, and the blocking client
shares every behaviour (discovery, retries, sessions, batching) with the async one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from dengine.client.client import Client
from dengine.client.lease import SyncLeaseMixin
from dengine.client.types import KeyValue
from dengine.client.watch import SyncWatchMixin

__all__ = ["SyncClient"]

T = TypeVar("T")

# Methods forwarded as-is: the name on SyncClient runs the coroutine of the same name on Client.
_FORWARDED = (
    "put",
    "get",
    "get_value",
    "get_many",
    "delete",
    "compare_and_set",
    "write_batch",
    "scan",
    "status",
    "statuses",
    "transfer_leader",
    "add_learner",
    "promote",
    "remove_member",
)


class SyncClient(SyncWatchMixin, SyncLeaseMixin):
    """Blocking twin of :class:`Client`; same arguments and methods. Close it (or use ``with``)."""

    def __init__(self, endpoints: Any, **options: Any) -> None:
        self._loop = _new_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="dengine-sync-client", daemon=True
        )
        self._thread.start()
        self._client: Client = self._run(_make(endpoints, options))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("the SyncClient is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __getattr__(self, name: str) -> Any:
        if name in _FORWARDED:
            method = getattr(self._client, name)

            def call(*args: Any, **kwargs: Any) -> Any:
                return self._run(method(*args, **kwargs))

            call.__name__ = name
            call.__doc__ = method.__doc__
            return call
        raise AttributeError(name)

    @property
    def client(self) -> Client:
        """The async client underneath (its loop runs in this object's thread)."""
        return self._client

    @property
    def leader(self) -> str | None:
        return self._client.leader

    def scan_iter(self, *args: Any, **kwargs: Any) -> Iterator[KeyValue]:
        """Every key of the range, page by page (see :meth:`Client.scan_iter`)."""
        agen = self._client.scan_iter(*args, **kwargs)
        try:
            while True:
                try:
                    yield self._run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._run(agen.aclose())

    def close(self) -> None:
        """Close the channels, let every task on the loop end, then stop the loop thread.

        Stopping the loop at once would strand the tasks still winding down (a call another
        thread is waiting on, a cancelled discovery, gRPC's own): the waiter would block forever
        and asyncio would report "Task was destroyed but it is pending!" at exit."""
        if self._loop.is_closed():
            return
        try:
            self._run(_shutdown(self._client))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (it is a dependency), else the default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _shutdown(client: Client, grace_s: float = 1.0) -> None:
    """Close ``client``; wait up to ``grace_s`` for the loop's other tasks to end (closing
    fails the calls in flight), cancel and await those that do not, close async generators."""
    await client.close()
    me = asyncio.current_task()
    pending = {t for t in asyncio.all_tasks() if t is not me}
    if pending:
        _, pending = await asyncio.wait(pending, timeout=grace_s)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=grace_s)
    await asyncio.get_running_loop().shutdown_asyncgens()


async def _make(endpoints: Any, options: dict[str, Any]) -> Client:
    return Client(endpoints, **options)
