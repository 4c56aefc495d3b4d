"""Messages between Raft cores, and the local messages a core sends itself.

A :class:`Message` is a frozen slotted dataclass: the core builds them, the shell hands them to
the transport, which converts them to ``dengine.v1.RaftMessage`` at the edge (the numbers of
:class:`MessageType` are the proto's ``RaftMessageType`` numbers, so the conversion is a cast).
Local types (``HUP``, ``BEAT``, ``CHECK_QUORUM``, and ``SNAPSHOT_STATUS``, which keeps its
proto number but is never sent) never leave a node and are refused off the wire; a timer tick
becomes one of them and goes through the same ``step`` as a peer's message, as in etcd-io/raft.

Fields a message type does not use stay at their defaults. What each type uses:

=================  ======================================================================
APPEND             term, log_term/index (the entry before ``entries``), entries, commit
APPEND_RESP        term, index (last index now held, or the rejected probe index),
                   reject, reject_hint (follower's last index), conflict_term /
                   conflict_index (fast backtracking: the follower's largest index at or
                   below the probe whose term is <= log_term, and that term)
VOTE, PRE_VOTE     term (the term campaigned for), log_term/index (candidate's last entry),
                   context == CAMPAIGN_TRANSFER when a leadership transfer forces it
*_VOTE_RESP        term, reject
HEARTBEAT          term, commit, index (the leader's heartbeat round number)
HEARTBEAT_RESP     term, index (the round echoed back)
TIMEOUT_NOW        term: the target campaigns at once, bypassing pre-vote
READ_INDEX         context (the request id); follower to leader
READ_INDEX_RESP    context, index (the read index), reject (no leader could serve it)
TRANSFER_LEADER    index (the transfer target); forwarded by a follower to the leader
SNAPSHOT           term, snapshot (metadata; the shell streams the data)
SNAPSHOT_STATUS    never sent: the shell reports a stream's end by ``report_snapshot``
=================  ======================================================================

The core validates every message a peer sends before acting on it (``RaftCore.step``); the
dataclass itself stays a plain value so that building one on the hot path costs little.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from dengine.raft.types import Entry, SnapshotMeta

#: ``Message.context`` of a VOTE / PRE_VOTE sent because of a leadership transfer: voters
#: grant it even while they hear from a live leader (leader stickiness does not apply).
CAMPAIGN_TRANSFER = b"transfer"


class MessageType(IntEnum):
    """Kinds of message; wire types use the numbers of ``RaftMessageType`` in raft.proto."""

    APPEND = 1
    APPEND_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    PRE_VOTE = 5
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    SNAPSHOT_STATUS = 10
    TIMEOUT_NOW = 11
    READ_INDEX = 12
    READ_INDEX_RESP = 13
    TRANSFER_LEADER = 14
    # Local: never sent on the wire.
    HUP = 100
    BEAT = 101
    CHECK_QUORUM = 102


#: Types that never come from a peer: the transport refuses them, the core drops them.
LOCAL_TYPES = frozenset({MessageType.HUP, MessageType.BEAT, MessageType.CHECK_QUORUM,
                         MessageType.SNAPSHOT_STATUS})

#: Types a peer may send over the wire.
WIRE_TYPES = frozenset(MessageType) - LOCAL_TYPES


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft message from ``from_`` to ``to`` (node ids are positive ints).

    ``term`` is 0 only on local messages. Indexes and terms are unsigned 64-bit values on the
    wire; the core checks their range when it steps a message.
    """

    type: MessageType
    to: int
    from_: int
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    conflict_term: int = 0
    conflict_index: int = 0
    context: bytes = b""
    snapshot: SnapshotMeta | None = field(default=None)

    @property
    def entries_bytes(self) -> int:
        """Payload bytes carried (what the per-message byte budget counts)."""
        return sum(len(e.data) for e in self.entries)
