"""Quorum arithmetic: the commit index of a config and the outcome of a vote; reference.

A config is a tuple of voter ids; a joint config is two (incoming, outgoing), and a decision
needs a majority of both (Raft thesis §4.3). An empty config (the outgoing half of a config that
is not joint) places no constraint: its commit index is MAX_U64 and it wins every vote, so a
joint computation over (voters, ()) equals the simple one.

Written the obvious way on purpose (count, for each candidate index, how many voters hold it),
so that the compiled kernel, which sorts, is checked against a different algorithm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

MAX_U64 = (1 << 64) - 1

VOTE_PENDING = 0
VOTE_WON = 1
VOTE_LOST = 2


def commit_index(voters: Sequence[int], match: Mapping[int, int]) -> int:
    """Largest index held by a majority of ``voters`` (a voter missing from ``match`` holds 0).

    MAX_U64 for an empty config.
    """
    if not voters:
        return MAX_U64
    need = len(voters) // 2 + 1
    best = 0
    for v in voters:
        candidate = match.get(v, 0)
        if not 0 <= candidate <= MAX_U64:
            raise OverflowError(f"match index={candidate} is outside the unsigned 64-bit range")
        holders = sum(1 for w in voters if match.get(w, 0) >= candidate)
        if holders >= need and candidate > best:
            best = candidate
    return best


def joint_commit_index(
    incoming: Sequence[int], outgoing: Sequence[int], match: Mapping[int, int]
) -> int:
    """Commit index of a joint config: the smaller of the two majorities' indexes."""
    return min(commit_index(incoming, match), commit_index(outgoing, match))


def vote_result(voters: Sequence[int], votes: Mapping[int, bool]) -> int:
    """VOTE_WON, VOTE_LOST or VOTE_PENDING for ``votes`` (id -> granted) over ``voters``.

    Votes from ids outside ``voters`` are ignored. An empty config wins.
    """
    if not voters:
        return VOTE_WON
    need = len(voters) // 2 + 1
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    if granted >= need:
        return VOTE_WON
    if len(voters) - rejected < need:
        return VOTE_LOST
    return VOTE_PENDING


def joint_vote_result(
    incoming: Sequence[int], outgoing: Sequence[int], votes: Mapping[int, bool]
) -> int:
    """Outcome over a joint config: won when both halves won, lost when either lost."""
    a = vote_result(incoming, votes)
    b = vote_result(outgoing, votes)
    if a == b:
        return a
    if VOTE_LOST in (a, b):
        return VOTE_LOST
    return VOTE_PENDING
