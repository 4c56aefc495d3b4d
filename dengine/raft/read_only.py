"""Linearizable reads without a log entry: ReadIndex rounds and the leader lease.

ReadIndex (Raft thesis §6.4). The leader records its commit index for each read, then confirms
it is still the leader with one heartbeat round; every read queued before that round starts
shares it. Rounds are numbered: a HEARTBEAT carries its round in ``index`` and the follower
echoes it, so a quorum acking round ``r`` or later confirms every read waiting on round ``r``.
One round is in flight at a time: reads that arrive meanwhile wait for the next one, which starts
as soon as the current one is confirmed (or at the next heartbeat, should its acks be lost), so
a stream of reads costs one round per round trip rather than one per read.

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
from dengine.raft.ready import ReadState

__all__ = ["ReadOnly", "ReadRequest", "Reads"]


@dataclass(slots=True)
class ReadRequest:
    """One read waiting for its round: ``requester`` is the local node or a follower."""

    context: bytes
    index: int
    round: int
    requester: int


class ReadOnly:
    """Pending reads, heartbeat rounds, acks, and the lease start."""

    __slots__ = ("pending", "round", "acked", "round_tick", "need_round", "lease_start",
                 "confirmed")

    def __init__(self) -> None:
        self.pending: deque[ReadRequest] = deque()
        self.round = 0
        self.acked: dict[int, int] = {}
        self.round_tick: dict[int, int] = {}
        self.need_round = False
        self.lease_start = -1
        #: The latest round a quorum acked; a round above it is still in flight.
        self.confirmed = 0

    def reset(self) -> list[ReadRequest]:
        """Forget everything (a new term or a lost leadership); returns the reads dropped."""
        dropped = list(self.pending)
        self.pending.clear()
        self.round = 0
        self.acked.clear()
        self.round_tick.clear()
        self.need_round = False
        self.lease_start = -1
        self.confirmed = 0
        return dropped

    def add(self, context: bytes, index: int, requester: int) -> None:
        """Queue a read at ``index``; it waits for the next round to start."""
        self.pending.append(ReadRequest(context, index, self.round + 1, requester))
        self.need_round = True

    def round_due(self) -> bool:
        """Reads wait for a round and none is in flight: start one now."""
        return self.need_round and self.round <= self.confirmed

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
        if confirmed > self.confirmed:
            self.confirmed = confirmed
        tick = self.round_tick.get(confirmed)
        if tick is not None and tick > self.lease_start:
            self.lease_start = tick
        for r in [r for r in self.round_tick if r < confirmed]:
            del self.round_tick[r]
        released = []
        while self.pending and self.pending[0].round <= confirmed:
            released.append(self.pending.popleft())
        return released


class Reads:
    """Every read a core tracks, owned in one place.

    - ``rounds``: the leader's ReadIndex rounds, acks and lease start (:class:`ReadOnly`);
    - ``until_commit``: reads a new leader holds until an entry of its term commits (§6.4);
    - ``forwarded``: reads a follower forwarded, by context, to the leader it asked;
    - ``ready``: local reads decided (served once the applied index reaches their index, or
      failed), handed out in Readies;
    - ``lease_void``: the lease may not be used for the rest of this term (a transfer began).

    Invariant: a context is in at most one of ``rounds``, ``until_commit``, ``forwarded`` and
    ``ready``; ``ready`` holds failed reads first, then reads by index (not decreasing).
    """

    __slots__ = ("rounds", "until_commit", "forwarded", "ready", "lease_void")

    def __init__(self) -> None:
        self.rounds = ReadOnly()
        self.until_commit: list[tuple[bytes, int, bool]] = []
        self.forwarded: dict[bytes, int] = {}
        self.ready: list[ReadState] = []
        self.lease_void = False

    # -- what the Ready hands out ----------------------------------------------------------
    def has_ready(self, applied: int) -> bool:
        return bool(self.ready) and self.ready[0].index <= applied

    def take(self, applying: int) -> list[ReadState]:
        """The decided reads that may be served once ``applying`` is applied."""
        ready = self.ready
        n = 0
        while n < len(ready) and ready[n].index <= applying:
            n += 1
        out = ready[:n]
        del ready[:n]
        return out

    def serve(self, context: bytes, index: int) -> None:
        """A local read is confirmed at ``index`` (leader: indexes arrive in order)."""
        self.ready.append(ReadState(context, index))

    def _fail(self, context: bytes) -> None:
        self.ready.insert(0, ReadState(context, 0, failed=True))

    # -- follower side ---------------------------------------------------------------------
    def forward(self, context: bytes, leader: int) -> None:
        self.forwarded[context] = leader

    def forwarded_to(self, context: bytes) -> int:
        """The leader a read was forwarded to (0: none)."""
        return self.forwarded.get(context, 0)

    def on_answer(self, context: bytes, index: int, failed: bool) -> bool:
        """The leader answered a forwarded read; False when we forwarded no such read."""
        if self.forwarded.pop(context, None) is None:
            return False
        self.ready.append(ReadState(context, 0, failed=True) if failed
                          else ReadState(context, index))
        self.ready.sort(key=_read_index)
        return True

    def fail_forwarded(self) -> None:
        """The leader we forwarded reads to is no longer ours: they fail (callers retry)."""
        for context in self.forwarded:
            self._fail(context)
        self.forwarded.clear()

    # -- leader side -----------------------------------------------------------------------
    def wait_for_commit(self, context: bytes, requester: int, lease: bool) -> None:
        self.until_commit.append((context, requester, lease))

    def take_until_commit(self) -> list[tuple[bytes, int, bool]]:
        out, self.until_commit = self.until_commit, []
        return out

    def on_become_leader(self) -> None:
        self.rounds.reset()
        self.until_commit.clear()

    def lose_leadership(self, self_id: int) -> list[tuple[bytes, int]]:
        """Leadership is lost: local reads still waiting fail; returns (context, requester)
        of the followers' reads, which the caller refuses."""
        waiting = [(r.context, r.requester) for r in self.rounds.reset()]
        waiting += [(c, r) for c, r, _ in self.until_commit]
        self.until_commit.clear()
        remote = []
        for context, requester in waiting:
            if requester == self_id:
                self._fail(context)
            else:
                remote.append((context, requester))
        return remote

    def void_lease(self) -> None:
        """A transfer let another node campaign past stickiness: no lease reads this term."""
        self.lease_void = True

    def new_leadership(self) -> None:
        """Any role change (``RaftCore._reset``): a voided lease no longer applies."""
        self.lease_void = False

    def lease_holds(self, now: int, lease_ticks: int) -> bool:
        start = self.rounds.lease_start
        return not self.lease_void and start >= 0 and now < start + lease_ticks


def _read_index(rs: ReadState) -> int:
    return rs.index
