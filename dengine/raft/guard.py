"""The first check every peer message passes, before any Raft rule sees it.

The core trusts nothing it receives: the transport authenticates peers, but a bug, a stolen
key or a forged message must still not wedge the core. :func:`screen` runs at the top of
``RaftCore.step`` and drops (with a reason, listed in ``Ready.dropped``) what would hurt:

* Numbers no healthy cluster reaches. An index, commit or heartbeat round at or above
  :data:`SANE_BOUND` (2^62) is refused. A term there is refused too, unless it is at most one
  above our own: a term is adopted one election at a time, so a node never moves past the
  bound on a single message, and a cluster that got near it (it would need 2^62 elections)
  can still elect. Nothing is ever adopted at or above :data:`HARD_BOUND` (2^63), so the
  ``term + 1`` of a campaign and every index sum stay far inside 64 bits.
* TIMEOUT_NOW from anyone but the leader of our current term: it makes us campaign at once,
  bypassing pre-vote, so a stranger's or a stale leader's would force elections at will.
* A transfer-context vote outside the term a transfer starts (our term + 1): such a vote
  bypasses leader stickiness. One for another term keeps its other fields and loses the
  context, so the normal rules (stickiness included) decide it.

Local messages (HUP, BEAT, CHECK_QUORUM from the node itself) pass untouched.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from dengine.raft.messages import CAMPAIGN_TRANSFER, LOCAL_TYPES, Message, MessageType

if TYPE_CHECKING:
    from dengine.raft.core import RaftCore

__all__ = ["SANE_BOUND", "HARD_BOUND", "screen", "out_of_bounds"]

MT = MessageType

#: Indexes, commits and (bar one step) terms must stay below this: 2^62.
SANE_BOUND = 1 << 62
#: Nothing at or above this (2^63) is ever taken, not even one term above ours.
HARD_BOUND = 1 << 63


def out_of_bounds(m: Message, term_limit: int) -> str | None:
    """Which numeric field of ``m`` is too large (terms against ``term_limit``), or None.

    O(1): of the entries only the first and last are looked at; the step validation that
    follows refuses entries whose terms are out of order or above the message's term."""
    if (
        max(m.term, m.log_term, m.conflict_term) < term_limit
        and max(m.index, m.commit, m.reject_hint, m.conflict_index) < SANE_BOUND
        and not m.entries
        and m.snapshot is None
    ):
        return None  # the common case, in one comparison per group
    if m.term >= term_limit:
        return f"term {m.term} above the sane bound"
    for name in ("log_term", "conflict_term"):
        value = getattr(m, name)
        if value >= term_limit:
            return f"{name} {value} above the sane bound"
    for name in ("index", "commit", "reject_hint", "conflict_index"):
        value = getattr(m, name)
        if value >= SANE_BOUND:
            return f"{name} {value} above the sane bound 2^62"
    if m.entries:
        last = m.entries[-1]
        if last.index >= SANE_BOUND or max(m.entries[0].term, last.term) >= term_limit:
            return f"entry up to index {last.index} above the sane bound"
    snap = m.snapshot
    if snap is not None and (snap.index >= SANE_BOUND or snap.term >= term_limit):
        return f"snapshot at index {snap.index}, term {snap.term} above the sane bound"
    return None


def screen(core: RaftCore, m: Message) -> Message | None:
    """The message to step (possibly without its transfer context), or None when dropped."""
    if m.type in LOCAL_TYPES:
        return m
    # One term past ours is always allowed (below 2^63): a cluster near the bound still elects.
    term_limit = min(max(SANE_BOUND, core.term + 2), HARD_BOUND)
    reason = out_of_bounds(m, term_limit)
    if reason is not None:
        core.out.drop(m, reason)
        return None
    if m.type == MT.TIMEOUT_NOW and (
        # (A leader is left to the role table, which drops it as unexpected for a leader.)
        m.term != core.term or not core.leader_id or core.leader_id not in (m.from_, core.id)
    ):
        core.out.drop(m, f"TIMEOUT_NOW from node {m.from_} in term {m.term}, not from the leader "
                      f"of our term {core.term} (node {core.leader_id or 'unknown'})")
        return None
    if m.context == CAMPAIGN_TRANSFER and m.type in (MT.VOTE, MT.PRE_VOTE) and (
        m.type != MT.VOTE or m.term != core.term + 1
    ):
        return replace(m, context=b"")
    return m
