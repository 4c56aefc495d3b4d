"""The compiled quorum kernel agrees with its reference (a different algorithm); edge cases."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dengine._core import load

REF = load("quorum", compiled=False)
FAST = load("quorum", compiled=True)
MAX_U64 = (1 << 64) - 1


@pytest.fixture
def impl(flavour):
    return load("quorum", compiled=flavour == "compiled")


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except (ValueError, OverflowError, TypeError) as e:
        return ("err", type(e))


ids = st.integers(1, 12)
# Configs: usually small and distinct (3, 5, 7, 9 voters), sometimes large (heap path).
configs = st.one_of(
    st.lists(ids, unique=True, max_size=9),
    st.lists(st.integers(1, 60), unique=True, min_size=17, max_size=40),
).flatmap(lambda v: st.sampled_from([tuple(v), list(v), frozenset(v)]))
match_values = st.one_of(st.integers(0, 20), st.integers(MAX_U64 - 5, MAX_U64))
# Match dicts mostly cover the small configs' ids (1..12), sometimes the large ones' too.
matches = st.one_of(
    st.dictionaries(ids, match_values, min_size=3, max_size=12),
    st.dictionaries(st.integers(1, 60), match_values, max_size=60),
)
# Votes: granted/rejected, plus values that are not bools (ignored, as the reference's `is`).
vote_values = st.sampled_from([True, False, True, False, None, 1, 0])
votes = st.one_of(
    st.dictionaries(ids, vote_values, max_size=12),
    st.dictionaries(st.integers(1, 60), vote_values, max_size=60),
)


def as_mapping(d, proxy):
    return MappingProxyType(d) if proxy else d


@settings(max_examples=150, deadline=None)
@given(configs, matches, st.booleans())
def test_commit_index_agrees(voters, match, proxy):
    m = as_mapping(match, proxy)
    assert FAST.commit_index(voters, m) == REF.commit_index(voters, m)


@settings(max_examples=150, deadline=None)
@given(configs, configs, matches, st.booleans())
def test_joint_commit_index_agrees(incoming, outgoing, match, proxy):
    m = as_mapping(match, proxy)
    want = REF.joint_commit_index(incoming, outgoing, m)
    assert FAST.joint_commit_index(incoming, outgoing, m) == want


@settings(max_examples=150, deadline=None)
@given(st.lists(ids, unique=True, max_size=9), st.lists(ids, unique=True, max_size=9), matches)
def test_joint_configs_with_overlapping_voters(incoming, outgoing, match):
    """Shared voters count in both halves; the result is the smaller of the two indexes."""
    outgoing = outgoing + incoming[: len(incoming) // 2]  # force an overlap
    want = REF.joint_commit_index(incoming, outgoing, match)
    assert FAST.joint_commit_index(incoming, outgoing, match) == want
    assert want == min(REF.commit_index(incoming, match), REF.commit_index(outgoing, match))


@settings(max_examples=150, deadline=None)
@given(configs, configs, votes, st.booleans())
def test_vote_results_agree(incoming, outgoing, vote, proxy):
    v = as_mapping(vote, proxy)
    assert FAST.vote_result(incoming, v) == REF.vote_result(incoming, v)
    assert FAST.joint_vote_result(incoming, outgoing, v) == REF.joint_vote_result(
        incoming, outgoing, v
    )


@settings(max_examples=100, deadline=None)
@given(configs, st.dictionaries(st.integers(1, 60), st.integers(-3, MAX_U64 + 3), max_size=30))
def test_out_of_range_match_indexes_raise_alike(voters, match):
    assert outcome(FAST.commit_index, voters, match) == outcome(REF.commit_index, voters, match)


# -- edge cases, on both implementations -----------------------------------------------------
@pytest.mark.parametrize(
    "voters, match, want",
    [
        ((), {}, MAX_U64),  # an empty config places no constraint
        ((1,), {}, 0),  # a voter missing from match holds 0
        ((1,), {1: 7}, 7),
        ((1, 2), {1: 7, 2: 3}, 3),  # two voters: both are needed
        ((1, 2, 3), {1: 7, 2: 3, 3: 5}, 5),
        ((1, 2, 3, 4), {1: 9, 2: 9, 3: 1, 4: 1}, 1),
        ((1, 2, 3, 4, 5), {1: 10, 2: 8, 3: 8, 4: 2, 5: 1}, 8),
        ((1, 2, 3, 4, 5), {1: MAX_U64, 2: MAX_U64, 3: MAX_U64}, MAX_U64),
        (tuple(range(1, 21)), {i: i for i in range(1, 21)}, 10),  # heap path
    ],
)
def test_commit_index_table(impl, voters, match, want):
    assert impl.commit_index(voters, match) == want


@pytest.mark.parametrize(
    "incoming, outgoing, match, want",
    [
        ((1, 2, 3), (), {1: 5, 2: 5, 3: 1}, 5),  # empty outgoing: same as simple
        ((), (1, 2, 3), {1: 5, 2: 5, 3: 1}, 5),
        ((1, 2, 3), (3, 4, 5), {1: 9, 2: 9, 3: 4, 4: 4, 5: 2}, 4),  # voter 3 in both
        ((1, 2, 3), (1, 2, 3), {1: 9, 2: 3, 3: 1}, 3),  # identical halves
        ((1, 2, 3), (4, 5), {1: 9, 2: 9, 3: 9, 4: 9}, 0),  # outgoing 5 holds nothing
    ],
)
def test_joint_commit_index_table(impl, incoming, outgoing, match, want):
    assert impl.joint_commit_index(incoming, outgoing, match) == want


@pytest.mark.parametrize(
    "voters, votes, want",
    [
        ((), {}, "won"),
        ((1,), {}, "pending"),
        ((1,), {1: True}, "won"),
        ((1,), {1: False}, "lost"),
        ((1, 2, 3), {1: True, 9: True}, "pending"),  # votes from outside are ignored
        ((1, 2, 3), {1: True, 2: True}, "won"),
        ((1, 2, 3), {1: False, 2: False}, "lost"),
        ((1, 2, 3, 4), {1: True, 2: True, 3: False}, "pending"),
        ((1, 2, 3, 4), {1: False, 2: False}, "lost"),
        ((1, 2, 3), {1: 1, 2: 1, 3: 1}, "pending"),  # only True counts as granted
    ],
)
def test_vote_result_table(impl, voters, votes, want):
    codes = {"won": impl.VOTE_WON, "lost": impl.VOTE_LOST, "pending": impl.VOTE_PENDING}
    assert impl.vote_result(voters, votes) == codes[want]


@pytest.mark.parametrize(
    "incoming, outgoing, votes, want",
    [
        ((1, 2, 3), (), {1: True, 2: True}, "won"),
        ((1, 2, 3), (3, 4, 5), {1: True, 2: True}, "pending"),
        ((1, 2, 3), (3, 4, 5), {1: True, 3: True, 4: True}, "won"),  # 3 counts twice
        ((1, 2, 3), (3, 4, 5), {1: True, 2: True, 4: False, 5: False}, "lost"),
        ((1, 2, 3), (3, 4, 5), {1: False, 2: False, 4: True, 5: True}, "lost"),
    ],
)
def test_joint_vote_result_table(impl, incoming, outgoing, votes, want):
    codes = {"won": impl.VOTE_WON, "lost": impl.VOTE_LOST, "pending": impl.VOTE_PENDING}
    assert impl.joint_vote_result(incoming, outgoing, votes) == codes[want]


def test_constants_match(impl):
    assert (impl.VOTE_PENDING, impl.VOTE_WON, impl.VOTE_LOST, impl.MAX_U64) == (
        REF.VOTE_PENDING,
        REF.VOTE_WON,
        REF.VOTE_LOST,
        MAX_U64,
    )


def test_match_index_out_of_range_raises(impl):
    with pytest.raises(OverflowError):
        impl.commit_index((1, 2, 3), {1: -1})
    with pytest.raises(OverflowError):
        impl.commit_index((1, 2, 3), {2: MAX_U64 + 1})
