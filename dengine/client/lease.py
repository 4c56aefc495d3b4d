"""Client side of leases: grant, revoke, keep alive, time to live (see
:mod:`dengine.node.leases`).

Every call goes to the leader through the client's retry loop (NOT_LEADER is followed, an
unreachable leader rediscovered). :meth:`LeaseMixin.keep_alive` renews a lease every third of
its TTL until the caller stops iterating; a keep-alive that fails (leader killed) is retried on
the new leader, which has given every lease a full TTL on taking over, so a lease kept alive
through a failover survives it. A lease that is gone raises
:class:`~dengine.errors.LeaseNotFound`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from dengine.client._blocking import blocking_iter
from dengine.errors import LeaseNotFound, Unavailable
from dengine.transport import status as S
from dengine.v1 import client_pb2 as pb
from dengine.v1 import client_pb2_grpc

__all__ = ["Lease", "LeaseStatus", "LeaseMixin", "SyncLeaseMixin"]


@dataclass(frozen=True, slots=True)
class Lease:
    """A granted lease: its id, TTL in seconds and the revision of the grant."""

    id: int
    ttl: int
    revision: int


@dataclass(frozen=True, slots=True)
class LeaseStatus:
    """A lease by the leader's clock: seconds left (-1: it does not exist), granted TTL, keys."""

    id: int
    ttl: int
    granted_ttl: int
    keys: tuple[bytes, ...]


def _check(resp: Any, lease_id: int) -> None:
    if resp.error.code == pb.NOT_FOUND:
        raise LeaseNotFound(lease_id)
    exc = S.from_proto(resp.error)
    if exc is not None:
        raise exc


class LeaseMixin:
    """Lease calls for :class:`~dengine.client.Client`."""

    async def _lease(self, op: str, method: str, req: Any, lease_id: int,
                     timeout: float | None) -> Any:
        tries = 0

        async def attempt(address: str, remaining: float) -> Any:
            nonlocal tries
            tries += 1
            conn = self._conn(address)  # type: ignore[attr-defined]
            stub = client_pb2_grpc.LeaseStub(conn.pick().channel)
            try:
                if method == "KeepAlive":
                    call = stub.KeepAlive(iter([req]), timeout=remaining)
                    resp = await call.read()
                    call.cancel()
                    if resp is grpc.aio.EOF:
                        raise Unavailable("the keep-alive stream ended without an answer")
                else:
                    resp = await getattr(stub, method)(req, timeout=remaining)
            except grpc.RpcError as e:
                raise S.from_rpc_error(e) from e
            if (method == "Grant" and tries > 1 and resp.error.code == pb.INVALID_ARGUMENT
                    and "already exists" in resp.error.message):
                return pb.LeaseGrantResponse(id=req.id, ttl=req.ttl)  # our own earlier try
            if method == "Revoke" and tries > 1 and resp.error.code == pb.NOT_FOUND:
                # An earlier try may have revoked it with its answer lost (a failover): a
                # revoke carries no session, so "not found" now is the goal reached.
                return pb.LeaseRevokeResponse(revision=0)
            _check(resp, lease_id)
            return resp

        return await self._retry(op, attempt, timeout=timeout)  # type: ignore[attr-defined]

    async def grant(self, ttl: int, *, lease_id: int = 0, timeout: float | None = None) -> Lease:
        """A new lease of ``ttl`` seconds (``lease_id`` 0: a random id). The id is fixed before
        the first attempt, so a grant retried after its answer was lost finds its own lease
        ("already exists", then ``revision`` is 0) instead of granting a second one."""
        chosen = lease_id or (secrets.randbits(63) or 1)
        resp = await self._lease("grant", "Grant", pb.LeaseGrantRequest(ttl=ttl, id=chosen),
                                 chosen, timeout)
        return Lease(resp.id, resp.ttl, resp.revision)

    async def revoke(self, lease_id: int, *, timeout: float | None = None) -> int:
        """Revoke a lease, deleting its keys in one revision (returned). Retried after a lost
        answer, a revoke that finds the lease gone succeeds with revision 0 (no session makes a
        revoke apply once; the lease being gone is what was asked)."""
        resp = await self._lease("revoke", "Revoke", pb.LeaseRevokeRequest(id=lease_id),
                                 lease_id, timeout)
        return resp.revision

    async def time_to_live(self, lease_id: int, *, keys: bool = False,
                           timeout: float | None = None) -> LeaseStatus:
        """The lease by the leader's clock (``ttl`` -1: it does not exist)."""
        resp = await self._lease("time_to_live", "TimeToLive",
                                 pb.LeaseTimeToLiveRequest(id=lease_id, keys=keys), lease_id,
                                 timeout)
        return LeaseStatus(lease_id, resp.ttl, resp.granted_ttl, tuple(resp.keys))

    async def keep_alive_once(self, lease_id: int, *, timeout: float | None = None) -> int:
        """Renew the lease once on the leader; its TTL in seconds."""
        resp = await self._lease("keep_alive", "KeepAlive",
                                 pb.LeaseKeepAliveRequest(id=lease_id), lease_id, timeout)
        return resp.ttl

    async def keep_alive(self, lease_id: int, *,
                         interval_s: float | None = None) -> AsyncIterator[int]:
        """Renew the lease every ``interval_s`` (default a third of its TTL), yielding its TTL
        after each renewal, until the caller stops; raises LeaseNotFound once it is gone."""
        ttl = await self.keep_alive_once(lease_id)
        while True:
            yield ttl
            pause = interval_s if interval_s is not None else max(ttl / 3, 0.05)
            await asyncio.sleep(pause)
            ttl = await self.keep_alive_once(lease_id, timeout=max(ttl - pause, 0.5))


class SyncLeaseMixin:
    """Blocking lease calls for :class:`~dengine.client.SyncClient`."""

    def grant(self, ttl: int, **kw: Any) -> Lease:
        return self._run(self._client.grant(ttl, **kw))  # type: ignore[attr-defined]

    def revoke(self, lease_id: int, **kw: Any) -> int:
        return self._run(self._client.revoke(lease_id, **kw))  # type: ignore[attr-defined]

    def time_to_live(self, lease_id: int, **kw: Any) -> LeaseStatus:
        c = self._client  # type: ignore[attr-defined]
        return self._run(c.time_to_live(lease_id, **kw))  # type: ignore[attr-defined]

    def keep_alive_once(self, lease_id: int, **kw: Any) -> int:
        c = self._client  # type: ignore[attr-defined]
        return self._run(c.keep_alive_once(lease_id, **kw))  # type: ignore[attr-defined]

    def keep_alive(self, lease_id: int, **kw: Any) -> Iterator[int]:
        """Blocking :meth:`LeaseMixin.keep_alive`: yields the TTL after each renewal."""
        return blocking_iter(self, self._client.keep_alive(lease_id, **kw))  # type: ignore[attr-defined]
