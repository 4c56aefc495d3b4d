"""An in-process client for a :class:`~dengine.node.node.Node` started in the same program.

It has the methods of the network client, with the same arguments (the interface is
:class:`dengine.client.api.AsyncKv`), and goes through the very request handler the gRPC services use
(:class:`~dengine.node.service.RequestHandler`), with no socket and no serialization: so it
behaves exactly as a remote client talking to that node would, errors included (a follower
raises :class:`~dengine.errors.NotLeader` with the leader's id and address). It talks to one
node and does not follow redirects: in embedded use the application decides which node to ask.

Typical use::

    node = NodeBuilder(config).serve_clients(False).build()   # peers still talk gRPC
    await node.start()
    await node.wait_for_leader()
    async with EmbeddedClient(node) as db:
        await db.put("k", "v")
    await node.stop()

Writes carry a session (an id registered through the log on the first write, and a rising
sequence number), so the state machine applies each at most once. When the session has expired
(evicted from a full table, or idle past its lifetime) a write is refused unapplied with
SESSION_EXPIRED; this client then registers a new session and sends that write once more.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from dengine.consistency import Consistency
from dengine.errors import OperationTimeout, SessionExpired
from dengine.node.service import RequestHandler
from dengine.transport.status import from_proto
from dengine.v1 import client_pb2 as pb

if TYPE_CHECKING:
    from dengine.client.api import ConsistencyArg
    from dengine.client.types import (
        CasResult,
        Delete,
        Key,
        KeyValue,
        Member,
        NodeStatus,
        Put,
        ScanPage,
    )

__all__ = ["EmbeddedClient"]

def _bytes(value: Any, what: str = "key") -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{what} must be bytes or str, not {type(value).__name__}")


def _consistency(value: Any) -> int:
    """A level by name (``Consistency.parse``); a number goes to the handler as it is, which
    answers an unknown one with INVALID_ARGUMENT as it would for a network client."""
    return Consistency.parse(value) if isinstance(value, str) else int(value)


def _types() -> Any:
    """The client's plain result types (shared so both clients return the same values)."""
    from dengine.client import types

    return types


