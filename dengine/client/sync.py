"""A blocking client for scripts: the async :class:`~dengine.client.Client` on a private loop.

:class:`SyncClient` starts one daemon thread running its own event loop (uvloop) and submits each call
to it, waiting for the answer; so scripts and REPLs need no asyncio, and the blocking client
shares every behaviour (discovery, retries, sessions, batching) with the async one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from dengine.client.api import ConsistencyArg
from dengine.client.client import Client
from dengine.client.lease import SyncLeaseMixin
from dengine.client.types import (
    CasResult,
    Consistency,
    Delete,
    Key,
    KeyValue,
    Member,
    NodeStatus,
    Put,
    ScanPage,
)
from dengine.client.watch import SyncWatchMixin

__all__ = ["SyncClient"]

T = TypeVar("T")


class SyncClient(SyncWatchMixin, SyncLeaseMixin):
    """Blocking twin of :class:`Client`: the same methods and arguments, each returning the
    value. Close it (or use ``with``). ``options`` are :class:`Client`'s."""

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

    @property
    def client(self) -> Client:
        """The async client underneath (its loop runs in this object's thread)."""
        return self._client

    @property
    def leader(self) -> str | None:
        """The leader's address as last known (see :attr:`Client.leader`)."""
        return self._client.leader

    # -- KV: the methods of Client, blocking (see dengine.client.api) --------------------
    def put(self, key: Key, value: Key, *, timeout: float | None = None,
            endpoint: str | None = None, lease: int = 0) -> int:
        """Store ``value`` under ``key``; returns the revision (see :meth:`Client.put`)."""
        return self._run(self._client.put(key, value, timeout=timeout, endpoint=endpoint,
                                          lease=lease))

    def get(self, key: Key, *, consistency: ConsistencyArg = Consistency.LINEARIZABLE,
            timeout: float | None = None, endpoint: str | None = None) -> KeyValue | None:
        """The key's value and revision, or None (see :meth:`Client.get`)."""
        return self._run(self._client.get(key, consistency=consistency, timeout=timeout,
                                          endpoint=endpoint))

    def get_value(self, key: Key, *, consistency: ConsistencyArg = Consistency.LINEARIZABLE,
                  timeout: float | None = None, endpoint: str | None = None) -> bytes | None:
        """Just the value, or None (see :meth:`Client.get_value`)."""
        return self._run(self._client.get_value(key, consistency=consistency, timeout=timeout,
                                                endpoint=endpoint))

    def get_many(self, keys: Iterable[Key], *,
                 consistency: ConsistencyArg = Consistency.LINEARIZABLE,
                 timeout: float | None = None, endpoint: str | None = None
                 ) -> dict[bytes, KeyValue]:
        """The keys that exist among ``keys`` (see :meth:`Client.get_many`)."""
        return self._run(self._client.get_many(keys, consistency=consistency, timeout=timeout,
                                               endpoint=endpoint))

    def delete(self, key: Key, *, timeout: float | None = None,
               endpoint: str | None = None) -> bool:
        """Delete ``key``; True if it existed (see :meth:`Client.delete`)."""
        return self._run(self._client.delete(key, timeout=timeout, endpoint=endpoint))

    def compare_and_set(self, key: Key, *, expected_value: Key | None = None,
                        expected_version: int | None = None, expected_absent: bool = False,
                        new_value: Key | None = None, timeout: float | None = None
                        ) -> CasResult:
        """Conditional write (see :meth:`Client.compare_and_set`)."""
        return self._run(self._client.compare_and_set(
            key, expected_value=expected_value, expected_version=expected_version,
            expected_absent=expected_absent, new_value=new_value, timeout=timeout))

    cas = compare_and_set

    def write_batch(self, ops: Iterable[Put | Delete] = (), *,
                    puts: Mapping[Key, Key] | Iterable[tuple[Key, Key]] = (),
                    deletes: Iterable[Key] = (), timeout: float | None = None) -> int:
        """Atomic puts and deletes; returns the revision (see :meth:`Client.write_batch`)."""
        return self._run(self._client.write_batch(ops, puts=puts, deletes=deletes,
                                                  timeout=timeout))

    batch = write_batch

    def scan(self, start: Key = b"", end: Key = b"", *, prefix: Key = b"", limit: int = 0,
             consistency: ConsistencyArg = Consistency.LINEARIZABLE,
             timeout: float | None = None, endpoint: str | None = None) -> ScanPage:
        """One page of keys (see :meth:`Client.scan`)."""
        return self._run(self._client.scan(start, end, prefix=prefix, limit=limit,
                                           consistency=consistency, timeout=timeout,
                                           endpoint=endpoint))

    def scan_iter(self, start: Key = b"", end: Key = b"", *, prefix: Key = b"",
                  page_size: int = 1000,
                  consistency: ConsistencyArg = Consistency.LINEARIZABLE,
                  timeout: float | None = None, endpoint: str | None = None
                  ) -> Iterator[KeyValue]:
        """Every key of the range, page by page (see :meth:`Client.scan_iter`). One hop to the
        client's loop per page, not per key, and the next page is already being read while the
        caller goes through this one, so a long scan runs at the async client's speed."""
        def fetch(cursor: Key) -> concurrent.futures.Future[ScanPage]:
            if self._loop.is_closed():
                raise RuntimeError("the SyncClient is closed")
            return asyncio.run_coroutine_threadsafe(self._client.scan(
                cursor, end, prefix=prefix, limit=page_size, consistency=consistency,
                timeout=timeout, endpoint=endpoint), self._loop)

        pending: concurrent.futures.Future[ScanPage] | None = fetch(start)
        try:
            while pending is not None:
                page = pending.result()
                pending = fetch(page.continuation) if page.continuation else None
                yield from page.kvs
        finally:
            if pending is not None:  # the caller stopped early: drop the read ahead
                pending.cancel()

    # -- cluster ----------------------------------------------------------------------------
    def status(self, endpoint: str | None = None, *, timeout: float | None = None
               ) -> NodeStatus:
        """Status of ``endpoint``, or of the leader (see :meth:`Client.status`)."""
        return self._run(self._client.status(endpoint, timeout=timeout))

    def statuses(self, *, timeout: float = 1.0) -> dict[str, NodeStatus | Exception]:
        """The status of every known endpoint, or its error (see :meth:`Client.statuses`)."""
        return self._run(self._client.statuses(timeout=timeout))

    def alarm_disarm(self, endpoint: str, *, timeout: float | None = None) -> list[str]:
        """Clear the NOSPACE alarm of the node at ``endpoint`` (see
        :meth:`Client.alarm_disarm`); returns the alarms still raised there."""
        return self._run(self._client.alarm_disarm(endpoint, timeout=timeout))

    def compact_storage(self, endpoint: str, *, timeout: float | None = None) -> float:
        """Flush and compact the state machine store of the node at ``endpoint`` (see
        :meth:`Client.compact_storage`); the seconds it took there."""
        return self._run(self._client.compact_storage(endpoint, timeout=timeout))

    def transfer_leader(self, target_id: int, *, timeout: float | None = None) -> None:
        """Hand leadership to node ``target_id`` (see :meth:`Client.transfer_leader`)."""
        self._run(self._client.transfer_leader(target_id, timeout=timeout))

    def add_learner(self, node_id: int, address: str, *, timeout: float | None = None
                    ) -> list[Member]:
        """Add a learner; returns the new member list (see :meth:`Client.add_learner`)."""
        return self._run(self._client.add_learner(node_id, address, timeout=timeout))

    def promote(self, node_id: int, *, timeout: float | None = None) -> list[Member]:
        """Make a learner a voter (see :meth:`Client.promote`)."""
        return self._run(self._client.promote(node_id, timeout=timeout))

    def remove_member(self, node_id: int, *, timeout: float | None = None) -> list[Member]:
        """Remove a member (see :meth:`Client.remove_member`)."""
        return self._run(self._client.remove_member(node_id, timeout=timeout))

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
