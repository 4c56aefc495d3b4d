"""Type stubs for the compiled quorum kernel (see dengine._core.ref.quorum for the spec)."""

from collections.abc import Mapping, Sequence

MAX_U64: int
VOTE_PENDING: int
VOTE_WON: int
VOTE_LOST: int

def commit_index(voters: Sequence[int], match: Mapping[int, int]) -> int: ...
def joint_commit_index(
    incoming: Sequence[int], outgoing: Sequence[int], match: Mapping[int, int]
) -> int: ...
def vote_result(voters: Sequence[int], votes: Mapping[int, bool]) -> int: ...
def joint_vote_result(
    incoming: Sequence[int], outgoing: Sequence[int], votes: Mapping[int, bool]
) -> int: ...
