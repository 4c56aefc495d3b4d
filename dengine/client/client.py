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

With ``spread_reads`` a read goes to its caller's member instead of the leader: each asyncio
task is given one on its first read, in turn, and keeps it until an attempt there fails, so the
callers of one member share its stream's messages (see ``Client._reader``).

KV calls (:mod:`dengine.client.kv`) go over the channel's ``Kv.Batch`` stream by default (see
:mod:`dengine.client._stream`), so concurrent callers share gRPC messages; a request too large for
the stream's budget, or any call while the stream is broken, goes as a plain unary call. Cluster
calls (:mod:`dengine.client.cluster`) are always unary.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from dengine.client._pool import Connection, channel_options
from dengine.client._reach import _no_connection, _Unreachable
from dengine.client._rpc import now, raise_error
from dengine.client._session import SessionPool
from dengine.client._stream import StreamStats
from dengine.client.cluster import ClusterMixin
from dengine.client.kv import KvMixin
from dengine.client.lease import LeaseMixin
from dengine.client.types import Consistency, NodeStatus
from dengine.client.watch import WatchMixin
from dengine.errors import (
    NotLeader,
    OperationTimeout,
    Overloaded,
    ProposalDropped,
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


class Client(KvMixin, ClusterMixin, WatchMixin, LeaseMixin):
    """Async dengine client (grpc.aio). Use ``async with Client([...]) as c:`` or ``close()``.

    ``endpoints`` are ``host:port`` strings of any members; ``timeout`` is the default per-call
    deadline in seconds, retries included; ``pool_size`` channels per node; ``use_stream`` sends
    KV calls over the coalescing batch stream (unary otherwise); one attempt waits at most
    ``attempt_timeout_s`` before the call is retried (safe: writes carry sessions), so a leader
    cut off from its quorum does not hold a call for its whole deadline; ``interceptors`` are
    grpc.aio client interceptors put on every channel (auth, tracing, fault injection in tests).
    TLS: ``cacert`` (the CA that issued the nodes' certificates), ``cert`` / ``key`` (this
    client's certificate, whose common name is its identity), ``token`` (a bearer token that
    names the identity instead); any of them turns TLS on.
    ``fail_fast``: when no endpoint can be connected to at all (connection refused, unknown
    host), fail at once with ``Unavailable`` instead of retrying until the deadline (what a
    command-line tool wants; a program waiting for its cluster to come up does not);
    ``spread_reads``: linearizable and serializable reads go to every member, not only the
    leader (a follower answers a linearizable read after asking the leader for a read index,
    a serializable one from its own state); lease reads always go to the leader, which holds
    the lease. Reads are spread by caller, not read by read: each asyncio task keeps to one
    member, given out in turn on its first read, so the callers that share a member share its
    batch stream messages; a task moves on to another member after an attempt there fails
    (unreachable, not serving, no leader). A lone task therefore reads from one member; it
    takes many concurrent callers to spread the load. Either way a serializable read that
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
        self._moves = 0
        # The member index of each caller that read with spread_reads (weak: a finished task
        # leaves no entry behind).
        self._readers: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = (
            weakref.WeakKeyDictionary())
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
        remaining = deadline - now()
        try:
            return await asyncio.wait_for(asyncio.shield(self._discovery), max(remaining, 0))
        except TimeoutError:
            raise Unavailable("no leader found before the deadline") from None

    async def _discover(self, deadline: float) -> str:
        """Ask every known endpoint for its Status; the leader with the highest term wins."""
        addrs = list(dict.fromkeys([*self.endpoints, *self._members.values()]))
        per_call = max(min(deadline - now(), 1.0), 0.05)
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
        raise_error(resp.error)
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
        sends it to the calling task's member (see ``_reader``), the task moving on to another
        one after an attempt there fails; ``any_member``: to the leader, or to the next member
        when no leader is found (reads any member may serve)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = now() + timeout
        delay = self._backoff[0]
        last: BaseException | None = None
        attempts: list[str] = []  # what each attempt met, for the timeout's message
        addr: str | None = endpoint
        hops = 0
        while True:
            if last is not None:
                attempts.append(_attempt(addr, last))
            remaining = deadline - now()
            if remaining <= 0:
                why = f"{op} ({len(attempts)} attempts: {_runs(attempts)})" if attempts else op
                raise OperationTimeout(why, timeout) from last
            if self._closed:
                raise Unavailable("the client is closed") from last
            spread_attempt = spread and endpoint is None
            addr = endpoint if endpoint is not None else (self._reader() if spread else None)
            try:
                if addr is None and any_member:
                    try:
                        addr = await self._leader_address(deadline)
                    except _Unreachable:
                        raise
                    except Unavailable:  # no leader: each attempt tries the next member
                        addr = self._next_member()
                elif addr is None:
                    addr = await self._leader_address(deadline)
                budget = deadline - now()
                if self._attempt_timeout_s is not None:
                    budget = min(budget, self._attempt_timeout_s)
                return await attempt(addr, budget)
            except NotLeader as e:
                last = e
                if endpoint is not None:
                    raise
                if spread_attempt:
                    self._move_reader()
                spread = False  # a member without a leader: from now on, ask the leader
                if self._follow(e, addr or "") and hops < 3:
                    hops += 1
                    continue  # a fresh hint: go there now, no backoff
            except _Unreachable:
                raise
            except Overloaded as e:  # refused before anything was done: back off
                last = e
                delay = max(delay, e.retry_after_ms / 1000)
                if spread_attempt:
                    self._move_reader()  # a spread read: to another member
            except RETRYABLE as e:
                last = e
                if spread_attempt:
                    self._move_reader()
                if self._fail_fast and endpoint is not None and _no_connection(e):
                    raise _Unreachable(f"{endpoint}: {_no_connection(e)}") from e
                if endpoint is None:
                    self._forget(addr)  # a timed-out attempt too: the leader may be cut off
            hops = 0
            pause = min(delay * (0.5 + self._rng.random()), deadline - now())
            if pause > 0:
                await asyncio.sleep(pause)
            delay = min(delay * 2, self._backoff[1])

    def _read_addresses(self) -> list[str]:
        return list(dict.fromkeys([*self.endpoints, *self._members.values()]))

    def _reader(self) -> str:
        """The member the calling task reads from (``spread_reads``).

        Each task gets a member index on its first spread read, in turn over the tasks (so
        concurrent callers are shared out evenly), and keeps it until an attempt fails
        (``_move_reader``). Spreading by caller rather than by read keeps the callers of one
        member on its batch stream together: read by read, the callers woken by one answer
        would scatter over every member's stream and each read would travel in a message of
        its own. Outside a task, reads go round-robin."""
        addrs = self._read_addresses()
        task = asyncio.current_task()
        n = self._readers.get(task) if task is not None else None
        if n is None:
            self._next_reader = n = (self._next_reader + 1) % (1 << 30)
            if task is not None:
                self._readers[task] = n
        return addrs[n % len(addrs)]

    def _next_member(self) -> str:
        """The next member in turn, whichever task asks (a read any member may serve, when no
        leader is found: successive attempts must reach every member, not stick to one)."""
        addrs = self._read_addresses()
        self._next_reader = (self._next_reader + 1) % (1 << 30)
        return addrs[self._next_reader % len(addrs)]

    def _move_reader(self) -> None:
        """After a failed attempt at its member, the calling task moves on to another one; the
        callers leaving one member are shared out over all the others."""
        task = asyncio.current_task()
        n = self._readers.get(task) if task is not None else None
        others = len(self._read_addresses()) - 1
        if task is None or n is None or others < 1:
            return
        self._moves += 1
        self._readers[task] = n + 1 + self._moves % others

    def _read_route(self, consistency: int) -> dict[str, Any]:
        """Where a read at ``consistency`` may go (see ``spread_reads``)."""
        return {"spread": self._spread_reads and consistency != Consistency.LEASE,
                "any_member": consistency == Consistency.SERIALIZABLE}



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


def _retrieve(task: asyncio.Task) -> None:
    """Mark a shared task's failure as seen (each waiter gets it; none may be left)."""
    if not task.cancelled():
        task.exception()

