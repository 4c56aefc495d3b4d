"""Linearizable reads without a log entry: ReadIndex rounds and the leader lease.

ReadIndex (Raft thesis §6.4). The leader records its commit index for each read, then confirms
it is still the leader with one heartbeat round; every read queued before that round starts
shares it. Rounds are numbered: a HEARTBEAT carries its round in ``index`` and the follower
echoes it, so a quorum acking round ``r`` or later confirms every read waiting on round ``r``.

Lease (thesis §6.4.1). A follower that heard from the leader refuses votes for an election
timeout (leader stickiness with check-quorum). So once a quorum acked a round sent at tick
``t``, no other leader can exist before ``t + election_ticks`` on their clocks; the leader
serves reads without a round until ``t + lease_ticks`` on its own, ``lease_ticks`` being
shorter to allow for clock drift.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from dengine._core import quorum

__all__ = ["ReadOnly", "ReadRequest"]


@dataclass(slots=True)
class ReadRequest:
    """One read waiting for its round: ``requester`` is the local node or a follower."""

    context: bytes
    index: int
    round: int
    requester: int


class ReadOnly:
    """Pending reads, heartbeat rounds, acks, and the lease start."""

    __slots__ = ("pending", "round", "acked", "round_tick", "need_round", "lease_start")

    def __init__(self) -> None:
        self.pending: deque[ReadRequest] = deque()
        self.round = 0
        self.acked: dict[int, int] = {}
        self.round_tick: dict[int, int] = {}
        self.need_round = False
        self.lease_start = -1

    def reset(self) -> list[ReadRequest]:
        """Forget everything (a new term or a lost leadership); returns the reads dropped."""
        dropped = list(self.pending)
        self.pending.clear()
        self.round = 0
        self.acked.clear()
        self.round_tick.clear()
        self.need_round = False
        self.lease_start = -1
        return dropped

    def add(self, context: bytes, index: int, requester: int) -> None:
        """Queue a read at ``index``; it waits for the next round to start."""
        self.pending.append(ReadRequest(context, index, self.round + 1, requester))
        self.need_round = True

    def start_round(self, now: int) -> int:
        """A heartbeat round goes out at tick ``now``; returns its number."""
        self.round += 1
        self.round_tick[self.round] = now
        self.need_round = False
        return self.round

    def ack(self, node_id: int, round_: int) -> None:
        if round_ > self.acked.get(node_id, 0):
            self.acked[node_id] = round_

    def confirm(
        self, voters: tuple[int, ...], outgoing: tuple[int, ...], self_id: int
    ) -> list[ReadRequest]:
        """Release the reads whose round a quorum acked; update the lease start."""
        acked = dict(self.acked)
        acked[self_id] = self.round
        if outgoing:
            confirmed = quorum.joint_commit_index(voters, outgoing, acked)
        else:
            confirmed = quorum.commit_index(voters, acked)
        confirmed = min(confirmed, self.round)
        if confirmed <= 0:
            return []
        tick = self.round_tick.get(confirmed)
        if tick is not None and tick > self.lease_start:
            self.lease_start = tick
        for r in [r for r in self.round_tick if r < confirmed]:
            del self.round_tick[r]
        released = []
        while self.pending and self.pending[0].round <= confirmed:
            released.append(self.pending.popleft())
        return released
