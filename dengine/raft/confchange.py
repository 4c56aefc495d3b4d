"""Membership changes: what a caller proposes (the rules and joint consensus are part 2).

A :class:`ConfChange` lists single changes applied together. One change to voters may take the
simple path; several enter a joint config (Raft thesis §4.3) that is left automatically once the
entering entry commits (``transition``), as etcd's ConfChangeV2 does. An empty change while
joint asks to leave the joint config.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["ConfChange", "ConfChangeSingle", "ConfChangeTransition", "ConfChangeType"]


class ConfChangeType(IntEnum):
    ADD_VOTER = 0
    REMOVE_NODE = 1
    ADD_LEARNER = 2


class ConfChangeTransition(IntEnum):
    #: Simple path for one voter change, joint (left automatically) otherwise.
    AUTO = 0
    #: Joint, left automatically once the entering entry commits.
    JOINT_IMPLICIT = 1
    #: Joint, left only when the caller proposes an empty change.
    JOINT_EXPLICIT = 2


@dataclass(frozen=True, slots=True)
class ConfChangeSingle:
    type: ConfChangeType
    node_id: int


@dataclass(frozen=True, slots=True)
class ConfChange:
    changes: tuple[ConfChangeSingle, ...] = ()
    transition: ConfChangeTransition = ConfChangeTransition.AUTO
    #: Opaque bytes carried to the shell with the committed entry (e.g. peer addresses).
    context: bytes = b""

    @property
    def leaves_joint(self) -> bool:
        """An empty change: leave the joint config."""
        return not self.changes
