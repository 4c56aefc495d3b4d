"""Client sessions for exactly-once writes (Raft thesis §6.3).

Every write carries ``(client_id, seq)``; the state machine keeps the results of each client's
``session_results`` (16) most recent sequence numbers, applies a new one once and answers a
retried one from that table. A sequence number older than all kept ones is refused as expired
(whether it was applied is then unknown).

Concurrent writes may reach the log in another order than their numbers. If more than the kept
count of later numbers of one client were applied before an earlier one, that earlier write would
be refused as expired although it never ran. So a client id (a *lane*) never hands out a number
``window`` (default 8, below 16) or more past its oldest outstanding one: a write holds its number
from its first attempt to its last retry, and while a slow write (one riding out a failover, say)
pins a lane, new writes go to another lane. Then at most ``window - 1`` later numbers can be
applied before any write, and its retry is never refused for age.

A lane's id is a session registered through the log (``register``, an awaitable that returns
the id the state machine assigned). A lane whose session the cluster reports expired (evicted
from a full table, or idle past its lifetime) is dropped with :meth:`SessionPool.expire`; the
next write registers a new one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from dengine.v1 import client_pb2

__all__ = ["SessionPool"]


class _Lane:
    __slots__ = ("client_id", "next_seq", "outstanding")

    def __init__(self, client_id: int) -> None:
        self.client_id = client_id
        self.next_seq = 1
        self.outstanding: set[int] = set()

    def open_for(self, window: int) -> bool:
        return not self.outstanding or self.next_seq - min(self.outstanding) < window


class SessionPool:
    """Hands out ``Session`` values; see the module docstring for the window rule.

    ``register(timeout, op, count)`` opens ``count`` sessions and returns their ids. Writers
    that find no open lane queue up, oldest first; a registration starts only when the lanes
    in flight cannot seat everyone queued (``window`` writers each) and asks for as many lanes
    as are missing, so a burst of writers costs one registration (one log entry), and a lone
    writer one lane. A lane that frees a seat seats the oldest queued writer.
    """

    def __init__(self, register: Callable[[float | None, str, int], Awaitable[Sequence[int]]],
                 window: int = 8, max_register: int = 64) -> None:
        self._register = register
        self._window = window
        self._max_register = max_register
        self._lanes: list[_Lane] = []
        self._waiters: deque[asyncio.Future[tuple[_Lane, int]]] = deque()
        self._registering = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._kick_due = False

    @property
    def client_ids(self) -> list[int]:
        return [lane.client_id for lane in self._lanes]

    def expire(self, client_id: int) -> None:
        """Stop using session ``client_id``: the cluster no longer holds it."""
        self._lanes = [ln for ln in self._lanes if ln.client_id != client_id]

    def _open_lane(self) -> _Lane | None:
        return next((ln for ln in self._lanes if ln.open_for(self._window)), None)

    @staticmethod
    def _seat(lane: _Lane) -> tuple[_Lane, int]:
        seq = lane.next_seq
        lane.next_seq += 1
        lane.outstanding.add(seq)
        return lane, seq

    def _serve(self) -> None:
        """Seat queued writers on open lanes, oldest first."""
        while self._waiters:
            if self._waiters[0].done():  # cancelled while queued
                self._waiters.popleft()
                continue
            lane = self._open_lane()
            if lane is None:
                return
            self._waiters.popleft().set_result(self._seat(lane))

    async def _add_lanes(self, timeout: float | None, op: str, count: int) -> None:
        try:
            client_ids = await self._register(timeout, op, count)
        except BaseException as e:  # noqa: BLE001 - handed to the writers it would have seated
            self._registering -= count
            queued = [w for w in self._waiters if not w.done()]
            for w in queued[: max(len(queued) - self._registering * self._window, 0)]:
                if isinstance(e, Exception):
                    w.set_exception(e)
                else:
                    w.cancel()
            self._waiters = deque(w for w in self._waiters if not w.done())
        else:
            self._registering -= count
            self._lanes.extend(_Lane(c) for c in client_ids)
            self._serve()
        self._schedule_kick(timeout, op)  # writers a capped registration could not seat

    def _schedule_kick(self, timeout: float | None, op: str) -> None:
        if self._waiters and not self._kick_due:
            # decided once the writers arriving with this one are queued too: one
            # registration for the whole burst
            self._kick_due = True
            asyncio.get_running_loop().call_soon(self._kick, timeout, op)

    def _kick(self, timeout: float | None, op: str) -> None:
        """Start a registration for the lanes the queued writers still lack."""
        self._kick_due = False
        missing = sum(1 for w in self._waiters if not w.done()) \
            - self._registering * self._window
        if missing > 0:
            count = min(-(-missing // self._window), self._max_register)
            self._registering += count
            task = asyncio.ensure_future(self._add_lanes(timeout, op, count))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _take(self, timeout: float | None, op: str) -> tuple[_Lane, int]:
        lane = self._open_lane()
        if lane is not None and not self._waiters:
            return self._seat(lane)
        fut: asyncio.Future[tuple[_Lane, int]] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._serve()
        if not fut.done():
            self._schedule_kick(timeout, op)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # seated just as it was cancelled
                taken, seq = fut.result()
                taken.outstanding.discard(seq)
                self._serve()
            raise

    @asynccontextmanager
    async def session(self, timeout: float | None = None,
                      op: str = "write") -> AsyncIterator[client_pb2.Session]:
        """A fresh (client_id, seq) held for the whole life of one write, retries included;
        ``timeout`` bounds registering a session when one is needed."""
        lane, seq = await self._take(timeout, op)
        try:
            yield client_pb2.Session(client_id=lane.client_id, seq=seq)
        finally:
            lane.outstanding.discard(seq)
            self._serve()
