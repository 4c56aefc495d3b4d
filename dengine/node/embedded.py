"""An in-process client for a :class:`~dengine.node.node.Node` started in the same program.

It has the methods of the network client (``put``, ``get(consistency=...)``, ``get_many``,
``delete``, ``cas``, ``batch``, ``scan``, ``status``, ``transfer_leader``, ``add_learner``,
``promote``, ``remove_member``) and goes through the very request handler the gRPC services use
(:class:`~dengine.node.service.RequestHandler`), with no socket and no serialization: so it
behaves exactly as a remote client talking to that node would, errors included (a follower
raises :class:`~dengine.errors.NotLeader` with the leader's id and address). It talks to one
node and does not follow redirects: in embedded use the application decides which node to ask.

Writes carry a session (a random client id and a rising sequence number) so a write retried by
the caller after an error is applied at most once.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence
from typing import Any

from dengine.node.service import RequestHandler
from dengine.transport.status import from_proto
from dengine.v1 import client_pb2 as pb

__all__ = ["EmbeddedClient", "Put", "Delete"]

_CONSISTENCY = {"linearizable": pb.LINEARIZABLE, "lease": pb.LEASE,
                "serializable": pb.SERIALIZABLE}


def _bytes(value: Any, what: str = "key") -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{what} must be bytes or str, not {type(value).__name__}")


def _consistency(value: Any) -> int:
    if isinstance(value, str):
        try:
            return _CONSISTENCY[value.lower()]
        except KeyError:
            raise ValueError(f"consistency {value!r} is not one of "
                             f"{', '.join(_CONSISTENCY)}") from None
    return int(value)


def _types() -> Any:
    """The client's plain result types (shared so both clients return the same values)."""
    from dengine.client import types

    return types


class Put:
    """A put inside :meth:`EmbeddedClient.batch` (the client's ``Put`` works too)."""

    __slots__ = ("key", "value")

    def __init__(self, key: Any, value: Any) -> None:
        self.key, self.value = key, value


class Delete:
    """A delete inside :meth:`EmbeddedClient.batch`."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key


class EmbeddedClient:
    """Client of one in-process node; see the module docstring."""

    def __init__(self, node: Any, *, client_id: int | None = None) -> None:
        self.node = node
        self._h = RequestHandler(node)
        self.client_id = client_id or random.SystemRandom().randrange(1, 1 << 63)
        self._seq = itertools.count(1)

    def _session(self) -> pb.Session:
        return pb.Session(client_id=self.client_id, seq=next(self._seq))

    async def _call(self, name: str, req: Any, cls: type) -> Any:
        resp = await self._h.call(name, req, cls)
        if resp.HasField("error") and resp.error.code != pb.OK:
            raise from_proto(resp.error)
        return resp

    # -- KV ---------------------------------------------------------------------------------
    async def put(self, key: Any, value: Any) -> int:
        """Write ``key``; returns the revision (log index) of the write."""
        req = pb.PutRequest(key=_bytes(key), value=_bytes(value, "value"),
                            session=self._session())
        return (await self._call("put", req, pb.PutResponse)).revision

    async def get(self, key: Any, *, consistency: Any = "linearizable") -> Any:
        """The key's KeyValue, or None when absent."""
        req = pb.GetRequest(key=_bytes(key), consistency=_consistency(consistency))
        resp = await self._call("get", req, pb.GetResponse)
        return _types().KeyValue.from_proto(resp.kv) if resp.found else None

    async def get_many(self, keys: Iterable[Any], *, consistency: Any = "linearizable"
                       ) -> dict[bytes, Any]:
        """KeyValues of the keys that exist, by key."""
        req = pb.GetManyRequest(keys=[_bytes(k) for k in keys],
                                consistency=_consistency(consistency))
        resp = await self._call("get_many", req, pb.GetManyResponse)
        kv_cls = _types().KeyValue
        return {kv.key: kv_cls.from_proto(kv) for kv in resp.kvs}

    async def delete(self, key: Any) -> bool:
        """Delete ``key``; True when it existed."""
        req = pb.DeleteRequest(key=_bytes(key), session=self._session())
        return (await self._call("delete", req, pb.DeleteResponse)).deleted

    async def cas(self, key: Any, *, expected_value: Any = None,
                  expected_version: int | None = None, new_value: Any = None) -> Any:
        """Compare-and-set: write ``new_value`` (delete when None) if the expectations hold."""
        req = pb.CompareAndSetRequest(key=_bytes(key), session=self._session())
        if expected_value is not None:
            req.expected_value = _bytes(expected_value, "expected_value")
        if expected_version is not None:
            req.expected_version = expected_version
        if new_value is not None:
            req.new_value = _bytes(new_value, "new_value")
        resp = await self._call("cas", req, pb.CompareAndSetResponse)
        t = _types()
        current = t.KeyValue.from_proto(resp.current) if resp.HasField("current") else None
        return t.CasResult(resp.succeeded, current, resp.revision)

    async def batch(self, ops: Sequence[Any]) -> int:
        """Apply puts and deletes atomically; returns the revision."""
        req = pb.WriteBatchRequest(session=self._session())
        for op in ops:
            if hasattr(op, "value"):
                req.ops.add().put.CopyFrom(pb.PutRequest(key=_bytes(op.key),
                                                         value=_bytes(op.value, "value")))
            else:
                req.ops.add().delete.CopyFrom(pb.DeleteRequest(key=_bytes(op.key)))
        return (await self._call("write_batch", req, pb.WriteBatchResponse)).revision

    write_batch = batch

    async def scan(self, start: Any = b"", end: Any = b"", *, prefix: Any = b"", limit: int = 0,
                   consistency: Any = "linearizable") -> Any:
        """One page of keys in ``[start, end)`` or under ``prefix``; see ScanPage."""
        req = pb.ScanRequest(start=_bytes(start), end=_bytes(end), prefix=_bytes(prefix),
                             limit=limit, consistency=_consistency(consistency))
        resp = await self._call("scan", req, pb.ScanResponse)
        t = _types()
        return t.ScanPage(tuple(t.KeyValue.from_proto(kv) for kv in resp.kvs),
                          resp.continuation)

    # -- cluster ----------------------------------------------------------------------------
    async def status(self) -> Any:
        resp = await self._call("status", pb.StatusRequest(), pb.StatusResponse)
        return _types().NodeStatus.from_proto(resp, self.node.address)

    async def transfer_leader(self, target_id: int) -> None:
        await self._call("transfer_leader", pb.TransferLeaderRequest(target_id=target_id),
                         pb.TransferLeaderResponse)

    async def _membership(self, name: str, req: Any) -> tuple:
        resp = await self._call(name, req, pb.MembershipResponse)
        return tuple(_types().Member.from_proto(m) for m in resp.members)

    async def add_learner(self, node_id: int, address: str) -> tuple:
        return await self._membership("add_learner",
                                      pb.AddLearnerRequest(id=node_id, address=address))

    async def promote(self, node_id: int) -> tuple:
        return await self._membership("promote", pb.PromoteRequest(id=node_id))

    async def remove_member(self, node_id: int) -> tuple:
        return await self._membership("remove_member", pb.RemoveMemberRequest(id=node_id))

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> EmbeddedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
