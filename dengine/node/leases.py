"""The node's side of leases: the leader's expiry clock and the ``Lease`` service.

Theory of operation
-------------------
The lease table lives in the KV machine (:mod:`dengine.statemachine.leases`) and changes only
through log entries. Time is the leader's alone: :class:`LeaseKeeper` keeps a deadline per lease
on this node's monotonic clock; every :data:`TICK_S` it syncs the deadlines with the table (a new
lease gets ``now + ttl``, a revoked one is dropped) and, when this node leads, proposes a
REVOKE flagged as an expiry for each lease past its deadline (once: a lease being revoked is not
proposed again until that proposal fails). Every replica applies the revoke at the same index,
deleting the same keys; a revoke that loses a race with another applies as a no-op.

When this node becomes leader (a term it had not led) every lease's deadline becomes ``now +
ttl``, as in etcd: a client keeping a lease alive through a failover has a full TTL to find the
new leader, so no lease expires early because leadership moved. A lease may live longer than
its TTL across a failover, never shorter.

``KeepAlive`` and ``TimeToLive`` are the leader's (its clock holds the deadlines); a follower
answers NOT_LEADER with the leader's address. ``Grant`` and ``Revoke`` are writes. A put with a
lease goes through :func:`lease_put`, which the ``Kv.Put`` handler calls when ``lease`` is set.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from typing import TYPE_CHECKING, Any

from dengine.errors import DengineError, InvalidArgument, LeaseNotFound
from dengine.statemachine import leases as L
from dengine.statemachine.kv import KVStateMachine
from dengine.transport.status import to_proto
from dengine.transport.strict import add_strict
from dengine.v1 import client_pb2 as pb
from dengine.v1 import client_pb2_grpc

if TYPE_CHECKING:
    from dengine.node.node import Node
    from dengine.node.service import RequestHandler

__all__ = ["LeaseKeeper", "start_lease_keeper", "add_lease_service", "lease_put"]

#: How often the keeper looks for expired leases (an expiry is proposed at most this late).
TICK_S = 0.05


class LeaseKeeper:
    """Deadlines of the leases by this node's clock; proposes expiries when leading."""

    def __init__(self, node: Node) -> None:
        self.node = node
        sm = node.state_machine
        assert isinstance(sm, KVStateMachine), "leases live in the KV state machine"
        self.table: L.LeaseTable = sm.leases
        self.deadlines: dict[int, float] = {}
        self.revoking: set[int] = set()
        self.expired_proposed = 0
        self._led_term: int | None = None

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def sync(self) -> None:
        """Match the deadlines to the table; on a new leadership give every lease a full TTL."""
        now = self._now()
        ttl = self.table.ttl
        core = self.node.core_if_built
        if self.node.is_leader and core is not None:
            if self._led_term != core.term:
                self._led_term = core.term
                self.deadlines = {i: now + t for i, t in ttl.items()}
                self.revoking.clear()
        else:
            self._led_term = None
        if len(self.deadlines) != len(ttl) or any(i not in ttl for i in self.deadlines):
            for i in [i for i in self.deadlines if i not in ttl]:
                del self.deadlines[i]
                self.revoking.discard(i)
            for i, t in ttl.items():
                self.deadlines.setdefault(i, now + t)

    async def run(self) -> None:
        while self.node.running:
            try:
                self.sync()
                if self._led_term is not None:
                    self._expire()
            except Exception:  # noqa: BLE001 - the keeper must outlive a bad turn
                self.node.logger.exception("lease keeper turn failed")
            await asyncio.sleep(TICK_S)

    def _expire(self) -> None:
        now = self._now()
        for i, deadline in self.deadlines.items():
            if deadline <= now and i not in self.revoking:
                self.revoking.add(i)
                self.expired_proposed += 1
                self.node.background.spawn(self._revoke(i))

    async def _revoke(self, lease_id: int) -> None:
        try:
            await self.node.propose(L.encode_revoke(lease_id, expired=True))
            self.node.logger.debug("lease expired", lease_id=lease_id)
        except LeaseNotFound:
            pass
        except Exception as e:  # noqa: BLE001 - not leader any more, dropped: try again later
            self.node.logger.debug("lease expiry not committed", lease_id=lease_id, error=str(e))
            self.revoking.discard(lease_id)

    def keep_alive(self, lease_id: int) -> int:
        """Renew a lease on the leader; its TTL in seconds."""
        if not self.node.is_leader:
            raise self.node.not_leader()
        self.sync()
        ttl = self.table.ttl.get(lease_id)
        if ttl is None or lease_id in self.revoking:
            raise LeaseNotFound(lease_id)
        self.deadlines[lease_id] = self._now() + ttl
        return ttl

    def remaining(self, lease_id: int) -> int:
        """Seconds left by the leader's clock (rounded up); -1 when the lease does not exist."""
        if not self.node.is_leader:
            raise self.node.not_leader()
        self.sync()
        if lease_id not in self.table.ttl:
            return -1
        return max(0, math.ceil(self.deadlines[lease_id] - self._now()))


