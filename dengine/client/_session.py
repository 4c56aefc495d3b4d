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


class SessionPool:
    """Hands out ``Session`` values; see the module docstring for the window rule."""

    def __init__(self, register: Callable[[], Awaitable[int]], window: int = 8) -> None:
        self._register = register
        self._window = window
        self._lanes: list[_Lane] = []
        self._registering = asyncio.Lock()  # concurrent writes share one new lane, not one each

    @property
    def client_ids(self) -> list[int]:
        return [lane.client_id for lane in self._lanes]

    def _open_lane(self) -> _Lane | None:
        return next((ln for ln in self._lanes if ln.open_for(self._window)), None)

    async def _new_lane(self) -> _Lane:
        lane = _Lane(await self._register())
        self._lanes.append(lane)
        return lane

    def expire(self, client_id: int) -> None:
        """Stop using session ``client_id``: the cluster no longer holds it."""
        self._lanes = [ln for ln in self._lanes if ln.client_id != client_id]

    @asynccontextmanager
    async def session(self) -> AsyncIterator[client_pb2.Session]:
        """A fresh (client_id, seq) held for the whole life of one write, retries included."""
        lane = self._open_lane()
        if lane is None:
            async with self._registering:
                lane = self._open_lane() or await self._new_lane()
        seq = lane.next_seq
        lane.next_seq += 1
        lane.outstanding.add(seq)
        try:
            yield client_pb2.Session(client_id=lane.client_id, seq=seq)
        finally:
            lane.outstanding.discard(seq)
