"""What the core asks the shell to do: one :class:`Ready` at a time (see ``core``'s contract)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from dengine.raft.messages import Message
from dengine.raft.types import ConfState, Entry, HardState, SnapshotMeta


class Role(IntEnum):
    """The role a core plays. A LEARNER is a follower that never votes nor campaigns."""

    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3
    LEARNER = 4


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the shell may want to see (who leads, what we are); never persisted."""

    leader_id: int
    role: Role
    term: int


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read that is safe to serve once the state machine has applied ``index``.

    ``context`` is the id the caller gave ``read_index``. ``index == 0`` with ``failed`` set
    means the read could not be confirmed (no leader, leadership lost): retry it.
    """

    context: bytes
    index: int
    failed: bool = False


@dataclass(frozen=True, slots=True)
class Dropped:
    """A message the core ignored, and why (for the shell's logs and counters)."""

    message: Message
    reason: str


@dataclass(slots=True)
class Ready:
    """Everything the core wants done; :func:`dengine.raft.driver.drive_ready` does it in
    the contract's order (the ``core`` module docstring):

    1. ``snapshot``: a snapshot received from the leader; install it (state machine restored
       from the data that came with it, LogStore reset to its point) before anything else.
    2. ``conf_state`` is set when the membership in force changed (it takes effect when its
       entry is appended, before it commits): connect to new peers, drop old ones.
    3. ``messages``: send at once (a leader's appends and heartbeats, pre-votes, reads);
       they do not depend on this Ready's persistence.
    4. Persist ``entries`` (append; an entry at index i replaces any held suffix from i) and
       ``hard_state`` if not None. Meanwhile apply ``committed_entries`` in order (they are
       durable already), then serve ``read_states``.
    5. Once step 4 is durable, ``core.on_persisted(number)``, then send
       ``persisted_messages`` (votes, append acks).
    6. ``core.advance(ready)``; then ``compact_to``: the LogStore may drop entries up to this
       index (a snapshot covers them).

    ``dropped`` lists peer messages the core ignored, with reasons.
    """

    number: int
    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    persisted_messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    snapshot: SnapshotMeta | None = None
    dropped: list[Dropped] = field(default_factory=list)
    compact_to: int = 0
    conf_state: ConfState | None = None

    @property
    def must_persist(self) -> bool:
        """True when the shell has something to make durable before ``persisted_messages``."""
        return bool(self.entries) or self.hard_state is not None or self.snapshot is not None