def start_lease_keeper(node: Node) -> LeaseKeeper | None:
    """Start the keeper of a node whose state machine has leases (None otherwise)."""
    if getattr(node.state_machine, "leases", None) is None:
        return None
    keeper = getattr(node, "lease_keeper", None)
    if keeper is None:
        keeper = node.lease_keeper = LeaseKeeper(node)
    node.background.spawn(keeper.run())
    return keeper


def _error(e: BaseException) -> pb.Error:
    if isinstance(e, LeaseNotFound):
        return pb.Error(code=pb.NOT_FOUND, message=str(e))
    return to_proto(e if isinstance(e, DengineError) else InvalidArgument(str(e)))


async def lease_put(handler: RequestHandler, req: pb.PutRequest) -> pb.PutResponse:
    """``Kv.Put`` with ``lease`` set: a put attached to the lease, one log entry."""
    cmd = L.encode_put(req.lease, handler._key(req.key), req.value)
    if req.HasField("session"):
        s = req.session
        if not (0 < s.client_id and 0 < s.seq):
            raise InvalidArgument("a session needs a client_id > 0 and a seq > 0")
        cmd = L.encode_session(s.client_id, s.seq, cmd)
    try:
        r = await handler._write(cmd)
    except LeaseNotFound as e:
        return pb.PutResponse(error=_error(e))
    return pb.PutResponse(revision=r.revision)


class LeaseService(client_pb2_grpc.LeaseServicer):
    """The ``Lease`` service of client.proto."""

    def __init__(self, handler: RequestHandler) -> None:
        self.handler = handler
        self.node = handler.node

    @property
    def keeper(self) -> LeaseKeeper:
        keeper = getattr(self.node, "lease_keeper", None)
        if keeper is None:
            keeper = self.node.lease_keeper = LeaseKeeper(self.node)
        return keeper

    async def _guard(self, cls: type, coro: Any) -> Any:
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except (DengineError, ValueError, OverflowError) as e:
            return cls(error=_error(e))

    async def Grant(self, req: pb.LeaseGrantRequest, context: Any) -> pb.LeaseGrantResponse:
        async def go() -> pb.LeaseGrantResponse:
            lease_id = req.id or (secrets.randbits(63) or 1)
            r = await self.handler._write(L.encode_grant(lease_id, req.ttl))
            return pb.LeaseGrantResponse(id=lease_id, ttl=req.ttl, revision=r.revision)

        return await self._guard(pb.LeaseGrantResponse, go())

    async def Revoke(self, req: pb.LeaseRevokeRequest, context: Any) -> pb.LeaseRevokeResponse:
        async def go() -> pb.LeaseRevokeResponse:
            r = await self.handler._write(L.encode_revoke(req.id))
            return pb.LeaseRevokeResponse(revision=r.revision)

        return await self._guard(pb.LeaseRevokeResponse, go())

    async def TimeToLive(self, req: pb.LeaseTimeToLiveRequest,
                         context: Any) -> pb.LeaseTimeToLiveResponse:
        async def go() -> pb.LeaseTimeToLiveResponse:
            ttl = self.keeper.remaining(req.id)
            table = self.keeper.table
            keys = table.attached(req.id) if req.keys else []
            return pb.LeaseTimeToLiveResponse(id=req.id, ttl=ttl,
                                              granted_ttl=table.ttl.get(req.id, 0), keys=keys)

        return await self._guard(pb.LeaseTimeToLiveResponse, go())

    async def KeepAlive(self, request_iterator: Any, context: Any) -> Any:
        async for req in request_iterator:
            try:
                ttl = self.keeper.keep_alive(req.id)
            except LeaseNotFound as e:
                yield pb.LeaseKeepAliveResponse(id=req.id, ttl=0, error=_error(e))
                continue
            except DengineError as e:  # NOT_LEADER: the client goes to the leader
                yield pb.LeaseKeepAliveResponse(id=req.id, error=_error(e))
                return
            yield pb.LeaseKeepAliveResponse(id=req.id, ttl=ttl)


def add_lease_service(server: Any, handler: RequestHandler, authorizer: Any = None) -> None:
    """Register ``Lease`` on a ``grpc.aio`` server (no-op for a machine without leases);
    with ``authorizer`` (auth on) every call checks the caller's role first."""
    if getattr(handler.node.state_machine, "leases", None) is None:
        return
    service = LeaseService(handler)
    if authorizer is not None:
        from dengine.security.auth import protect_servicer

        protect_servicer(service, authorizer, handler.node.logger)
    add_strict(client_pb2_grpc.add_LeaseServicer_to_server, service, server)
