"""Plain values shared by the Raft core and the layers under and over it.

These are what storage persists and what the core hands the shell: a log entry, the hard state
(term, vote, commit), the membership config, and snapshot metadata. Entries are named tuples so
that the ``codec`` kernel can encode and decode them without a per-entry conversion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple


class EntryKind(IntEnum):
    """What an entry's payload is: a state-machine command, or a membership change."""

    NORMAL = 0
    CONF_CHANGE = 1


class Entry(NamedTuple):
    """One log entry. An empty NORMAL entry is the leader's no-op at the start of its term."""

    term: int
    index: int  # type: ignore[assignment]  # the field shadows tuple.index, by design
    kind: int = EntryKind.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before a node answers a vote or an append (Raft figure 2)."""

    term: int = 0
    vote: int = 0
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ConfState:
    """The membership: voters and learners; ``voters_outgoing`` is non-empty while joint.

    ``learners_next`` holds voters of the outgoing config that become learners when the joint
    config is left (etcd's LearnersNext). ``auto_leave`` asks the leader to leave the joint
    config by itself once the entering entry commits.
    """

    voters: frozenset[int] = field(default_factory=frozenset)
    learners: frozenset[int] = field(default_factory=frozenset)
    voters_outgoing: frozenset[int] = field(default_factory=frozenset)
    learners_next: frozenset[int] = field(default_factory=frozenset)
    auto_leave: bool = False

    @property
    def joint(self) -> bool:
        return bool(self.voters_outgoing)


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot stands in the log, and the membership at that point."""

    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)
