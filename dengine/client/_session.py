"""Client sessions for exactly-once writes (Raft thesis §6.3).

Every write carries ``(client_id, seq)``; the state machine keeps the results of each client's
``session_results`` (16) most recent sequence numbers, applies a new one once and answers a
retried one from that table. A sequence number older than all kept ones is refused as expired
(whether it was applied is then unknown).

Concurrent writes may reach the log in another order than their numbers. If more than the kept
count of later numbers of one client were applied before an earlier one, that earlier write would
be refused as expired although it never ran. So a client id (a *lane*) never has more than
``per_lane`` (default 8, below 16) writes outstanding: a write holds its lane slot from its first
attempt to its last retry, and a busy client opens more lanes, each with a random 64-bit id.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

from dengine.v1 import client_pb2

__all__ = ["SessionPool"]


class _Lane:
    __slots__ = ("client_id", "next_seq", "in_flight")

    def __init__(self, client_id: int) -> None:
        self.client_id = client_id
        self.next_seq = 1
        self.in_flight = 0


class SessionPool:
    """Hands out ``Session`` values; at most ``per_lane`` outstanding per client id."""

    def __init__(self, rng: random.Random | None = None, per_lane: int = 8) -> None:
        self._rng = rng or random.SystemRandom()
        self._per_lane = per_lane
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
        lane = next((ln for ln in self._lanes if ln.in_flight < self._per_lane), None)
        if lane is None:
            lane = self._new_lane()
        seq = lane.next_seq
        lane.next_seq += 1
        lane.in_flight += 1
        try:
            yield client_pb2.Session(client_id=lane.client_id, seq=seq)
        finally:
            lane.in_flight -= 1
