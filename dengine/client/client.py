"""The async client: leader discovery, redirects, retries with backoff, sessions, batching.

Theory of operation
-------------------
A :class:`Client` is given a few endpoints. It finds the leader by asking every endpoint it knows
for its Status (at once) and taking the node that says it leads, with the highest term; it learns
the other members' addresses from the answers. Every call then runs one retry loop within one
deadline (``timeout``, per call or the client default):

* ``NotLeader`` with a hint: go to the hinted address at once (a node id without an address is
  looked up in the member list); without a hint, forget the leader and rediscover after a backoff.
* ``Unavailable`` (node down, stream broken, no quorum), ``ProposalDropped`` and a server-side
  timeout: exponential backoff with jitter, rediscovering the leader, and try again.
* anything else (``PayloadTooLarge``, ``InvalidArgument``, ``ConfChangeError``...) is final.
* an attempt with no answer within ``attempt_timeout_s`` is retried like ``Unavailable``;
* when the deadline runs out: :class:`~dengine.errors.OperationTimeout`, chained to the last error;
* once the client is closed, calls fail at once with ``Unavailable``.

Writes carry a ``Session`` (client id, sequence number) fixed before the first attempt, so a
write retried after its answer was lost is applied once (see :mod:`dengine.client._session`).

KV calls go over the channel's ``Kv.Batch`` stream by default (see
:mod:`dengine.client._stream`), so concurrent callers share gRPC messages; a request too large for
the stream's budget, or any call while the stream is broken, goes as a plain unary call. Cluster
calls are always unary.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import grpc

from dengine.client._pool import Connection, PooledChannel, channel_options
from dengine.client._reach import _no_connection, _Unreachable
from dengine.client._session import SessionPool
from dengine.client._stream import StreamStats
from dengine.client.api import cas_request
from dengine.client.lease import LeaseMixin
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
    to_bytes,
)
from dengine.client.watch import WatchMixin
from dengine.errors import (
    NotLeader,
    OperationTimeout,
    Overloaded,
    ProposalDropped,
    SessionExpired,
    Unavailable,
)
from dengine.transport import status as S
from dengine.v1 import client_pb2

__all__ = ["Client", "RETRYABLE"]

T = TypeVar("T")
MiB = 1024 * 1024

#: Errors a call retries (within its deadline); every other error is final.
RETRYABLE: tuple[type[BaseException], ...] = (
    NotLeader, Unavailable, ProposalDropped, TimeoutError, Overloaded)

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

Consist = Consistency | str | int


class Client(WatchMixin, LeaseMixin):
    """Async dengine client (grpc.aio). Use ``async with Client([...]) as c:`` or ``close()``.

    ``endpoints`` are ``host:port`` strings of any members; ``timeout`` is the default per-call
    deadline in seconds, retries included; ``pool_size`` channels per node; ``use_stream`` sends
    KV calls over the coalescing batch stream (unary otherwise); one attempt waits at most
    ``attempt_timeout_s`` before the call is retried (safe: writes carry sessions), so a leader
    cut off from its quorum does not hold a call for its whole deadline; ``interceptors`` are grpc.aio
    client interceptors put on every channel (auth, tracing, fault injection in tests).
    TLS: ``cacert`` (the CA that issued the nodes' certificates), ``cert`` / ``key`` (this
    client's certificate, whose common name is its identity), ``token`` (a bearer token that
    names the identity instead); any of them turns TLS on.
    client interceptors put on every channel (auth, tracing, fault injection in tests);
    ``fail_fast``: when no endpoint can be connected to at all (connection refused, unknown
    host), fail at once with ``Unavailable`` instead of retrying until the deadline (what a
    command-line tool wants; a program waiting for its cluster to come up does not);
    ``spread_reads``: linearizable and serializable reads go round-robin to every member, not
    only the leader (a follower answers a linearizable read after asking the leader for a read
    index, a serializable one from its own state); lease reads always go to the leader, which
    holds the lease. Off by default: with every node on one machine, one busy leader answers
    more reads than three processes sharing its cores. Either way a serializable read that
    finds no leader is sent to any member that answers, even one cut off from the majority.
    """

    def __init__(
        self,
        endpoints: Sequence[str] | str,
        *,
        timeout: float = 5.0,
        pool_size: int = 2,
        use_stream: bool = True,
        backoff_initial_s: float = 0.02,
        backoff_max_s: float = 0.5,
        max_message_bytes: int = 64 * MiB,
        stream_message_bytes: int = 1 * MiB,
        stream_request_bytes: int = 256 * 1024,
        stream_retry_s: float = 1.0,
        attempt_timeout_s: float | None = 2.0,
        interceptors: Sequence[Any] = (),
        rng: random.Random | None = None,
        cacert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        token: str | None = None,
        fail_fast: bool = False,
        spread_reads: bool = False,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",") if e]
        if not endpoints:
            raise ValueError("a client needs at least one endpoint (host:port)")
        self.endpoints: list[str] = list(dict.fromkeys(endpoints))
        self.timeout = timeout
        self.pool_size = pool_size
        self.use_stream = use_stream
        self.stats = StreamStats()
        self.unary_calls = 0
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._options = channel_options(max_message_bytes)
        self._stream_message_bytes = stream_message_bytes
        self._stream_request_bytes = stream_request_bytes
        self._stream_retry_s = stream_retry_s
        self._interceptors = tuple(interceptors)
        self._credentials = None
        if cacert or cert or key or token:
            from dengine.security.tls import client_credentials

            self._credentials = client_credentials(cacert, cert, key, token)
        self._attempt_timeout_s = attempt_timeout_s
        self._rng = rng or random.Random()
        self._fail_fast = fail_fast
        self._spread_reads = spread_reads
        self._next_reader = self._rng.randrange(1 << 16)  # many clients: spread from the start
        self._sessions = SessionPool(self._register_session)
        self._conns: dict[str, Connection] = {}
        self._members: dict[int, str] = {}
        self._leader: str | None = None
        self._discovery: asyncio.Task[str] | None = None
        self._closed = False

    # -------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every channel; calls in flight fail with Unavailable."""
        self._closed = True
        if self._discovery is not None:
            self._discovery.cancel()
        conns, self._conns = list(self._conns.values()), {}
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

    @property
    def leader(self) -> str | None:
        """The address of the leader as last known (None before discovery or after a loss)."""
        return self._leader

    @property
    def client_ids(self) -> list[int]:
        """The session client ids this client has used for writes so far."""
        return self._sessions.client_ids

    def _conn(self, address: str) -> Connection:
        if self._closed:
            raise Unavailable("the client is closed")
        conn = self._conns.get(address)
        if conn is None:
            conn = self._conns[address] = Connection(
                address,
                self.pool_size,
                self._options,
                self.stats,
                use_stream=self.use_stream,
                stream_message_bytes=self._stream_message_bytes,
                stream_retry_s=self._stream_retry_s,
                interceptors=self._interceptors,
                credentials=self._credentials,
            )
        return conn

    # ------------------------------------------------------------------- discovery and retries

    async def _leader_address(self, deadline: float) -> str:
        if self._leader is not None:
            return self._leader
        if self._discovery is None or self._discovery.done():
            self._discovery = asyncio.create_task(self._discover(deadline))
            self._discovery.add_done_callback(_retrieve)
        # Shield: one caller's deadline must not cancel the discovery others wait on.
        remaining = deadline - _now()
        try:
            return await asyncio.wait_for(asyncio.shield(self._discovery), max(remaining, 0))
        except TimeoutError:
            raise Unavailable("no leader found before the deadline") from None

    async def _discover(self, deadline: float) -> str:
        """Ask every known endpoint for its Status; the leader with the highest term wins."""
        addrs = list(dict.fromkeys([*self.endpoints, *self._members.values()]))
        per_call = max(min(deadline - _now(), 1.0), 0.05)
        answers = await asyncio.gather(
            *(self._status_once(a, per_call) for a in addrs), return_exceptions=True
        )
        statuses = [a for a in answers if isinstance(a, NodeStatus)]
        if self._fail_fast and all(_no_connection(a) for a in answers):
            reasons = "; ".join(f"{a}: {_no_connection(e)}" for a, e in zip(addrs, answers,
                                                                             strict=True))
            raise _Unreachable(f"no endpoint accepts a connection ({reasons})")
        for st in statuses:
            for m in st.members:
                if m.address:
                    self._members[m.id] = m.address
        leaders = sorted((s for s in statuses if s.is_leader), key=lambda s: -s.term)
        if leaders:
            self._leader = leaders[0].address
            return self._leader
        hinted = sorted((s for s in statuses if s.leader_addr), key=lambda s: -s.term)
        if hinted:
            self._leader = hinted[0].leader_addr
            return self._leader  # type: ignore[return-value]
        errors = "; ".join(
            f"{a}: {e}"
            for a, e in zip(addrs, answers, strict=True)
            if not isinstance(e, NodeStatus)
        )
        raise Unavailable(
            f"no leader known by {len(statuses)} of {len(addrs)} endpoints"
            + (f" ({errors})" if errors else "")
        )

    async def _status_once(self, address: str, timeout: float) -> NodeStatus:
        ch = self._conn(address).pick()
        self.unary_calls += 1
        try:
            resp = await ch.cluster.Status(client_pb2.StatusRequest(), timeout=timeout)
        except grpc.RpcError as e:
            raise S.from_rpc_error(e) from e
        _raise_error(resp.error)
        return NodeStatus.from_proto(resp, address)

    def _follow(self, exc: NotLeader, tried: str) -> bool:
        """Point at the hinted leader; True when the hint names a node other than ``tried``."""
        addr = exc.leader_addr or (self._members.get(exc.leader_id) if exc.leader_id else None)
        if addr and addr != tried:
            self._leader = addr
            return True
        self._forget(tried)
        return False

    def _forget(self, address: str | None) -> None:
        """Drop the cached leader if it is still ``address`` (another caller may have moved on)."""
        if self._leader == address:
            self._leader = None

    async def _retry(
        self,
        op: str,
        attempt: Callable[[str, float], Awaitable[T]],
        *,
        timeout: float | None,
        endpoint: str | None = None,
        spread: bool = False,
        any_member: bool = False,
    ) -> T:
        """Run ``attempt(address, remaining_s)`` until it succeeds, fails for good, or the
        deadline passes. ``endpoint`` pins the call to one node (no redirects); ``spread``
        sends each attempt to the next member in turn; ``any_member``: to the leader, or to the
        next member when no leader is found (reads any member may serve)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = _now() + timeout
        delay = self._backoff[0]
        last: BaseException | None = None
        attempts: list[str] = []  # what each attempt met, for the timeout's message
        addr: str | None = endpoint
        hops = 0
        while True:
            if last is not None:
                attempts.append(_attempt(addr, last))
            remaining = deadline - _now()
            if remaining <= 0:
                why = f"{op} ({len(attempts)} attempts: {_runs(attempts)})" if attempts else op
                raise OperationTimeout(why, timeout) from last
            if self._closed:
                raise Unavailable("the client is closed") from last
            addr = endpoint if endpoint is not None else (self._reader() if spread else None)
            try:
                if addr is None and any_member:
                    try:
                        addr = await self._leader_address(deadline)
                    except _Unreachable:
                        raise
                    except Unavailable:
                        addr = self._reader()
                elif addr is None:
                    addr = await self._leader_address(deadline)
                budget = deadline - _now()
                if self._attempt_timeout_s is not None:
                    budget = min(budget, self._attempt_timeout_s)
                return await attempt(addr, budget)
            except NotLeader as e:
                last = e
                if endpoint is not None:
                    raise
                spread = False  # a member without a leader: from now on, ask the leader
                if self._follow(e, addr or "") and hops < 3:
                    hops += 1
                    continue  # a fresh hint: go there now, no backoff
            except _Unreachable:
                raise
            except Overloaded as e:  # refused before anything was done: back off, same node
                last = e
                delay = max(delay, e.retry_after_ms / 1000)
            except RETRYABLE as e:
                last = e
                if self._fail_fast and endpoint is not None and _no_connection(e):
                    raise _Unreachable(f"{endpoint}: {_no_connection(e)}") from e
                if endpoint is None:
                    self._forget(addr)  # a timed-out attempt too: the leader may be cut off
            hops = 0
            pause = min(delay * (0.5 + self._rng.random()), deadline - _now())
            if pause > 0:
                await asyncio.sleep(pause)
            delay = min(delay * 2, self._backoff[1])

    def _reader(self) -> str:
        """The next member to read from, round-robin over every address known."""
        addrs = list(dict.fromkeys([*self.endpoints, *self._members.values()]))
        self._next_reader = (self._next_reader + 1) % len(addrs)
        return addrs[self._next_reader]

    def _read_route(self, consistency: int) -> dict[str, Any]:
        """Where a read at ``consistency`` may go (see ``spread_reads``)."""
        return {"spread": self._spread_reads and consistency != Consistency.LEASE,
                "any_member": consistency == Consistency.SERIALIZABLE}

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
            _raise_error(resp.error)
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
            _raise_error(resp.error)
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
        deadline = _now() + timeout
        for fresh in (True, False):
            sent = [0]
            async with self._sessions.session(max(deadline - _now(), 0.001), op) as session:
                try:
                    return await self._kv(op, field, make(session),
                                          timeout=max(deadline - _now(), 0.001),
                                          endpoint=endpoint, sent=sent)
                except SessionExpired:
                    self._sessions.expire(session.client_id)
                    if sent[0] > 1 or not fresh:
                        raise
        raise AssertionError("unreachable")

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
            _raise_error(resp.error)
            return resp

        return await self._retry(op, attempt, timeout=timeout, endpoint=endpoint)

    # ------------------------------------------------------------------------------------ KV

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
        consistency: Consist = Consistency.LINEARIZABLE,
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
        consistency: Consist = Consistency.LINEARIZABLE,
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
        consistency: Consist = Consistency.LINEARIZABLE,
        timeout: float | None = None,
        endpoint: str | None = None,
    ) -> dict[bytes, KeyValue]:
        """The keys that exist among ``keys``. An answer within the node's byte budget
        (``network.scan_max_bytes``) is read at one point in time; a larger one comes in pages,
        each at one point in time (and each linearizable at that level), followed here."""
        want = [to_bytes(k) for k in keys]
        level = Consistency.parse(consistency)
        deadline = _now() + (self.timeout if timeout is None else timeout)
        out: dict[bytes, KeyValue] = {}
        while True:
            req = client_pb2.GetManyRequest(keys=want, consistency=level)  # type: ignore[arg-type]  # protobuf takes any int; its stubs only the enum class
            resp = await self._kv("get_many", "get_many", req,
                                  timeout=max(deadline - _now(), 0.001), endpoint=endpoint,
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
        consistency: Consist = Consistency.LINEARIZABLE,
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
        consistency: Consist = Consistency.LINEARIZABLE,
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

    # ------------------------------------------------------------------------------- cluster

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


def _attempt(addr: str | None, err: BaseException) -> str:
    return f"{addr or 'no leader known'}: {type(err).__name__}: {err}"


def _runs(attempts: list[str]) -> str:
    """Every attempt in order, a run of identical ones written once with its count."""
    out: list[str] = []
    i = 0
    while i < len(attempts):
        j = i
        while j < len(attempts) and attempts[j] == attempts[i]:
            j += 1
        out.append(attempts[i] if j - i == 1 else f"{attempts[i]} (x{j - i})")
        i = j
    return "; ".join(out)


def _raise_error(err: client_pb2.Error) -> None:
    exc = S.from_proto(err)
    if exc is not None:
        raise exc


def _retrieve(task: asyncio.Task) -> None:
    """Mark a shared task's failure as seen (each waiter gets it; none may be left)."""
    if not task.cancelled():
        task.exception()


def _now() -> float:
    return asyncio.get_running_loop().time()
