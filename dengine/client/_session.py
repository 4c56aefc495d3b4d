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
from collections.abc import AsyncIterator, Awaitable, Callable
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


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()  # its starter reports it; nobody else must see it as unhandled


class SessionPool:
    """Hands out ``Session`` values; see the module docstring for the window rule.

    ``register(timeout, op)`` opens a session and returns its id. Writers that find no open lane
    wait for registrations in flight; one more starts only when those in flight cannot seat
    them all (``window`` writers each), so a burst of N writers costs about N / window
    registrations, sent together, and a lone writer exactly one.
    """

    def __init__(self, register: Callable[[float | None, str], Awaitable[int]],
                 window: int = 8) -> None:
        self._register = register
        self._window = window
        self._lanes: list[_Lane] = []
        self._pending: set[asyncio.Future[None]] = set()
        self._waiting = 0

    @property
    def client_ids(self) -> list[int]:
        return [lane.client_id for lane in self._lanes]

    def _open_lane(self) -> _Lane | None:
        return next((ln for ln in self._lanes if ln.open_for(self._window)), None)

    async def _add_lane(self, timeout: float | None, op: str) -> None:
        self._lanes.append(_Lane(await self._register(timeout, op)))

    def expire(self, client_id: int) -> None:
        """Stop using session ``client_id``: the cluster no longer holds it."""
        self._lanes = [ln for ln in self._lanes if ln.client_id != client_id]

    async def _lane(self, timeout: float | None, op: str) -> _Lane:
        lane = self._open_lane()
        while lane is None:
            mine = None
            self._waiting += 1
            try:
                if len(self._pending) * self._window < self._waiting:
                    mine = asyncio.ensure_future(self._add_lane(timeout, op))
                    mine.add_done_callback(self._pending.discard)
                    mine.add_done_callback(_retrieve)
                    self._pending.add(mine)
                await asyncio.wait(set(self._pending), return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._waiting -= 1
            err = mine.exception() if mine is not None and mine.done() \
                and not mine.cancelled() else None
            if err is not None:
                raise err
            lane = self._open_lane()
        return lane

    @asynccontextmanager
    async def session(self, timeout: float | None = None,
                      op: str = "write") -> AsyncIterator[client_pb2.Session]:
        """A fresh (client_id, seq) held for the whole life of one write, retries included;
        ``timeout`` bounds registering a session when one is needed."""
        lane = await self._lane(timeout, op)
        seq = lane.next_seq
        lane.next_seq += 1
        lane.outstanding.add(seq)
        try:
            yield client_pb2.Session(client_id=lane.client_id, seq=seq)
        finally:
            lane.outstanding.discard(seq)
