"""Client side of ``Watch``: an async iterator of applied changes that survives failover.

Theory of operation
-------------------
:meth:`WatchMixin.watch` opens a ``Watch`` stream on one member (any member serves watches from
its applied state) and yields one :class:`WatchUpdate` per server response: the events of one
or more whole revisions, or none (a progress notification, with ``progress=True``). It tracks
``revision``: every event of the watch up to it has been yielded. When the stream breaks (the
member died, was cut off, or cancelled the watcher because it fell behind or installed a
snapshot) it reconnects to the next known member, after a short backoff, asking for
``revision + 1``: the server replays from history, so nothing is missed and nothing is seen
twice. Positions only go forward: a lagging member's answers never move ``revision`` back.

When the revisions it needs are no longer kept anywhere (COMPACTED) the iterator raises
:class:`~dengine.errors.WatchCompacted`: re-read the keys and watch again from the read's
revision + 1. A malformed request raises at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from dengine.client._blocking import blocking_iter
from dengine.client.types import Key, to_bytes
from dengine.errors import PermissionDenied, Unauthenticated, Unavailable, WatchCompacted
from dengine.transport import status as S
from dengine.v1 import client_pb2, client_pb2_grpc

__all__ = ["WatchEvent", "WatchUpdate", "WatchMixin", "SyncWatchMixin", "PUT", "DELETE"]

PUT = "put"
DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change: ``type`` is ``"put"`` or ``"delete"``; ``revision`` the log index that made
    it; ``prev_value`` the value before (when asked with ``prev_kv=True`` and there was one)."""

    type: str
    key: bytes
    value: bytes
    revision: int
    version: int
    create_revision: int
    lease: int = 0
    prev_value: bytes | None = None

    @classmethod
    def from_proto(cls, e: client_pb2.Event) -> WatchEvent:
        return cls(DELETE if e.type == client_pb2.Event.DELETE else PUT, e.kv.key, e.kv.value,
                   e.kv.revision, e.kv.version, e.create_revision, e.lease,
                   e.prev_kv.value if e.HasField("prev_kv") else None)


@dataclass(frozen=True, slots=True)
class WatchUpdate:
    """Events of whole revisions (none: a progress notification); ``revision``: every event of
    the watch up to here has been delivered; ``member``: the address that sent it."""

    events: tuple[WatchEvent, ...]
    revision: int
    member: str


class WatchMixin:
    """``watch`` for :class:`~dengine.client.Client` (uses its endpoints and channels)."""

    async def watch(
        self,
        key: Key,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress: bool = False,
        progress_interval_ms: int = 0,
        endpoint: str | None = None,
        backoff_s: float = 0.1,
    ) -> AsyncGenerator[WatchUpdate, None]:
        """Changes to ``key`` (every key under it with ``prefix``) from ``start_revision`` (0:
        from now); runs until the caller stops iterating. ``endpoint`` is the member to try
        first; ``progress`` also yields the empty progress notifications."""
        if start_revision < 0:
            raise ValueError("start_revision must be >= 0")
        k = to_bytes(key)
        members = _members(self, endpoint)
        turn = 0
        next_rev = start_revision  # 0 until a server fixes "now"
        failures = 0
        while True:
            addr = members[turn % len(members)]
            req = client_pb2.WatchRequest(key=k, prefix=prefix, start_revision=next_rev,
                                          prev_kv=prev_kv,
                                          progress_interval_ms=progress_interval_ms)
            try:
                async for resp in _open(self, addr, req):
                    failures = 0
                    err = S.from_proto(resp.error)
                    if err is not None:
                        raise err
                    at = max(resp.revision, next_rev - 1)
                    if resp.canceled:
                        needed = max(next_rev, at + 1)
                        if resp.compact_revision > needed:
                            raise WatchCompacted(needed, resp.compact_revision)
                        next_rev = needed
                        break
                    if resp.created and next_rev == 0:
                        next_rev = at + 1
                        continue
                    events = tuple(WatchEvent.from_proto(e) for e in resp.events
                                   if e.kv.revision >= next_rev)
                    next_rev = max(next_rev, at + 1)
                    if events or (progress and not resp.created):
                        yield WatchUpdate(events, next_rev - 1, addr)
            except (Unavailable, TimeoutError, grpc.RpcError):
                failures += 1
            turn += 1
            members = _members(self, None, members)
            await asyncio.sleep(min(backoff_s * failures, 1.0))


def _members(client: Any, first: str | None, old: list[str] | None = None) -> list[str]:
    addrs = [*([first] if first else []), *client.endpoints, *client._members.values()]
    if old:
        addrs = [*old, *addrs]
    return list(dict.fromkeys(addrs))


async def _open(client: Any, addr: str, req: client_pb2.WatchRequest) -> AsyncIterator[Any]:
    stub = client_pb2_grpc.WatchStub(client._conn(addr).pick().channel)
    call = stub.Watch(req)
    try:
        async for resp in call:
            yield resp
    except grpc.RpcError as e:
        err = S.from_rpc_error(e)
        if isinstance(err, Unavailable | TimeoutError | Unauthenticated | PermissionDenied):
            raise err from e  # the last two are final: no member will answer otherwise
        raise Unavailable(f"watch stream to {addr} broke: {err}") from e
    finally:
        call.cancel()


class SyncWatchMixin:
    """``watch`` for :class:`~dengine.client.SyncClient`: a blocking iterator."""

    def watch(self, key: Key, **options: Any) -> Iterator[WatchUpdate]:
        """Blocking :meth:`WatchMixin.watch` (same arguments); stop by breaking out of the
        loop or closing the iterator."""
        return blocking_iter(self, self._client.watch(key, **options))  # type: ignore[attr-defined]
