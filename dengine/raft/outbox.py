"""The core's outbox: one ``send`` that decides, by message type, when a message may leave.

The persistence contract (``core`` module docstring) in one place: a message whose type is in
:data:`AFTER_PERSIST` promises something about this node's durable state -- a vote request or
answer promises the term and vote survive a crash (Raft figure 2), an append answer promises the
entries it acknowledges do, since the leader counts it toward commit -- so it goes out in the
Ready's ``persisted_messages``, after the fsync. Every other type leaves at once, while the
fsync runs: a leader's appends and heartbeats, pre-votes (they change nothing durable), reads,
transfers -- except a HEARTBEAT_RESP carrying a term not yet durable here (:data:`AFTER_TERM`):
the leader counts it toward its lease, which promises that we refuse votes for an election
timeout; were we to crash before the term is durable, we would restart at an older term (at
term 0 no restart guard applies) and vote at once, inside that lease. Handlers never choose; they call ``send`` (or the core's ``send_to`` / ``reply``,
which fill in the sender and term).

Messages the core ignored are kept here too, with the reason, for ``Ready.dropped``.
"""

from __future__ import annotations

from dengine.raft.messages import Message, MessageType
from dengine.raft.ready import Dropped

__all__ = ["AFTER_PERSIST", "AFTER_TERM", "Outbox"]

MT = MessageType

#: Types that may leave only once the Ready's hard state and entries are durable.
AFTER_PERSIST = frozenset({MT.VOTE, MT.VOTE_RESP, MT.APPEND_RESP})

#: Types that wait for the fsync only while the term they carry is not yet durable.
AFTER_TERM = frozenset({MT.HEARTBEAT_RESP})


class Outbox:
    """Messages and drops waiting for the next Ready. Invariant: every message in ``after``
    has a type in AFTER_PERSIST and none in ``now`` has."""

    __slots__ = ("now", "after", "dropped", "durable_term")

    def __init__(self, durable_term: int = 0) -> None:
        self.now: list[Message] = []
        self.after: list[Message] = []
        self.dropped: list[Dropped] = []
        #: The latest term the shell reported durable (``term_durable``).
        self.durable_term = durable_term

    def send(self, msg: Message) -> None:
        """Queue ``msg`` for the next Ready, after the fsync when its type requires it."""
        t = msg.type
        wait = t in AFTER_PERSIST or (t in AFTER_TERM and msg.term > self.durable_term)
        (self.after if wait else self.now).append(msg)

    def term_durable(self, term: int) -> None:
        """A hard state with ``term`` is durable (terms never go back)."""
        if term > self.durable_term:
            self.durable_term = term

    def drop(self, msg: Message, reason: str) -> None:
        """Record that ``msg`` was ignored (``Ready.dropped``)."""
        self.dropped.append(Dropped(msg, reason))

    def __bool__(self) -> bool:
        return bool(self.now or self.after or self.dropped)

    def take(self) -> tuple[list[Message], list[Message], list[Dropped]]:
        """Everything queued (at once, after the fsync, dropped); the outbox is empty after."""
        out = self.now, self.after, self.dropped
        self.now, self.after, self.dropped = [], [], []
        return out
