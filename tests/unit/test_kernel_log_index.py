"""The compiled LogIndex agrees with its reference on every operation sequence; edge cases."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dengine._core import load
from dengine.errors import Compacted, DengineError, IndexOutOfRange

REF = load("log_index", compiled=False)
FAST = load("log_index", compiled=True)
MAX_U64 = (1 << 64) - 1


@pytest.fixture
def impl(flavour):
    return load("log_index", compiled=flavour == "compiled")


def outcome(fn, *args):
    """("ok", value) or ("err", type, fields): comparable across the two implementations."""
    try:
        return ("ok", fn(*args))
    except DengineError as e:
        return ("err", type(e), vars(e))
    except (ValueError, OverflowError, TypeError) as e:
        return ("err", type(e))


def state(log):
    return (
        log.snapshot_index,
        log.snapshot_term,
        log.first_index,
        log.last_index,
        log.last_term,
        len(log),
        log.terms(log.first_index, log.last_index + 1) if log.last_index < MAX_U64 else None,
    )


def near(data, log, spread=3):
    """An index around the interesting points of ``log``: snapshot, first, last, beyond."""
    lo = max(0, log.snapshot_index - spread)
    hi = min(MAX_U64, log.last_index + spread)
    return data.draw(st.integers(lo, hi))


def a_term(data, log):
    """A term near the last one; sometimes below it (an invalid append)."""
    base = log.last_term
    return data.draw(st.integers(max(0, base - 1), min(MAX_U64, base + 3)))


def draw_op(data, log):
    kind = data.draw(
        st.sampled_from(
            [
                "append", "append", "extend", "truncate", "compact", "reset",
                "maybe_term", "term", "match_term", "find_conflict", "last_le",
                "first_of", "terms",
            ]
        )
    )
    if kind == "append":
        return "append", (a_term(data, log),)
    if kind == "extend":
        t = log.last_term
        steps = data.draw(st.lists(st.integers(0, 2), max_size=12))
        terms = []
        for s in steps:
            t = min(MAX_U64, t + s)
            terms.append(t)
        if terms and data.draw(st.booleans()) and data.draw(st.booleans()):
            terms[data.draw(st.integers(0, len(terms) - 1))] = max(0, log.last_term - 1)
        return "extend", (terms,)
    if kind in ("truncate", "compact", "maybe_term", "term"):
        name = {"truncate": "truncate_after"}.get(kind, kind)
        return name, (near(data, log),)
    if kind == "reset":
        index = data.draw(
            st.one_of(st.integers(0, 50), st.integers(MAX_U64 - 3, MAX_U64))
        )
        return "reset", (index, data.draw(st.integers(0, 8)))
    if kind == "match_term":
        return "match_term", (near(data, log), a_term(data, log))
    if kind == "find_conflict":
        first = near(data, log)
        held = [log.maybe_term(i) for i in range(first, min(first + 8, log.last_index + 1))]
        terms = [t if t >= 0 else log.snapshot_term for t in held]
        terms += data.draw(st.lists(st.integers(0, log.last_term + 2), max_size=3))
        if terms and data.draw(st.booleans()):
            terms[data.draw(st.integers(0, len(terms) - 1))] = data.draw(st.integers(0, 9))
        return "find_conflict", (first, terms)
    if kind == "last_le":
        return "last_index_with_term_at_most", (
            data.draw(st.integers(0, log.last_term + 2)),
            near(data, log, spread=5),
        )
    if kind == "first_of":
        return "first_index_of_term", (data.draw(st.integers(0, log.last_term + 2)),)
    lo, hi = near(data, log), near(data, log)
    return "terms", (lo, hi)


@settings(max_examples=150, deadline=None)
@given(
    st.data(),
    st.integers(0, 30),
    st.integers(0, 5),
)
def test_compiled_matches_reference_on_random_operations(data, snap_index, snap_term):
    ref, fast = REF.LogIndex(snap_index, snap_term), FAST.LogIndex(snap_index, snap_term)
    for _ in range(data.draw(st.integers(1, 40))):
        name, args = draw_op(data, ref)
        want = outcome(getattr(ref, name), *args)
        got = outcome(getattr(fast, name), *args)
        assert got == want, (name, args)
        assert state(fast) == state(ref), (name, args)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32))
def test_long_logs_with_many_compactions_agree(seed):
    """Amortised compaction: the array slides and grows across many rounds."""
    rnd = random.Random(seed)
    ref, fast = REF.LogIndex(), FAST.LogIndex()
    term = 1
    for _ in range(rnd.randint(1, 12)):
        terms = []
        for _ in range(rnd.randint(0, 300)):
            term += rnd.random() < 0.2
            terms.append(term)
        assert fast.extend(terms) == ref.extend(terms)
        cut = rnd.randint(ref.snapshot_index, ref.last_index)
        fast.compact(cut)
        ref.compact(cut)
        if rnd.random() < 0.3:
            cut = rnd.randint(ref.snapshot_index, ref.last_index)
            fast.truncate_after(cut)
            ref.truncate_after(cut)
            term = ref.last_term
        for t in range(term + 2):
            assert fast.first_index_of_term(t) == ref.first_index_of_term(t)
            m = rnd.randint(0, ref.last_index + 2)
            assert fast.last_index_with_term_at_most(t, m) == ref.last_index_with_term_at_most(t, m)
        assert state(fast) == state(ref)


# -- edge cases, on both implementations -----------------------------------------------------
def test_empty_log(impl):
    log = impl.LogIndex()
    assert (log.first_index, log.last_index, log.last_term, len(log)) == (1, 0, 0, 0)
    assert log.maybe_term(0) == 0
    assert log.maybe_term(1) == impl.TERM_UNAVAILABLE
    assert log.match_term(0, 0)
    assert log.find_conflict(1, []) == 0
    assert log.find_conflict(1, [1]) == 1
    assert log.first_index_of_term(0) == 0
    assert log.last_index_with_term_at_most(5, 10) == 0
    assert log.terms(1, 1) == []
    with pytest.raises(IndexOutOfRange):
        log.term(1)


def test_compacted_and_future_indexes(impl):
    log = impl.LogIndex(10, 3)
    log.extend([3, 4, 4, 5])  # 11..14
    assert log.maybe_term(9) == impl.TERM_COMPACTED
    assert log.maybe_term(10) == 3  # the snapshot point keeps its term
    assert log.maybe_term(15) == impl.TERM_UNAVAILABLE
    with pytest.raises(Compacted) as e:
        log.term(9)
    assert (e.value.index, e.value.first_index) == (9, 11)
    with pytest.raises(IndexOutOfRange) as e2:
        log.term(15)
    assert (e2.value.index, e2.value.last_index) == (15, 14)
    with pytest.raises(Compacted):
        log.terms(10, 12)
    with pytest.raises(IndexOutOfRange):
        log.terms(11, 16)
    assert log.terms(11, 15) == [3, 4, 4, 5]
    assert log.terms(13, 12) == []


def test_snapshot_point_and_compaction(impl):
    log = impl.LogIndex(10, 3)
    log.extend([3, 4, 4, 5])
    log.compact(10)  # compacting at the snapshot point changes nothing
    assert (log.snapshot_index, log.snapshot_term, len(log)) == (10, 3, 4)
    log.compact(12)
    assert (log.snapshot_index, log.snapshot_term, log.first_index, len(log)) == (12, 4, 13, 2)
    assert log.find_conflict(5, [1, 1, 1, 1, 1, 1, 1, 1, 4, 5]) == 0  # compacted ones match
    assert log.find_conflict(13, [4, 6]) == 14
    log.truncate_after(12)
    assert (log.last_index, log.last_term) == (12, 4)
    with pytest.raises(Compacted):
        log.truncate_after(11)
    with pytest.raises(IndexOutOfRange):
        log.compact(13)
    log.compact(12)
    assert log.append(4) == 13


def test_searches_for_fast_backtracking(impl):
    log = impl.LogIndex(0, 0)
    log.extend([1, 1, 2, 2, 2, 5, 5, 7])  # 1..8
    assert [log.first_index_of_term(t) for t in range(9)] == [0, 1, 3, 0, 0, 6, 0, 8, 0]
    assert log.last_index_with_term_at_most(2, 100) == 5
    assert log.last_index_with_term_at_most(4, 100) == 5
    assert log.last_index_with_term_at_most(5, 6) == 6
    assert log.last_index_with_term_at_most(0, 8) == 0
    assert log.last_index_with_term_at_most(9, 3) == 3


def test_appends_must_not_lower_the_term(impl):
    log = impl.LogIndex(5, 4)
    with pytest.raises(ValueError):
        log.append(3)
    assert log.extend([4, 5]) == 7
    with pytest.raises(ValueError):
        log.extend([6, 2, 7])
    assert log.terms(6, 9) == [4, 5, 6]  # the good prefix of a failed extend stays


def test_u64_range_is_checked(impl):
    with pytest.raises(OverflowError):
        impl.LogIndex(-1, 0)
    with pytest.raises(OverflowError):
        impl.LogIndex(0, MAX_U64 + 1)
    log = impl.LogIndex()
    for call in (
        lambda: log.append(-1),
        lambda: log.maybe_term(-1),
        lambda: log.term(MAX_U64 + 1),
        lambda: log.match_term(1, -2),
        lambda: log.find_conflict(1, [1, -1]),
        lambda: log.last_index_with_term_at_most(-1, 1),
        lambda: log.first_index_of_term(MAX_U64 + 1),
        lambda: log.terms(-1, 2),
    ):
        with pytest.raises(OverflowError):
            call()
    log.reset(MAX_U64, 9)
    assert log.first_index == MAX_U64 + 1
    assert log.last_index == MAX_U64
    assert log.maybe_term(MAX_U64) == 9
    with pytest.raises(OverflowError):
        log.append(9)  # the next index does not fit in u64
    assert log.find_conflict(MAX_U64 - 1, [0, 9, 9]) == MAX_U64 + 1
    log.reset(MAX_U64 - 1, 9)
    assert log.append(MAX_U64) == MAX_U64


def test_reset_forgets_the_log(impl):
    log = impl.LogIndex()
    log.extend(range(1, 1000))
    log.reset(2000, 7)
    assert (log.first_index, log.last_index, log.last_term, len(log)) == (2001, 2000, 7, 0)
    assert log.append(7) == 2001
