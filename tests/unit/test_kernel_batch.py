"""The compiled BatchBuffer agrees with its reference on every push/pop sequence; edge cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dengine._core import load

REF = load("batch", compiled=False)
FAST = load("batch", compiled=True)


@pytest.fixture
def impl(flavour):
    return load("batch", compiled=flavour == "compiled")


push = st.tuples(st.just("push"), st.one_of(st.integers(0, 4), st.integers(0, 40)))
ops = st.lists(
    st.one_of(
        push,
        push,
        push,
        st.tuples(st.just("pop"), st.just(0)),
        st.tuples(st.just("pop"), st.just(0)),
        st.tuples(st.just("ready"), st.just(0)),
        st.tuples(st.just("drain"), st.just(0)),
        st.tuples(st.just("bounds"), st.integers(1, 8)),
    ),
    min_size=4,
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.integers(1, 100), ops)
def test_compiled_matches_reference_on_random_sequences(max_entries, max_bytes, sequence):
    ref, fast = REF.BatchBuffer(max_entries, max_bytes), FAST.BatchBuffer(max_entries, max_bytes)
    pushed, popped = [], []
    for n, (op, arg) in enumerate(sequence):
        if op == "push":
            payload = bytes([n % 256]) * arg
            ref.push(payload, n)
            fast.push(payload, n)
            pushed.append(n)
        elif op == "pop":
            got = fast.pop_batch()
            assert got == ref.pop_batch()
            popped.extend(got[1])
        elif op == "ready":
            assert fast.ready() == ref.ready()
        elif op == "drain":
            got = fast.drain()
            assert got == ref.drain()
            popped.extend(got[1])
        else:  # the bounds are plain attributes and may be changed between batches
            ref.max_entries = fast.max_entries = arg
            ref.max_bytes = fast.max_bytes = arg * 16
        assert (len(fast), fast.pending_bytes) == (len(ref), ref.pending_bytes)
    rest = fast.drain()
    assert rest == ref.drain()
    assert popped + rest[1] == pushed  # nothing lost, nothing reordered


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 64), st.integers(1, 5000), st.integers(0, 3000))
def test_many_pushes_then_batches_agree(max_entries, max_bytes, count):
    """Enough proposals that the consumed prefix is dropped in bulk along the way."""
    ref, fast = REF.BatchBuffer(max_entries, max_bytes), FAST.BatchBuffer(max_entries, max_bytes)
    for i in range(count):
        payload = b"x" * (i % 97)
        ref.push(payload, i)
        fast.push(payload, i)
        if i % 7 == 0:
            assert fast.pop_batch() == ref.pop_batch()
    while len(ref):
        assert fast.pop_batch() == ref.pop_batch()
    assert (len(fast), fast.pending_bytes, fast.pop_batch()) == (0, 0, ([], []))


# -- edge cases, on both implementations -----------------------------------------------------
def test_bounds_must_be_positive(impl):
    with pytest.raises(ValueError):
        impl.BatchBuffer(0, 10)
    with pytest.raises(ValueError):
        impl.BatchBuffer(10, 0)


def test_payload_must_be_bytes(impl):
    buf = impl.BatchBuffer(4, 100)
    for bad in (bytearray(b"x"), "x", memoryview(b"x"), None):
        with pytest.raises(TypeError):
            buf.push(bad)
    assert len(buf) == 0


def test_empty_buffer(impl):
    buf = impl.BatchBuffer(4, 100)
    assert (len(buf), buf.pending_bytes, buf.ready()) == (0, 0, False)
    assert buf.pop_batch() == ([], [])
    assert buf.drain() == ([], [])


def test_batches_are_cut_by_count_and_bytes(impl):
    buf = impl.BatchBuffer(3, 10)
    for i, size in enumerate([4, 4, 4, 0, 0, 0, 0]):
        buf.push(b"a" * size, i)
    assert buf.ready()
    assert buf.pop_batch()[1] == [0, 1]  # a third 4-byte payload would exceed 10 bytes
    assert buf.pop_batch()[1] == [2, 3, 4]  # three entries: the count bound
    assert buf.pop_batch()[1] == [5, 6]
    assert buf.pending_bytes == 0


def test_oversized_proposal_forms_its_own_batch(impl):
    buf = impl.BatchBuffer(8, 10)
    buf.push(b"z" * 50, "big")
    buf.push(b"y", "small")
    assert buf.pop_batch() == ([b"z" * 50], ["big"])
    assert buf.pop_batch() == ([b"y"], ["small"])


def test_zero_length_payloads_count_by_entries(impl):
    buf = impl.BatchBuffer(2, 1)
    for i in range(5):
        buf.push(b"", i)
    assert buf.ready()
    assert [buf.pop_batch()[1] for _ in range(3)] == [[0, 1], [2, 3], [4]]


def test_drain_ignores_bounds(impl):
    buf = impl.BatchBuffer(1, 1)
    for i in range(5):
        buf.push(b"abc", i)
    buf.pop_batch()
    assert buf.drain() == ([b"abc"] * 4, [1, 2, 3, 4])
    assert (len(buf), buf.pending_bytes) == (0, 0)
