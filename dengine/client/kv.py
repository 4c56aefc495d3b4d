"""The KV calls of :class:`~dengine.client.Client`: reads, writes under sessions, scans.

Every call runs in the client's retry loop. A KV request goes over the channel's batch stream
when it fits the stream's budget, as a unary call otherwise. Writes carry a session fixed
before the first attempt (see :mod:`dengine.client._session`), so a retried write applies once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from dengine.client._pool import Connection, PooledChannel
from dengine.client._rpc import now, raise_error
from dengine.client.api import ConsistencyArg, cas_request
from dengine.client.types import (
    CasResult,
    Consistency,
    Delete,
    Key,
    KeyValue,
    Put,
    ScanPage,
    to_bytes,
)
from dengine.errors import SessionExpired
from dengine.transport import status as S
from dengine.v1 import client_pb2

if TYPE_CHECKING:
    from dengine.client._session import SessionPool

__all__ = ["KvMixin"]

T = TypeVar("T")

# Batch-stream field -> unary method name of the Kv service.
_UNARY = {
    "put": "Put",
    "get": "Get",
    "get_many": "GetMany",
    "delete": "Delete",
    "cas": "CompareAndSet",
    "batch": "WriteBatch",
    "scan": "Scan",
}


class KvMixin:
    """KV calls for :class:`~dengine.client.Client` (which provides the retry loop)."""

    if TYPE_CHECKING:  # provided by Client
        timeout: float
        unary_calls: int
        _members: dict[int, str]
        _stream_request_bytes: int
        _sessions: SessionPool

        def _conn(self, address: str) -> Connection: ...

        async def _retry(self, op: str, attempt: Callable[[str, float], Awaitable[T]], *,
                         timeout: float | None, endpoint: str | None = None,
                         spread: bool = False, any_member: bool = False) -> T: ...

        def _read_route(self, consistency: int) -> dict[str, Any]: ...

    async def _kv(
        self,
        op: str,
        field: str,
        request: Any,
        *,
        timeout: float | None,
        endpoint: str | None = None,
        spread: bool = False,
        any_member: bool = False,
        sent: list[int] | None = None,
    ) -> Any:
        """One KV request (stream or unary) in the retry loop; returns the response message.
        ``sent[0]`` counts the attempts made (a write's outcome is unknown after more than one
        that may have reached the log)."""
        use_stream = request.ByteSize() <= self._stream_request_bytes

        async def attempt(address: str, remaining: float) -> Any:
            if sent is not None:
                sent[0] += 1
            ch: PooledChannel = self._conn(address).pick()
            stream = ch.batch_stream() if use_stream else None
            if stream is not None:
                resp = await stream.call(field, request, op, remaining)
            else:
                self.unary_calls += 1
                try:
                    resp = await getattr(ch.kv, _UNARY[field])(request, timeout=remaining)
                except grpc.RpcError as e:
                    raise S.from_rpc_error(e) from e
            raise_error(resp.error)
            return resp

        return await self._retry(op, attempt, timeout=timeout, endpoint=endpoint, spread=spread,
                                 any_member=any_member)

    async def _register_session(self, timeout: float | None, op: str,
                                count: int = 1) -> list[int]:
        """Open ``count`` sessions through the log (one entry; their ids come from its index).
        A retried registration at worst opens sessions nobody uses (the table drops them)."""

        async def attempt(address: str, remaining: float) -> list[int]:
            ch = self._conn(address).pick()
            self.unary_calls += 1
            try:
                resp = await ch.kv.RegisterSession(
                    client_pb2.RegisterSessionRequest(count=count), timeout=remaining)
            except grpc.RpcError as e:
                raise S.from_rpc_error(e) from e
            raise_error(resp.error)
            return list(range(resp.client_id, resp.client_id + max(resp.count, 1)))

        return await self._retry(f"{op} (registering its session)", attempt, timeout=timeout)

    async def _session_write(
        self, op: str, field: str, make: Callable[[client_pb2.Session], Any], *,
        timeout: float | None, endpoint: str | None = None,
    ) -> Any:
        """A write under a session. SESSION_EXPIRED on its only attempt means it was refused
        and not applied: drop the session and send it once more under a new one. After more
        than one attempt an earlier one may have been applied before the session expired, so
        SessionExpired reaches the caller (outcome unknown) instead of a blind second apply."""
        timeout = self.timeout if timeout is None else timeout
        deadline = now() + timeout
        for fresh in (True, False):
            sent = [0]
            async with self._sessions.session(max(deadline - now(), 0.001), op) as session:
                try:
                    return await self._kv(op, field, make(session),
                                          timeout=max(deadline - now(), 0.001),
                                          endpoint=endpoint, sent=sent)
                except SessionExpired:
                    self._sessions.expire(session.client_id)
                    if sent[0] > 1 or not fresh:
                        raise
        raise AssertionError("unreachable")

    async def put(
        self, key: Key, value: Key, *, timeout: float | None = None, endpoint: str | None = None,
        lease: int = 0,
    ) -> int:
        """Store ``value`` under ``key``; returns the revision (log index) that wrote it.
        ``endpoint`` pins a write to one node (NOT_LEADER is then raised, not followed);
        ``lease`` attaches the key to a lease (its revoke or expiry deletes the key)."""
        k, v = to_bytes(key), to_bytes(value, "value")
        resp = await self._session_write(
            "put", "put", lambda s: client_pb2.PutRequest(key=k, value=v, session=s, lease=lease),
            timeout=timeout, endpoint=endpoint)
        return resp.revision

    async def get(
        self,
        key: Key,
        *,
        consistency: ConsistencyArg = Consistency.LINEARIZABLE,
        timeout: float | None = None,
        endpoint: str | None = None,
    ) -> KeyValue | None:
        """The key's value and revision, or None if absent. ``endpoint`` asks that one node
        (useful with ``consistency="serializable"`` to read a follower)."""
        req = client_pb2.GetRequest(key=to_bytes(key), consistency=Consistency.parse(consistency))  # type: ignore[arg-type]  # protobuf takes any int; its stubs only the enum class
        resp = await self._kv("get", "get", req, timeout=timeout, endpoint=endpoint,
                              **self._read_route(req.consistency))
        return KeyValue.from_proto(resp.kv) if resp.found else None

    async def get_value(
        self,
        key: Key,
        *,
        consistency: ConsistencyArg = Consistency.LINEARIZABLE,
        timeout: float | None = None,
        endpoint: str | None = None,
    ) -> bytes | None:
        """Just the value (None if absent); same options as :meth:`get`."""
        kv = await self.get(key, consistency=consistency, timeout=timeout, endpoint=endpoint)
        return None if kv is None else kv.value

    async def get_many(
        self,
        keys: Iterable[Key],
        *,
        consistency: ConsistencyArg = Consistency.LINEARIZABLE,
        timeout: float | None = None,
        endpoint: str | None = None,
    ) -> dict[bytes, KeyValue]:
        """The keys that exist among ``keys``. An answer within the node's byte budget
        (``network.scan_max_bytes``) is read at one point in time; a larger one comes in pages,
        each at one point in time (and each linearizable at that level), followed here."""
        want = [to_bytes(k) for k in keys]
        level = Consistency.parse(consistency)
        deadline = now() + (self.timeout if timeout is None else timeout)
        out: dict[bytes, KeyValue] = {}
        while True:
            req = client_pb2.GetManyRequest(keys=want, consistency=level)  # type: ignore[arg-type]  # protobuf takes any int; its stubs only the enum class
            resp = await self._kv("get_many", "get_many", req,
                                  timeout=max(deadline - now(), 0.001), endpoint=endpoint,
                                  **self._read_route(req.consistency))
            out.update((kv.key, KeyValue.from_proto(kv)) for kv in resp.kvs)
            if not resp.next_key_index:
                return out
            want = want[resp.next_key_index:]

    async def delete(
        self, key: Key, *, timeout: float | None = None, endpoint: str | None = None
    ) -> bool:
        """Delete ``key``; True if it existed."""
        k = to_bytes(key)
        resp = await self._session_write(
            "delete", "delete", lambda s: client_pb2.DeleteRequest(key=k, session=s),
            timeout=timeout, endpoint=endpoint)
        return resp.deleted

    async def compare_and_set(
        self,
        key: Key,
        *,
        expected_value: Key | None = None,
        expected_version: int | None = None,
        expected_absent: bool = False,
        new_value: Key | None = None,
        timeout: float | None = None,
    ) -> CasResult:
        """Set ``key`` to ``new_value`` (delete it when None) if its value is ``expected_value``
        and/or its version is ``expected_version``, or, with ``expected_absent=True``, if it
        does not exist. A condition is required (TypeError without one; see
        :mod:`dengine.client.api`)."""
        resp = await self._session_write(
            "compare_and_set", "cas",
            lambda s: cas_request(key, expected_value, expected_version, expected_absent,
                                  new_value, s),
            timeout=timeout)
        current = KeyValue.from_proto(resp.current) if resp.HasField("current") else None
        return CasResult(resp.succeeded, current, resp.revision)

    cas = compare_and_set  # the same call under its short name, as on every client

    async def write_batch(
        self,
        ops: Iterable[Put | Delete] = (),
        *,
        puts: Mapping[Key, Key] | Iterable[tuple[Key, Key]] = (),
        deletes: Iterable[Key] = (),
        timeout: float | None = None,
    ) -> int:
        """Apply puts and deletes atomically, in order (``ops`` first, then ``puts``, then
        ``deletes``); returns the revision."""
        items = list(ops)
        pairs = puts.items() if isinstance(puts, Mapping) else puts
        items += [Put(k, v) for k, v in pairs]
        items += [Delete(k) for k in deletes]
        batch_ops = []
        for op in items:
            if isinstance(op, Put):
                batch_ops.append(
                    client_pb2.BatchOp(
                        put=client_pb2.PutRequest(
                            key=to_bytes(op.key), value=to_bytes(op.value, "value")
                        )
                    )
                )
            elif isinstance(op, Delete):
                batch_ops.append(
                    client_pb2.BatchOp(delete=client_pb2.DeleteRequest(key=to_bytes(op.key)))
                )
            else:
                raise TypeError(f"write_batch takes Put and Delete ops, not {type(op).__name__}")
        resp = await self._session_write(
            "write_batch", "batch",
            lambda s: client_pb2.WriteBatchRequest(ops=batch_ops, session=s), timeout=timeout)
        return resp.revision

    batch = write_batch

    async def scan(
        self,
        start: Key = b"",
        end: Key = b"",
        *,
        prefix: Key = b"",
        limit: int = 0,
        consistency: ConsistencyArg = Consistency.LINEARIZABLE,
        timeout: float | None = None,
        endpoint: str | None = None,
    ) -> ScanPage:
        """One page of keys in ``[start, end)`` (``end`` empty: no bound) and/or under
        ``prefix``, at most ``limit`` (0: the server's default); pass ``page.continuation`` as the
        next ``start`` to go on, or use :meth:`scan_iter`."""
        req = client_pb2.ScanRequest(
            start=to_bytes(start),
            end=to_bytes(end),
            prefix=to_bytes(prefix),
            limit=limit,
            consistency=Consistency.parse(consistency),  # type: ignore[arg-type]  # protobuf takes any int; its stubs only the enum class
        )
        resp = await self._kv("scan", "scan", req, timeout=timeout, endpoint=endpoint,
                              **self._read_route(req.consistency))
        return ScanPage(tuple(KeyValue.from_proto(kv) for kv in resp.kvs), resp.continuation)

    async def scan_iter(
        self,
        start: Key = b"",
        end: Key = b"",
        *,
        prefix: Key = b"",
        page_size: int = 1000,
        consistency: ConsistencyArg = Consistency.LINEARIZABLE,
        timeout: float | None = None,
        endpoint: str | None = None,
    ) -> AsyncGenerator[KeyValue, None]:
        """Every key of the range, fetched page by page (each page is its own read)."""
        cursor = to_bytes(start)
        while True:
            page = await self.scan(
                cursor,
                end,
                prefix=prefix,
                limit=page_size,
                consistency=consistency,
                timeout=timeout,
                endpoint=endpoint,
            )
            for kv in page.kvs:
                yield kv
            if not page.continuation:
                return
            cursor = page.continuation
