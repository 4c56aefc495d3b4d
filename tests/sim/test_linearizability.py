"""The linearizability checker: it accepts what is linearizable and refutes what is not."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dengine.testing.linearizability import (
    CheckInconclusive,
    History,
    Op,
    OpKind,
    check,
    check_key,
)

K = b"k"


def put(c, t0, t1, v, key=K):
    return Op(c, OpKind.PUT, key, t0, t1, value=v)


def get(c, t0, t1, out, key=K):
    return Op(c, OpKind.GET, key, t0, t1, output=out)


def delete(c, t0, t1, key=K):
    return Op(c, OpKind.DELETE, key, t0, t1)


def cas(c, t0, t1, expected, new, ok, key=K):
    return Op(c, OpKind.CAS, key, t0, t1, value=new, expected=expected, output=ok)


# -- linearizable histories pass ---------------------------------------------------------------
def test_empty_history_is_linearizable():
    assert check([]).ok


def test_sequential_history_passes():
    h = [put(1, 1, 2, b"a"), get(2, 3, 4, b"a"), delete(1, 5, 6), get(2, 7, 8, None)]
    assert check(h).ok


def test_read_of_absent_key_before_any_write_passes():
    assert check([get(1, 1, 2, None), put(2, 3, 4, b"x")]).ok


def test_concurrent_read_may_see_old_or_new_value():
    w = put(1, 1, 10, b"new")
    base = put(3, 0, 0.5, b"old")
    assert check([base, w, get(2, 2, 3, b"old")]).ok
    assert check([base, w, get(2, 2, 3, b"new")]).ok


def test_two_concurrent_reads_may_see_new_then_old_only_if_write_overlaps_both():
    # c2 reads new, then later c3 reads old: fine while the write overlaps... no: once a read
    # has seen "new", a read that starts after it ended must not see "old".
    base = put(9, 0, 0.5, b"old")
    w = put(1, 1, 20, b"new")
    ok = [base, w, get(2, 2, 3, b"old"), get(3, 4, 5, b"new")]
    bad = [base, w, get(2, 2, 3, b"new"), get(3, 4, 5, b"old")]
    assert check(ok).ok
    assert not check(bad).ok


def test_unknown_write_may_take_effect_late_or_never():
    base = put(1, 0, 1, b"a")
    lost = put(2, 2, None, b"b")  # timed out
    assert check([base, lost, get(3, 5, 6, b"a"), get(3, 7, 8, b"a")]).ok
    assert check([base, lost, get(3, 5, 6, b"a"), get(3, 7, 8, b"b")]).ok
    # ... but once seen it cannot be unseen
    assert not check([base, lost, get(3, 5, 6, b"b"), get(3, 7, 8, b"a")]).ok


def test_unknown_write_cannot_take_effect_before_its_call():
    h = [put(1, 0, 1, b"a"), get(3, 2, 3, b"b"), put(2, 5, None, b"b")]
    assert not check(h).ok


def test_pending_read_is_ignored():
    assert check([put(1, 0, 1, b"a"), get(2, 2, None, None)]).ok


def test_cas_success_and_failure():
    h = [
        put(1, 0, 1, b"a"),
        cas(2, 2, 3, b"a", b"b", True),
        cas(3, 4, 5, b"a", b"c", False),
        get(1, 6, 7, b"b"),
    ]
    assert check(h).ok
    assert not check([put(1, 0, 1, b"a"), cas(2, 2, 3, b"a", b"b", False)]).ok
    assert not check([put(1, 0, 1, b"a"), cas(2, 2, 3, b"z", b"b", True)]).ok


def test_cas_on_absent_key_and_unknown_cas():
    assert check([cas(1, 0, 1, None, b"x", True), get(2, 2, 3, b"x")]).ok
    h = [put(1, 0, 1, b"a"), cas(2, 2, None, b"a", b"b", None), get(3, 4, 5, b"b")]
    assert check(h).ok


def test_keys_are_independent():
    h = [put(1, 0, 1, b"a", key=b"x"), put(2, 0, 1, b"b", key=b"y"), get(3, 2, 3, b"a", key=b"x")]
    r = check(h)
    assert r.ok and r.keys_checked == 2


# -- non-linearizable histories fail, with the key and a small window --------------------------
def test_stale_read_fails_and_window_names_the_overwrite():
    h = [
        put(1, 0, 1, b"v1"),
        get(9, 1.2, 1.4, b"v1"),
        put(1, 2, 3, b"v2"),
        get(2, 4, 5, b"v1"),
    ]
    r = check(h)
    assert not r.ok
    assert r.key == K
    assert {o.value or o.output for o in r.window} == {b"v2", b"v1"}
    assert len(r.window) == 2
    text = r.describe()
    assert "NOT linearizable on key k" in text and "put(k, v2)" in text and "get(k) -> v1" in text


def test_lost_write_fails():
    h = [put(1, 0, 1, b"v1"), put(2, 2, 3, b"v2"), get(3, 4, 5, None)]
    r = check(h)
    assert not r.ok
    assert any(o.kind is OpKind.GET for o in r.window)


def test_read_of_never_written_value_fails_with_a_one_op_window():
    h = [put(1, 0, 1, b"a"), get(2, 2, 3, b"ghost"), put(1, 4, 5, b"b")]
    r = check(h)
    assert not r.ok and len(r.window) == 1 and r.window[0].output == b"ghost"


def test_read_before_the_write_was_called_fails():
    r = check([get(2, 0, 1, b"x"), put(1, 2, 3, b"x")])
    assert not r.ok and r.window_from_start


def test_reordered_sequential_writes_fail():
    # c1 writes a then b, strictly one after the other; a reader later sees a.
    h = [put(1, 0, 1, b"a"), put(1, 2, 3, b"b"), get(2, 4, 5, b"b"), get(2, 6, 7, b"a")]
    r = check(h)
    assert not r.ok
    assert r.window[-1].output == b"a" or any(o.output == b"a" for o in r.window)


def test_delete_then_stale_read_fails():
    assert not check([put(1, 0, 1, b"a"), delete(1, 2, 3), get(2, 4, 5, b"a")]).ok


def test_failing_key_reported_among_several():
    ok = [put(1, 0, 1, b"a", key=b"good"), get(2, 2, 3, b"a", key=b"good")]
    bad = [
        put(1, 0, 1, b"a", key=b"bad"),
        put(1, 2, 3, b"b", key=b"bad"),
        get(2, 4, 5, b"a", key=b"bad"),
    ]
    r = check(ok + bad)
    assert not r.ok and r.key == b"bad" and r.failing_keys == (b"bad",)


def test_window_is_the_earliest_failure():
    # the history goes wrong at t=5 and keeps going; the window ends there
    h = [put(1, 0, 1, b"a"), put(1, 2, 3, b"b"), get(2, 4, 5, b"a")]
    h += [put(1, 10 + i, 10.5 + i, b"x%d" % i) for i in range(20)]
    r = check_key(h)
    assert not r.ok and max(o.ret for o in r.window) == 5


def test_step_budget_raises_instead_of_guessing():
    writes = [put(i, 0, 100, b"%d" % i) for i in range(12)]
    reads = [get(20, 101, 102, b"absent-value")]
    try:
        check(writes + reads, max_steps=50)
    except CheckInconclusive:
        return
    raise AssertionError("expected the budget to run out")


def test_history_recorder():
    h = History()
    a = h.invoke(1, OpKind.PUT, K, value=b"a")
    h.ok(a)
    b = h.invoke(2, OpKind.PUT, K, value=b"b")
    c = h.invoke(3, OpKind.GET, K)
    h.ok(c, b"a")
    h.unknown(b)
    d = h.invoke(1, OpKind.PUT, K, value=b"z")
    h.failed(d)
    e = h.invoke(3, OpKind.GET, K)
    h.ok(e, b"z")  # z never took effect: failure
    ops = h.ops()
    assert [o.kind for o in ops] == [OpKind.PUT, OpKind.PUT, OpKind.GET, OpKind.GET]
    assert not check(h).ok


# -- property: a real sequential execution, observed with overlapping intervals, always passes --
@st.composite
def executed_histories(draw):
    """Run ops one at a time against a dict, at instants; give each a random interval around it."""
    n = draw(st.integers(1, 40))
    keys = [b"a", b"b", b"c"]
    store: dict[bytes, bytes] = {}
    ops = []
    for i in range(n):
        at = i * 10 + 5  # the instant the op takes effect
        before = draw(st.integers(0, 30))
        after = draw(st.integers(0, 30))
        pending = draw(st.integers(0, 9)) == 0
        key = draw(st.sampled_from(keys))
        kind = draw(st.sampled_from(list(OpKind)))
        client = draw(st.integers(0, 4))
        call, ret = at - before - 0.5, (None if pending else at + after + 0.5)
        if kind is OpKind.PUT:
            store[key] = b"v%d" % i
            ops.append(put(client, call, ret, store[key], key))
        elif kind is OpKind.DELETE:
            store.pop(key, None)
            ops.append(delete(client, call, ret, key))
        elif kind is OpKind.GET:
            ops.append(get(client, call, ret, store.get(key), key))
        else:
            expected = draw(st.sampled_from([None, store.get(key), b"v%d" % max(i - 1, 0)]))
            hit = store.get(key) == expected
            if hit:
                store[key] = b"c%d" % i
            ops.append(cas(client, call, ret, expected, b"c%d" % i, hit, key))
    return ops


@settings(max_examples=200, deadline=None)
@given(executed_histories())
def test_real_sequential_executions_always_pass(ops):
    r = check(ops)
    assert r.ok, r.describe()


@settings(max_examples=100, deadline=None)
@given(executed_histories(), st.data())
def test_corrupting_a_unique_read_is_caught(ops, data):
    """Make a completed read return a value never written: the checker must refuse it."""
    reads = [i for i, o in enumerate(ops) if o.kind is OpKind.GET and o.ret is not None]
    if not reads:
        return
    i = data.draw(st.sampled_from(reads))
    o = ops[i]
    ops[i] = get(o.client, o.call, o.ret, b"never-written", o.key)
    r = check(ops)
    assert not r.ok and r.key == o.key
