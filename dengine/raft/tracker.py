"""What the leader knows about each peer, and the membership config it counts quorums over.

A :class:`Progress` per peer follows etcd-io/raft's tracker: in PROBE the leader sends one
append per heartbeat interval until it learns where the follower's log matches; in REPLICATE it
streams appends optimistically (``next_index`` runs ahead of ``match_index``), bounded by an
:class:`Inflights` window; in SNAPSHOT it waits for a snapshot transfer to finish.

Invariants: ``0 <= match_index < next_index``; in REPLICATE every index in ``inflights`` lies in
``(match_index, next_index)``.

A :class:`QuorumConfig` is the voters (and the outgoing voters while joint, Raft thesis §4.3)
plus the learners; it is immutable, so a membership change builds a new one and swaps it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from dengine._core import quorum
from dengine.raft.types import ConfState, Entry

__all__ = ["Inflights", "Progress", "ProgressState", "ProgressTracker", "QuorumConfig"]


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Inflights:
    """A ring of the last indexes of appends sent and not yet acknowledged, with their bytes.

    Full when ``max_count`` messages or ``max_bytes`` payload bytes are in flight.
    """

    __slots__ = ("_ring", "_bytes", "_start", "count", "bytes", "max_count", "max_bytes")

    def __init__(self, max_count: int, max_bytes: int = 0) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes  # 0: no byte limit
        self._ring = [0] * max_count
        self._bytes = [0] * max_count
        self._start = 0
        self.count = 0
        self.bytes = 0

    def full(self) -> bool:
        return self.count >= self.max_count or (0 < self.max_bytes <= self.bytes)

    def add(self, last_index: int, size: int) -> None:
        """Record an append whose last entry is ``last_index`` (increasing)."""
        if self.count >= self.max_count:
            raise OverflowError("inflight window is full")
        slot = (self._start + self.count) % self.max_count
        self._ring[slot] = last_index
        self._bytes[slot] = size
        self.count += 1
        self.bytes += size

    def free_le(self, index: int) -> None:
        """Acknowledge every append whose last index is <= ``index``."""
        ring, n = self._ring, self.max_count
        while self.count and ring[self._start] <= index:
            self.bytes -= self._bytes[self._start]
            self._start = (self._start + 1) % n
            self.count -= 1
        if not self.count:
            self._start = 0

    def free_first(self) -> None:
        """Forget the oldest append in flight (its ack may be lost)."""
        if self.count:
            self.free_le(self._ring[self._start])

    def reset(self) -> None:
        self._start = 0
        self.count = 0
        self.bytes = 0


@dataclass(slots=True)
class Progress:
    """The leader's view of one peer's log."""

    match_index: int
    next_index: int
    inflights: Inflights
    state: ProgressState = ProgressState.PROBE
    #: PROBE: an append was sent this heartbeat interval; wait for a reply or the next beat.
    probe_sent: bool = False
    #: Heard from since the last check-quorum (the leader itself is always active).
    recent_active: bool = False
    #: SNAPSHOT: the index of the snapshot being sent.
    pending_snapshot: int = 0
    is_learner: bool = False
    #: The commit index the last append to this peer carried (to coalesce commit notices).
    sent_commit: int = 0

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            self.next_index = max(self.match_index + 1, self.pending_snapshot + 1)
        else:
            self.next_index = self.match_index + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflights.reset()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next_index = self.match_index + 1
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflights.reset()

    def become_snapshot(self, snapshot_index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = snapshot_index
        self.probe_sent = False
        self.inflights.reset()

    def sent(self, commit: int, entries: list[Entry]) -> None:
        """An append carrying ``commit`` and ``entries`` went out: in REPLICATE the next index
        runs ahead over them (within the inflight window); in PROBE one probe is out."""
        self.sent_commit = commit
        if self.state == ProgressState.REPLICATE:
            if entries:
                end = entries[-1].index
                self.next_index = end + 1
                infl = self.inflights
                infl.add(end, sum(len(e.data) for e in entries) if infl.max_bytes else 0)
        else:
            self.probe_sent = True

    def reset(self, next_index: int, active: bool) -> None:
        """A new leader's view of the peer: nothing known to match, probe from ``next_index``."""
        self.match_index = 0
        self.next_index = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.recent_active = active
        self.sent_commit = 0
        self.inflights.reset()

    def set_learner(self, learner: bool) -> None:
        """The config in force makes the peer a learner (or a voter)."""
        self.is_learner = learner

    def set_recent_active(self, active: bool) -> None:
        """A check-quorum round starts: the peer must be heard from again (unless it is us)."""
        self.recent_active = active

    def heard(self) -> None:
        """The peer answered (check-quorum counts it as active)."""
        self.recent_active = True

    def on_heartbeat_resp(self) -> None:
        """A heartbeat answer: active; a probe may go again; in REPLICATE one more append
        may go if the window is full (an ack may have been lost, etcd)."""
        self.recent_active = True
        self.probe_sent = False
        if self.state == ProgressState.REPLICATE and self.inflights.full():
            self.inflights.free_first()

    def on_snapshot_report(self, success: bool) -> None:
        """The stream of a snapshot ended: wait for the follower's ack (or the next heartbeat)
        before sending more (etcd); on failure probe from the match index again."""
        if not success:
            self.pending_snapshot = 0
        self.become_probe()
        self.probe_sent = True

    def self_persisted_to(self, index: int) -> bool:
        """The leader's own entry: its log is durable through ``index``; True when it moved."""
        if index <= self.match_index:
            return False
        self.match_index = index
        self.next_index = index + 1
        return True

    def raise_match(self, index: int) -> None:
        """The leader's own entry when a config or a new term (re)creates it."""
        self.match_index = max(self.match_index, index)

    def maybe_update(self, index: int) -> bool:
        """An ack up to ``index``: raise match (and next); True when match moved."""
        updated = index > self.match_index
        if updated:
            self.match_index = index
            self.probe_sent = False
        if self.next_index < index + 1:
            self.next_index = index + 1
        return updated

    def maybe_decr_to(self, rejected: int, next_hint: int) -> bool:
        """A rejected append at ``rejected``; move ``next_index`` back to ``next_hint``.

        False when the rejection is stale (an older probe or one already covered by match).
        """
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match_index:
                return False
            self.next_index = self.match_index + 1
            return True
        if self.next_index - 1 != rejected:
            return False
        if rejected <= self.match_index:
            # It rejects what it acknowledged (a lost disk): probing again at once would get
            # the same answer, in a loop. The next heartbeat probes again.
            return False
        self.next_index = max(min(rejected, next_hint), self.match_index + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        """True when the leader should not send this peer another append now."""
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True


@dataclass(frozen=True, slots=True)
class QuorumConfig:
    """Voters (incoming), outgoing voters (non-empty while joint) and learners."""

    voters: tuple[int, ...]
    voters_outgoing: tuple[int, ...] = ()
    learners: frozenset[int] = field(default_factory=frozenset)
    learners_next: frozenset[int] = field(default_factory=frozenset)
    auto_leave: bool = False

    @classmethod
    def from_conf_state(cls, cs: ConfState) -> QuorumConfig:
        return cls(
            voters=tuple(sorted(cs.voters)),
            voters_outgoing=tuple(sorted(cs.voters_outgoing)),
            learners=frozenset(cs.learners),
            learners_next=frozenset(cs.learners_next),
            auto_leave=cs.auto_leave,
        )

    def to_conf_state(self) -> ConfState:
        return ConfState(
            voters=frozenset(self.voters),
            learners=self.learners,
            voters_outgoing=frozenset(self.voters_outgoing),
            learners_next=self.learners_next,
            auto_leave=self.auto_leave,
        )

    @property
    def joint(self) -> bool:
        return bool(self.voters_outgoing)

    def all_voters(self) -> frozenset[int]:
        return frozenset(self.voters) | frozenset(self.voters_outgoing)

    def members(self) -> frozenset[int]:
        return self.all_voters() | self.learners | self.learners_next

    def is_voter(self, node_id: int) -> bool:
        return node_id in self.voters or node_id in self.voters_outgoing

    def commit_index(self, match: dict[int, int]) -> int:
        if self.voters_outgoing:
            return quorum.joint_commit_index(self.voters, self.voters_outgoing, match)
        return quorum.commit_index(self.voters, match)

    def vote_result(self, votes: dict[int, bool]) -> int:
        if self.voters_outgoing:
            return quorum.joint_vote_result(self.voters, self.voters_outgoing, votes)
        return quorum.vote_result(self.voters, votes)


class ProgressTracker:
    """The config in force, a Progress per member, and the votes of the current election."""

    __slots__ = ("config", "progress", "votes", "max_inflight", "max_inflight_bytes")

    def __init__(self, config: QuorumConfig, max_inflight: int, max_inflight_bytes: int = 0):
        self.config = config
        self.max_inflight = max_inflight
        self.max_inflight_bytes = max_inflight_bytes
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.set_config(config, next_index=1)

    def set_config(self, config: QuorumConfig, next_index: int) -> None:
        """Swap in a config: keep the Progress of staying members, add fresh ones, drop gone."""
        self.config = config
        members = config.members()
        for node_id in list(self.progress):
            if node_id not in members:
                del self.progress[node_id]
        for node_id in members:
            pr = self.progress.get(node_id)
            if pr is None:
                pr = Progress(0, next_index, Inflights(self.max_inflight, self.max_inflight_bytes))
                self.progress[node_id] = pr
            pr.set_learner(not config.is_voter(node_id))

    def reset_all(self, last_index: int, self_id: int) -> None:
        """A new leader: every peer is probed from our last index; we hold our own log."""
        for node_id, pr in self.progress.items():
            pr.reset(last_index + 1, node_id == self_id)

    def committed(self) -> int:
        """Largest index a quorum holds (joint configs need both halves)."""
        match = {i: pr.match_index for i, pr in self.progress.items()}
        return self.config.commit_index(match)

    def record_vote(self, node_id: int, granted: bool) -> None:
        self.votes.setdefault(node_id, granted)

    def tally(self) -> int:
        return self.config.vote_result(self.votes)

    def reset_recent_active(self, self_id: int) -> None:
        """A check-quorum round ends: every peer must be heard from again."""
        for node_id, pr in self.progress.items():
            pr.set_recent_active(node_id == self_id)

    def quorum_active(self, self_id: int) -> bool:
        """Did a quorum contact us since the last check? (We count as active.)"""
        votes = {i: (pr.recent_active or i == self_id) for i, pr in self.progress.items()}
        return self.config.vote_result(votes) == quorum.VOTE_WON
