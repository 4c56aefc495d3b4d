"""The core's own configuration, counted in ticks (the node converts milliseconds to ticks)."""

from __future__ import annotations

from dataclasses import dataclass

from dengine.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Timers in ticks, flow-control limits, and the optional protocol extensions.

    The election timeout of each term is drawn from ``[election_ticks, 2 * election_ticks)``
    with the injected generator. ``lease_ticks`` must stay below ``election_ticks``: a follower
    that heard from the leader refuses votes for ``election_ticks`` (leader stickiness), which is
    what makes a lease of that length safe, so the lease keeps a margin for clock drift.

    The margin, stated: clocks may run up to ``max_clock_drift`` (a fraction: 0.05 is 5%)
    fast or slow. A follower's stickiness lasts at least ``election_ticks - 1`` of its ticks
    after it heard the leader (its next tick may come at once); the leader's lease ends at
    most ``lease_ticks`` of its own ticks after it sent the round. So the lease is safe when
    ``lease_ticks * (1 + drift) <= (election_ticks - 1) * (1 - drift)``, which
    ``__post_init__`` enforces (``lease_safe_max``).
    """

    election_ticks: int = 10
    heartbeat_ticks: int = 1
    #: Append messages in flight to one follower before the leader waits for acks.
    max_inflight_msgs: int = 256
    #: Payload bytes per append message (one entry larger than this still goes alone).
    max_msg_bytes: int = 1 << 20
    #: Entries per append message.
    max_msg_entries: int = 1024
    #: Committed entries handed out in one Ready (payload bytes; at least one entry).
    max_committed_bytes_per_ready: int = 64 << 20
    pre_vote: bool = True
    check_quorum: bool = True
    #: Ticks a leader may serve lease reads after a quorum confirmed it; 0 disables lease reads.
    lease_ticks: int = 8
    #: Entries kept before a snapshot point when compacting, for followers slightly behind.
    compact_keep_entries: int = 256
    #: The largest rate difference of any node's clock from true time (a fraction, < 0.5).
    max_clock_drift: float = 0.05
    #: A commit index no append carried yet goes out at the leader's next tick rather than at
    #: once: a sequential writer's next append usually carries it first, which saves one
    #: append (and its ack) per follower per write. Followers learn the commit up to a tick
    #: later (a ReadIndex round's heartbeats carry it). Safety does not depend on it.
    commit_on_tick: bool = False

    def __post_init__(self) -> None:
        if self.heartbeat_ticks < 1:
            raise ConfigError("raft.heartbeat_ticks", self.heartbeat_ticks, "an integer >= 1")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ConfigError(
                "raft.election_ticks",
                self.election_ticks,
                f"an integer greater than heartbeat_ticks ({self.heartbeat_ticks})",
            )
        if self.compact_keep_entries < 0:
            raise ConfigError("raft.compact_keep_entries", self.compact_keep_entries,
                              "an integer >= 0")
        for key in ("max_inflight_msgs", "max_msg_bytes", "max_msg_entries",
                    "max_committed_bytes_per_ready"):
            value = getattr(self, key)
            if value < 1:
                raise ConfigError(f"raft.{key}", value, "an integer >= 1")
        if not 0 <= self.max_clock_drift < 0.5:
            raise ConfigError("raft.max_clock_drift", self.max_clock_drift,
                              "a fraction in [0, 0.5): how far a clock's rate may be off")
        if self.lease_ticks > lease_safe_max(self.election_ticks, self.max_clock_drift):
            raise ConfigError(
                "raft.lease_ticks",
                self.lease_ticks,
                f"at most {lease_safe_max(self.election_ticks, self.max_clock_drift)}: "
                f"lease_ticks * (1 + max_clock_drift) <= (election_ticks - 1) * "
                f"(1 - max_clock_drift), with election_ticks {self.election_ticks} and "
                f"max_clock_drift {self.max_clock_drift}",
            )
        if not 0 <= self.lease_ticks < self.election_ticks:
            raise ConfigError(
                "raft.lease_ticks",
                self.lease_ticks,
                f"0 (off) up to election_ticks - 1 ({self.election_ticks - 1})",
            )


def lease_safe_max(election_ticks: int, max_clock_drift: float) -> int:
    """The longest lease (ticks) that stays inside every follower's stickiness when clocks
    drift by up to ``max_clock_drift`` (see ``RaftConfig``)."""
    bound = (election_ticks - 1) * (1 - max_clock_drift) / (1 + max_clock_drift)
    return max(0, int(bound + 1e-9))
