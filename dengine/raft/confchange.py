"""Membership changes: what a caller proposes, how it is encoded, and the config it yields.

A :class:`ConfChange` lists single changes applied together. One change to voters may take the
simple path; several enter a joint config (Raft thesis §4.3) that is left automatically once the
entering entry commits (``transition``), as etcd's ConfChangeV2 does. An empty change while
joint asks to leave the joint config.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from dengine.errors import ConfChangeError, DecodeError
from dengine.raft.tracker import QuorumConfig

__all__ = [
    "ConfChange",
    "ConfChangeSingle",
    "ConfChangeTransition",
    "ConfChangeType",
    "apply_conf_change",
    "decode_conf_change",
    "encode_conf_change",
    "leave_joint",
]


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


# -- encoding (the entry payload of a CONF_CHANGE entry) --------------------------------------
_VERSION = 1


def encode_conf_change(cc: ConfChange) -> bytes:
    """Compact, versioned bytes for a CONF_CHANGE entry's ``data``."""
    out = bytearray((_VERSION, int(cc.transition), len(cc.changes)))
    if len(cc.changes) > 255:
        raise ConfChangeError("at most 255 changes fit in one membership change")
    for ch in cc.changes:
        if not 0 < ch.node_id < 1 << 64:
            raise ConfChangeError(f"node id {ch.node_id} is not a positive 64-bit integer")
        out.append(int(ch.type))
        out += ch.node_id.to_bytes(8, "big")
    out += cc.context
    return bytes(out)


def decode_conf_change(data: bytes) -> ConfChange:
    """Inverse of :func:`encode_conf_change`; raises DecodeError on bad bytes."""
    if len(data) < 3 or data[0] != _VERSION:
        raise DecodeError("conf change", "bad header or version")
    try:
        transition = ConfChangeTransition(data[1])
        count = data[2]
        pos = 3
        changes = []
        for _ in range(count):
            if pos + 9 > len(data):
                raise DecodeError("conf change", "truncated", pos)
            changes.append(ConfChangeSingle(ConfChangeType(data[pos]),
                                            int.from_bytes(data[pos + 1 : pos + 9], "big")))
            pos += 9
    except ValueError as e:
        raise DecodeError("conf change", str(e)) from e
    return ConfChange(tuple(changes), transition, bytes(data[pos:]))


# -- applying a change to a config (never mutates: returns a new one) ------------------------
def apply_conf_change(cfg: QuorumConfig, cc: ConfChange) -> QuorumConfig:
    """The config that results from ``cc``; raises ConfChangeError when it is not allowed.

    Follows etcd's confchange package: a change of at most one voter with AUTO transition takes
    the simple path; anything else enters a joint config (thesis §4.3) whose outgoing half is
    the current voters; an empty change leaves the joint config.
    """
    if cc.leaves_joint:
        return leave_joint(cfg)
    if cfg.joint:
        raise ConfChangeError("the config is joint; leave it before the next change")
    voters = set(cfg.voters)
    learners = set(cfg.learners)
    learners_next: set[int] = set()
    joint = cc.transition != ConfChangeTransition.AUTO or len(cc.changes) > 1
    for ch in cc.changes:
        node = ch.node_id
        if ch.type == ConfChangeType.ADD_VOTER:
            if node in voters:
                raise ConfChangeError(f"node {node} is already a voter")
            learners.discard(node)
            voters.add(node)
        elif ch.type == ConfChangeType.ADD_LEARNER:
            if node in learners:
                raise ConfChangeError(f"node {node} is already a learner")
            if node in voters:
                # Demotion: a voter of the outgoing config becomes a learner on leaving it.
                voters.discard(node)
                if joint:
                    learners_next.add(node)
                else:
                    learners.add(node)
            else:
                learners.add(node)
        elif ch.type == ConfChangeType.REMOVE_NODE:
            if node not in voters and node not in learners:
                raise ConfChangeError(f"node {node} is not a member")
            voters.discard(node)
            learners.discard(node)
    if not voters:
        raise ConfChangeError("removing every voter would leave the cluster without a quorum")
    old = set(cfg.voters)
    if not joint:
        if len(old ^ voters) > 1:
            raise ConfChangeError("more than one voter changes: use a joint change")
        return QuorumConfig(tuple(sorted(voters)), (), frozenset(learners))
    return QuorumConfig(
        voters=tuple(sorted(voters)),
        voters_outgoing=tuple(sorted(old)),
        learners=frozenset(learners),
        learners_next=frozenset(learners_next),
        auto_leave=cc.transition != ConfChangeTransition.JOINT_EXPLICIT,
    )


def leave_joint(cfg: QuorumConfig) -> QuorumConfig:
    """The incoming half alone, with the demoted voters now learners."""
    if not cfg.joint:
        raise ConfChangeError("the config is not joint; there is nothing to leave")
    return QuorumConfig(
        voters=cfg.voters,
        voters_outgoing=(),
        learners=cfg.learners | cfg.learners_next,
    )