class EmbeddedClient:
    """Client of one in-process node; see the module docstring. ``timeout`` (seconds, per
    call; ``None`` uses the client default) bounds each call with OperationTimeout."""

    def __init__(self, node: Any, *, client_id: int | None = None,
                 timeout: float = 5.0) -> None:
        self.node = node
        self.timeout = timeout
        self._h = RequestHandler(node)
        self.client_id = client_id  # None: registered with the first write
        self._seq = itertools.count(1)

    def use(self, node: Any) -> None:
        """Talk to ``node`` from now on (e.g. the new leader after a failover), keeping the
        session, so that a write retried there is still applied once."""
        self.node = node
        self._h = RequestHandler(node)

    async def _session(self, timeout: float | None) -> pb.Session:
        if self.client_id is None:
            resp = await self._call("register_session", pb.RegisterSessionRequest(),
                                    pb.RegisterSessionResponse, timeout)
            if self.client_id is None:  # a concurrent write may have registered first
                self.client_id, self._seq = resp.client_id, itertools.count(1)
        return pb.Session(client_id=self.client_id, seq=next(self._seq))

    async def _write(self, name: str, req: Any, cls: type, timeout: float | None) -> Any:
        """One attempt under the session; SESSION_EXPIRED on it means nothing was applied, so
        the write goes once more under a newly registered session."""
        req.session.CopyFrom(await self._session(timeout))
        try:
            return await self._call(name, req, cls, timeout)
        except SessionExpired as e:
            if self.client_id == e.client_id or e.client_id == 0:
                self.client_id = None
            req.session.CopyFrom(await self._session(timeout))
            return await self._call(name, req, cls, timeout)

    async def _call(self, name: str, req: Any, cls: type, timeout: float | None = None) -> Any:
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                resp = await self._h.call(name, req, cls)
        except TimeoutError:
            raise OperationTimeout(name, limit) from None
        if resp.HasField("error") and (err := from_proto(resp.error)) is not None:
            raise err
        return resp

    # -- KV ---------------------------------------------------------------------------------
    async def put(self, key: Key, value: Key, *, timeout: float | None = None,
                  endpoint: str | None = None, lease: int = 0) -> int:
        """Write ``key``; returns the revision (log index) of the write (``endpoint`` is
        ignored: one node); ``lease`` attaches the key to a lease."""
        req = pb.PutRequest(key=_bytes(key), value=_bytes(value, "value"), lease=lease)
        return (await self._write("put", req, pb.PutResponse, timeout)).revision

    async def get(self, key: Key, *, consistency: ConsistencyArg = pb.LINEARIZABLE,
                  timeout: float | None = None, endpoint: str | None = None
                  ) -> KeyValue | None:
        """The key's KeyValue, or None when absent (``endpoint`` is ignored: one node)."""
        req = pb.GetRequest(key=_bytes(key), consistency=_consistency(consistency))  # type: ignore[arg-type]  # protobuf takes any int; its stubs only the enum class
        resp = await self._call("get", req, pb.GetResponse, timeout)
        return _types().KeyValue.from_proto(resp.kv) if resp.found else None

    async def get_value(self, key: Key, *, consistency: ConsistencyArg = pb.LINEARIZABLE,
                        timeout: float | None = None, endpoint: str | None = None
                        ) -> bytes | None:
        """Just the value (None if absent); same options as :meth:`get`."""
        kv = await self.get(key, consistency=consistency, timeout=timeout)
        return None if kv is None else kv.value

    async def get_many(self, keys: Iterable[Key], *,
                       consistency: ConsistencyArg = pb.LINEARIZABLE,
                       timeout: float | None = None, endpoint: str | None = None
                       ) -> dict[bytes, KeyValue]:
        """KeyValues of the keys that exist, by key (pages past the byte budget followed, as
        :meth:`dengine.client.Client.get_many` does; ``timeout`` bounds the whole call)."""
        want = [_bytes(k) for k in keys]
        kv_cls = _types().KeyValue
        out: dict[bytes, KeyValue] = {}
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):  # one deadline for all the pages
                while True:
                    req = pb.GetManyRequest(keys=want, consistency=_consistency(consistency))  # type: ignore[arg-type]  # protobuf takes any int; its stubs only the enum class
                    resp = await self._call("get_many", req, pb.GetManyResponse, limit)
                    out.update((kv.key, kv_cls.from_proto(kv)) for kv in resp.kvs)
                    if not resp.next_key_index:
                        return out
                    want = want[resp.next_key_index:]
        except TimeoutError:
            raise OperationTimeout("get_many", limit) from None

    async def delete(self, key: Key, *, timeout: float | None = None,
                     endpoint: str | None = None) -> bool:
        """Delete ``key``; True when it existed."""
        req = pb.DeleteRequest(key=_bytes(key))
        return (await self._write("delete", req, pb.DeleteResponse, timeout)).deleted

    async def compare_and_set(self, key: Key, *, expected_value: Key | None = None,
                              expected_version: int | None = None,
                              expected_absent: bool = False, new_value: Key | None = None,
                              timeout: float | None = None) -> CasResult:
        """Write ``new_value`` (delete when None) if the condition holds: ``expected_value``,
        ``expected_version`` or ``expected_absent=True`` (one is required)."""
        from dengine.client.api import cas_request

        req = cas_request(key, expected_value, expected_version, expected_absent, new_value,
                          pb.Session())
        resp = await self._write("cas", req, pb.CompareAndSetResponse, timeout)
        t = _types()
        current = t.KeyValue.from_proto(resp.current) if resp.HasField("current") else None
        return t.CasResult(resp.succeeded, current, resp.revision)

    cas = compare_and_set

    async def write_batch(self, ops: Iterable[Put | Delete] = (), *,
                          puts: Mapping[Key, Key] | Iterable[tuple[Key, Key]] = (),
                          deletes: Iterable[Key] = (), timeout: float | None = None) -> int:
        """Apply puts and deletes atomically, in order (``ops`` — ``Put``/``Delete`` values —
        then ``puts``, then ``deletes``); returns the revision."""
        req = pb.WriteBatchRequest()
        pairs = puts.items() if isinstance(puts, Mapping) else puts
        items = [(op.key, getattr(op, "value", None)) for op in ops]
        items += [(k, v) for k, v in pairs] + [(k, None) for k in deletes]
        for key, value in items:
            if value is not None:
                req.ops.add().put.CopyFrom(pb.PutRequest(key=_bytes(key),
                                                         value=_bytes(value, "value")))
            else:
                req.ops.add().delete.CopyFrom(pb.DeleteRequest(key=_bytes(key)))
        return (await self._write("write_batch", req, pb.WriteBatchResponse, timeout)).revision

    batch = write_batch

    async def scan(self, start: Key = b"", end: Key = b"", *, prefix: Key = b"",
                   limit: int = 0, consistency: ConsistencyArg = pb.LINEARIZABLE,
                   timeout: float | None = None, endpoint: str | None = None) -> ScanPage:
        """One page of keys in ``[start, end)`` and/or under ``prefix``; a ScanPage."""
        req = pb.ScanRequest(start=_bytes(start), end=_bytes(end), prefix=_bytes(prefix),
                             limit=limit, consistency=_consistency(consistency))  # type: ignore[arg-type]  # protobuf takes any int; its stubs only the enum class
        resp = await self._call("scan", req, pb.ScanResponse, timeout)
        t = _types()
        return t.ScanPage(tuple(t.KeyValue.from_proto(kv) for kv in resp.kvs),
                          resp.continuation)

    async def scan_iter(self, start: Key = b"", end: Key = b"", *, prefix: Key = b"",
                        page_size: int = 1000, consistency: ConsistencyArg = pb.LINEARIZABLE,
                        timeout: float | None = None, endpoint: str | None = None
                        ) -> AsyncIterator[KeyValue]:
        """Every key of the range, page by page (each page is its own read)."""
        while True:
            page = await self.scan(start, end, prefix=prefix, limit=page_size,
                                   consistency=consistency, timeout=timeout)
            for kv in page.kvs:
                yield kv
            if not page.continuation:
                return
            start = page.continuation

    # -- cluster ----------------------------------------------------------------------------
    async def status(self, endpoint: str | None = None, *, timeout: float | None = None
                     ) -> NodeStatus:
        """This node's status (``endpoint`` is ignored: one node)."""
        resp = await self._call("status", pb.StatusRequest(), pb.StatusResponse, timeout)
        return _types().NodeStatus.from_proto(resp, self.node.address)

    async def transfer_leader(self, target_id: int, *, timeout: float | None = None) -> None:
        """Ask this node (the leader, or it forwards) to hand leadership to ``target_id``."""
        await self._call("transfer_leader", pb.TransferLeaderRequest(target_id=target_id),
                         pb.TransferLeaderResponse, timeout)

    async def _membership(self, name: str, req: Any, timeout: float | None) -> list[Member]:
        resp = await self._call(name, req, pb.MembershipResponse, timeout)
        return [_types().Member.from_proto(m) for m in resp.members]

    async def add_learner(self, node_id: int, address: str, *,
                          timeout: float | None = None) -> list[Member]:
        """Add node ``node_id`` at ``address`` as a learner; returns the new member list."""
        return await self._membership(
            "add_learner", pb.AddLearnerRequest(id=node_id, address=address), timeout)

    async def promote(self, node_id: int, *, timeout: float | None = None) -> list[Member]:
        """Make learner ``node_id`` a voter; returns the new member list."""
        return await self._membership("promote", pb.PromoteRequest(id=node_id), timeout)

    async def remove_member(self, node_id: int, *, timeout: float | None = None
                            ) -> list[Member]:
        """Remove node ``node_id`` from the cluster; returns the new member list."""
        return await self._membership("remove_member", pb.RemoveMemberRequest(id=node_id),
                                      timeout)

    async def close(self) -> None:
        """Nothing to release (no channel); here so every client closes alike."""
        return None

    async def __aenter__(self) -> EmbeddedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
