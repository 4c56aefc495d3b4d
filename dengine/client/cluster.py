"""The cluster calls of :class:`~dengine.client.Client`: status, alarms, leadership and
membership. They are unary calls in the client's retry loop; membership answers teach the client
the members' addresses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from dengine.client._pool import Connection
from dengine.client._rpc import raise_error
from dengine.client.types import Member, NodeStatus
from dengine.transport import status as S
from dengine.v1 import client_pb2

__all__ = ["ClusterMixin"]

T = TypeVar("T")


class ClusterMixin:
    """Cluster calls for :class:`~dengine.client.Client` (which provides the retry loop)."""

    if TYPE_CHECKING:  # provided by Client
        timeout: float
        unary_calls: int
        _members: dict[int, str]
        endpoints: list[str]
        _leader: str | None

        def _conn(self, address: str) -> Connection: ...

        async def _retry(self, op: str, attempt: Callable[[str, float], Awaitable[T]], *,
                         timeout: float | None, endpoint: str | None = None,
                         spread: bool = False, any_member: bool = False) -> T: ...

        async def _status_once(self, address: str, timeout: float) -> NodeStatus: ...

    async def _cluster(
        self,
        op: str,
        method: str,
        request: Any,
        *,
        timeout: float | None,
        endpoint: str | None = None,
    ) -> Any:
        async def attempt(address: str, remaining: float) -> Any:
            ch = self._conn(address).pick()
            self.unary_calls += 1
            try:
                resp = await getattr(ch.cluster, method)(request, timeout=remaining)
            except grpc.RpcError as e:
                raise S.from_rpc_error(e) from e
            raise_error(resp.error)
            return resp

        return await self._retry(op, attempt, timeout=timeout, endpoint=endpoint)

    async def status(
        self, endpoint: str | None = None, *, timeout: float | None = None
    ) -> NodeStatus:
        """Status of ``endpoint``, or of the leader when None."""

        async def attempt(address: str, remaining: float) -> NodeStatus:
            return await self._status_once(address, remaining)

        return await self._retry("status", attempt, timeout=timeout, endpoint=endpoint)

    async def statuses(self, *, timeout: float = 1.0) -> dict[str, NodeStatus | Exception]:
        """The status of every known endpoint (or the error each gave), asked at once."""
        addrs = list(dict.fromkeys([*self.endpoints, *self._members.values()]))
        answers = await asyncio.gather(
            *(self._status_once(a, timeout) for a in addrs), return_exceptions=True
        )
        return dict(zip(addrs, answers, strict=True))  # type: ignore[arg-type]

    async def alarm_disarm(self, endpoint: str, *, timeout: float | None = None) -> list[str]:
        """Clear the NOSPACE alarm of the node at ``endpoint`` once it is back under its
        quota (QuotaExceeded otherwise); returns the alarms still raised there."""
        req = client_pb2.AlarmDisarmRequest()
        resp = await self._cluster("alarm_disarm", "AlarmDisarm", req, timeout=timeout,
                                   endpoint=endpoint)
        return list(resp.alarms)

    async def compact_storage(self, endpoint: str, *, timeout: float | None = None) -> float:
        """Flush and compact the state machine store of the node at ``endpoint`` (only that
        node: maintenance, as etcd's defragment); the seconds it took there."""
        req = client_pb2.CompactStorageRequest()
        resp = await self._cluster("compact_storage", "CompactStorage", req, timeout=timeout,
                                   endpoint=endpoint)
        return float(resp.seconds)

    async def transfer_leader(self, target_id: int, *, timeout: float | None = None) -> None:
        """Ask the leader to hand leadership to node ``target_id``."""
        req = client_pb2.TransferLeaderRequest(target_id=target_id)
        await self._cluster("transfer_leader", "TransferLeader", req, timeout=timeout)
        self._leader = None  # the next call finds the new leader

    async def add_learner(
        self, node_id: int, address: str, *, timeout: float | None = None
    ) -> list[Member]:
        """Add node ``node_id`` at ``address`` as a learner; returns the new member list."""
        req = client_pb2.AddLearnerRequest(id=node_id, address=address)
        resp = await self._cluster("add_learner", "AddLearner", req, timeout=timeout)
        return self._note_members(resp)

    async def promote(self, node_id: int, *, timeout: float | None = None) -> list[Member]:
        """Make learner ``node_id`` a voter; returns the new member list."""
        req = client_pb2.PromoteRequest(id=node_id)
        resp = await self._cluster("promote", "Promote", req, timeout=timeout)
        return self._note_members(resp)

    async def remove_member(self, node_id: int, *, timeout: float | None = None) -> list[Member]:
        """Remove node ``node_id`` from the cluster; returns the new member list."""
        req = client_pb2.RemoveMemberRequest(id=node_id)
        resp = await self._cluster("remove_member", "RemoveMember", req, timeout=timeout)
        members = self._note_members(resp)
        self._members.pop(node_id, None)
        return members

    def _note_members(self, resp: client_pb2.MembershipResponse) -> list[Member]:
        members = [Member.from_proto(m) for m in resp.members]
        for m in members:
            if m.address:
                self._members[m.id] = m.address
        return members
