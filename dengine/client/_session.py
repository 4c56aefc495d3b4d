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
pins a lane, new writes go to another lane, each with a random 64-bit id. Then at most
``window - 1`` later numbers can be applied before any write, and its retry is never refused.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

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

    def __init__(self, rng: random.Random | None = None, window: int = 8) -> None:
        self._rng = rng or random.SystemRandom()
        self._window = window
        self._lanes: list[_Lane] = []

    @property
    def client_ids(self) -> list[int]:
        return [lane.client_id for lane in self._lanes]

    def _new_lane(self) -> _Lane:
        used = {lane.client_id for lane in self._lanes}
        cid = 0
        while cid == 0 or cid in used:
            cid = self._rng.getrandbits(64)
        lane = _Lane(cid)
        self._lanes.append(lane)
        return lane

    @contextmanager
    def session(self) -> Iterator[client_pb2.Session]:
        """A fresh (client_id, seq) held for the whole life of one write, retries included."""
        lane = next((ln for ln in self._lanes if ln.open_for(self._window)), None)
        if lane is None:
            lane = self._new_lane()
        seq = lane.next_seq
        lane.next_seq += 1
        lane.outstanding.add(seq)
        try:
            yield client_pb2.Session(client_id=lane.client_id, seq=seq)
        finally:
            lane.outstanding.discard(seq)
