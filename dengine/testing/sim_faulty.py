"""Deliberately broken cores, to show that the simulator catches what it claims to catch.

Each breaks one rule of Raft in a way that looks harmless in a quiet cluster and goes wrong only
under the right faults: a simulator that never flags them proves nothing.
"""

from __future__ import annotations

from dengine.raft.confchange import ConfChange
from dengine.raft.core import RaftCore
from dengine.raft.messages import Message, MessageType

__all__ = ["CommitByCountingCore", "DoubleVoteCore", "NoJointCore", "FAULTY_CORES"]


class CommitByCountingCore(RaftCore):
    """Commits an entry of an earlier term once a quorum holds it: Raft §5.4.2 / figure 8
    says it may still be overwritten."""

    def may_commit_by_counting(self, index: int) -> bool:
        return True


class DoubleVoteCore(RaftCore):
    """Forgets its vote when another candidate of the same term asks: two votes in one term,
    so two leaders in one term (Raft §5.2)."""

    def step(self, msg: Message) -> None:
        if msg.type == MessageType.VOTE and msg.term == self.term and self.vote != msg.from_:
            self.vote = 0
            self.leader_id = 0
        super().step(msg)


class NoJointCore(RaftCore):
    """Applies a change of several voters as simple changes appended together, skipping the
    joint config (and the one-pending rule): C_old and C_new are then in force one right after
    the other and may have disjoint majorities (thesis §4.3)."""

    def propose_conf_change(self, change: ConfChange) -> int:
        if len(change.changes) < 2:
            return super().propose_conf_change(change)
        index = 0
        for single in change.changes:
            self.membership.mark_pending(self.log.committed)
            index = super().propose_conf_change(ConfChange((single,), context=change.context))
        return index


FAULTY_CORES = {
    "commit_by_counting": CommitByCountingCore,
    "double_vote": DoubleVoteCore,
    "no_joint": NoJointCore,
}
