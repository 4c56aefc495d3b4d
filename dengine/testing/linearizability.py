"""A linearizability checker for key-value histories.

Theory of operation
-------------------
A history is a list of operations, each with the time it was called and the time it returned
(``ret is None`` when it never returned: timed out, outcome unknown). It is linearizable if every
operation can be given one instant between its call and its return so that, taken in that order,
the operations are a legal run of a sequential key-value map (Herlihy & Wing, 1990).

The search is Wing & Gong's, with Lowe's memoization, as in porcupine (anishathalye/porcupine):
call and return events sit in one time-ordered doubly linked list; the search repeatedly picks a
call that is still in the list, applies its operation to the model state, and if that is legal
"lifts" the call and its return out of the list; a return found at the head of the list means
the operations before it could not all be ordered, so the search backtracks. A cache of
(set of linearized operations as a bitset, model state) pairs already visited keeps it from
exploring the same configuration twice, which is what makes it usable on real histories.

Keys are independent (a map is a product of registers: P-compositionality, Herlihy & Wing §3.2),
so the history is split per key and each key is checked on its own: many small searches instead
of one exponential one.

An operation that never returned may take effect at any instant after its call, or never: its
return is placed at +infinity and any output is accepted, so it can always be linearized at the
very end where nothing observes it. A read that never returned constrains nothing and is dropped.

When a key fails, :func:`check` explains it: it finds the earliest return time at which the
history cut there is already not linearizable (linearizability is prefix-closed, so a binary
search finds it), then the latest start time from which the ops still running form a window
that is not linearizable whatever value the key held at its start. That window, usually two to
four ops, is the violation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

__all__ = [
    "OpKind",
    "Op",
    "History",
    "CheckResult",
    "check",
    "check_key",
    "is_linearizable",
    "CheckInconclusive",
]

INF = float("inf")


class OpKind(Enum):
    PUT = "put"
    DELETE = "delete"
    GET = "get"
    CAS = "cas"


class CheckInconclusive(Exception):
    """The search for one key exceeded its step budget; the history is neither proven nor refuted."""


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation on one key.

    ``value`` is what a PUT writes or what a CAS writes when it succeeds (None: the CAS deletes);
    ``expected`` is what a CAS compares with (None: the key must be absent). ``output`` is what
    it returned: a GET's value (None: absent), a CAS's success as a bool, None for PUT and DELETE.
    ``ret is None``: it never returned, so its outcome is unknown.
    """

    client: int
    kind: OpKind
    key: bytes
    call: float
    ret: float | None
    value: bytes | None = None
    expected: bytes | None = None
    output: Any = None
    op_id: int = -1

    def __post_init__(self) -> None:
        if self.ret is not None and self.ret < self.call:
            raise ValueError(f"op returns ({self.ret}) before it is called ({self.call})")

    def describe(self) -> str:
        """Short canonical text: ``c3 put(k)=v1 -> ok [12..15]``."""
        v = _show(self.value)
        if self.kind is OpKind.PUT:
            text = f"put({_show(self.key)}, {v})"
        elif self.kind is OpKind.DELETE:
            text = f"delete({_show(self.key)})"
        elif self.kind is OpKind.GET:
            text = f"get({_show(self.key)})"
        else:
            text = f"cas({_show(self.key)}, expect {_show(self.expected)}, set {v})"
        if self.ret is None:
            out, span = "?", f"[{_t(self.call)}..never returned]"
        else:
            span = f"[{_t(self.call)}..{_t(self.ret)}]"
            if self.kind is OpKind.GET:
                out = _show(self.output)
            elif self.kind is OpKind.CAS:
                out = "ok" if self.output else "failed"
            else:
                out = "ok"
        return f"c{self.client} {text} -> {out} {span}"


def _show(v: object) -> str:
    if v is None:
        return "<absent>"
    if isinstance(v, bytes):
        try:
            return v.decode("ascii") if v.isascii() and v.decode().isprintable() else repr(v)
        except UnicodeDecodeError:
            return repr(v)
    return repr(v)


def _t(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


# -- recording ---------------------------------------------------------------------------------
class History:
    """Records operations as a client runs them; times come from a counter unless given.

    ``invoke`` returns an id; then exactly one of ``ok`` (returned with an output), ``failed``
    (definitely had no effect: it is dropped from the history) or ``unknown`` (timed out; also
    what any op still open at the end is taken to be).
    """

    def __init__(self) -> None:
        self._clock = itertools.count(1)
        self._open: dict[int, Op] = {}
        self._done: list[Op] = []
        self._ids = itertools.count()

    def now(self) -> int:
        return next(self._clock)

    def invoke(
        self,
        client: int,
        kind: OpKind,
        key: bytes,
        value: bytes | None = None,
        expected: bytes | None = None,
        time: float | None = None,
    ) -> int:
        op_id = next(self._ids)
        call = self.now() if time is None else time
        self._open[op_id] = Op(client, kind, key, call, None, value, expected, None, op_id)
        return op_id

    def ok(self, op_id: int, output: Any = None, time: float | None = None) -> None:
        op = self._open.pop(op_id)
        ret = self.now() if time is None else time
        self._done.append(replace(op, ret=ret, output=output))

    def failed(self, op_id: int) -> None:
        del self._open[op_id]

    def unknown(self, op_id: int) -> None:
        self._done.append(self._open.pop(op_id))

    def is_open(self, op_id: int) -> bool:
        return op_id in self._open

    def ops(self) -> list[Op]:
        """Every op so far; ops still open count as unknown outcome."""
        return sorted([*self._done, *self._open.values()], key=lambda o: (o.call, o.op_id))


# -- the model: one register ---------------------------------------------------------------------
class _Any:
    """The state at the start of a window: any value some op wrote, or absent, not yet known."""

    __slots__ = ("values",)

    def __init__(self, values: frozenset[object]) -> None:
        self.values = values

    def __repr__(self) -> str:
        return "<any>"


def _step(state: object, op: Op) -> tuple[bool, object]:
    """Apply ``op`` to a register holding ``state``: (legal, new state)."""
    kind = op.kind
    if kind is OpKind.PUT:
        return True, op.value
    if kind is OpKind.DELETE:
        return True, None
    if isinstance(state, _Any):
        # the first op to look at the key fixes what it held; a failed or unknown CAS leaves it
        # <any>, which is looser than the truth and so can only make a window look fine
        if kind is OpKind.GET:
            return op.output in state.values, op.output
        if op.ret is None or not op.output:
            return True, state
        return op.expected in state.values, op.value
    if kind is OpKind.GET:
        return op.output == state, state
    hit = state == op.expected
    if op.ret is not None and bool(op.output) != hit:
        return False, state
    return True, (op.value if hit else state)


# -- Wing-Gong-Lowe search -----------------------------------------------------------------------
def _wgl(ops: Sequence[Op], initial: object, max_steps: int | None) -> bool:
    """Whether ``ops`` (all on one key, pending reads removed) linearize from ``initial``."""
    n = len(ops)
    if n == 0:
        return True
    events = []
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))
        events.append((INF if op.ret is None else op.ret, 1, i))
    events.sort()  # at equal times a call sorts before a return: the two ops overlap
    head = 2 * n
    nxt = [-1] * (2 * n + 1)
    prv = [-1] * (2 * n + 1)
    is_call = [False] * (2 * n)
    opi = [0] * (2 * n)
    match = [-1] * (2 * n)
    node_of_call = [0] * n
    last = head
    for pos, (_, kind, i) in enumerate(events):
        nxt[last], prv[pos] = pos, last
        last = pos
        opi[pos] = i
        if kind == 0:
            is_call[pos] = True
            node_of_call[i] = pos
        else:
            match[node_of_call[i]] = pos

    def lift(e: int) -> None:
        for x in (e, match[e]):
            nxt[prv[x]] = nxt[x]
            if nxt[x] != -1:
                prv[nxt[x]] = prv[x]

    def unlift(e: int) -> None:
        for x in (match[e], e):
            nxt[prv[x]] = x
            if nxt[x] != -1:
                prv[nxt[x]] = x

    cache: set[tuple[int, object]] = set()
    calls: list[tuple[int, object]] = []
    state, linearized = initial, 0
    entry = nxt[head]
    steps = 0
    while nxt[head] != -1:
        steps += 1
        if max_steps is not None and steps > max_steps:
            raise CheckInconclusive(f"more than {max_steps} search steps on {n} ops")
        if is_call[entry]:
            i = opi[entry]
            legal, new_state = _step(state, ops[i])
            if legal:
                marked = linearized | (1 << i)
                seen = (marked, new_state)
                if seen not in cache:
                    cache.add(seen)
                    calls.append((entry, state))
                    state, linearized = new_state, marked
                    lift(entry)
                    entry = nxt[head]
                    continue
            entry = nxt[entry]
        else:
            if not calls:
                return False
            entry, state = calls.pop()
            linearized &= ~(1 << opi[entry])
            unlift(entry)
            entry = nxt[entry]
    return True


def _searchable(ops: Iterable[Op]) -> list[Op]:
    """Drop or pin down ops whose outcome is unknown, each of which would double the search.

    A read that never returned constrains nothing: dropped. A PUT that never returned and whose
    value no read returned may as well never have happened (a valid choice for it), provided no
    CAS on the key could have seen it fail: dropped. A PUT that never returned and is the only
    writer of a value that reads returned must take effect before the first of those reads
    returns: it gets that as its return time.
    """
    ops = list(ops)
    has_cas = any(o.kind is OpKind.CAS for o in ops)
    writers: dict[object, int] = {}
    for o in ops:
        if o.kind in (OpKind.PUT, OpKind.CAS):
            writers[o.value] = writers.get(o.value, 0) + 1
    first_seen: dict[object, float] = {}
    for o in ops:
        if o.kind is OpKind.GET and o.ret is not None:
            first_seen[o.output] = min(o.ret, first_seen.get(o.output, INF))
    out = []
    for o in ops:
        if o.ret is None and o.kind is OpKind.GET:
            continue
        if o.ret is None and o.kind is OpKind.PUT:
            seen = first_seen.get(o.value)
            if seen is None and not has_cas:
                continue
            if seen is not None and writers[o.value] == 1 and seen >= o.call:
                o = replace(o, ret=seen)
        out.append(o)
    return out


# -- results and explanation ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict. On failure: the key, and the smallest window of ops found that shows it."""

    ok: bool
    key: bytes | None = None
    window: tuple[Op, ...] = ()
    window_from_start: bool = False
    keys_checked: int = 0
    ops_checked: int = 0
    failing_keys: tuple[bytes, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return self.ok

    def describe(self) -> str:
        if self.ok:
            return f"linearizable: {self.ops_checked} ops on {self.keys_checked} keys"
        start = (
            "from the start of the history (the key begins absent)"
            if self.window_from_start
            else "whatever value the key held when it began"
        )
        lines = [
            f"NOT linearizable on key {_show(self.key)}: these {len(self.window)} ops admit "
            f"no sequential order ({start}):"
        ]
        lines += ["  " + op.describe() for op in sorted(self.window, key=lambda o: o.call)]
        done = [o for o in self.window if o.ret is not None]
        if done:
            culprit = max(done, key=lambda o: o.ret if o.ret is not None else -math.inf)
            lines.append(f"  the history is fine until {culprit.describe()} returns")
        if len(self.failing_keys) > 1:
            others = ", ".join(_show(k) for k in self.failing_keys[1:])
            lines.append(f"  other keys that also fail: {others}")
        return "\n".join(lines)


def _cut(ops: Sequence[Op], t: float) -> list[Op]:
    """The history as it stood at time ``t``: ops called by then; those not returned pending."""
    out = []
    for o in ops:
        if o.call > t:
            continue
        if o.ret is not None and o.ret > t:
            o = replace(o, ret=None, output=None)
        out.append(o)
    return _searchable(out)


def _explain(ops: Sequence[Op], initial: object, max_steps: int | None) -> tuple[list[Op], bool]:
    """(window, whether it needs the true initial state) for a key known not to linearize."""
    rets = sorted({o.ret for o in ops if o.ret is not None})
    lo, hi = 0, len(rets) - 1  # the cut at rets[hi] fails (it is the whole history)
    while lo < hi:
        mid = (lo + hi) // 2
        if _wgl(_cut(ops, rets[mid]), initial, max_steps):
            lo = mid + 1
        else:
            hi = mid
    prefix = _cut(ops, rets[lo])
    # whatever the key held at the start of a window was written by some op, or it was absent
    values: set[object] = {None}
    values.update(o.value for o in ops if o.kind in (OpKind.PUT, OpKind.CAS))
    anything = _Any(frozenset(values))
    starts = sorted({o.call for o in prefix}, reverse=True)
    for s in starts[:200]:
        window = [o for o in prefix if o.ret is None or o.ret >= s]
        if not any(o.ret is not None for o in window):
            continue
        if not _wgl(window, anything, max_steps):
            # ops that never returned and are not needed for the contradiction: left out
            for o in [o for o in window if o.ret is None]:
                rest = [x for x in window if x is not o]
                if not _wgl(rest, anything, max_steps):
                    window = rest
            return window, False
    return prefix, True


def check_key(
    ops: Sequence[Op], initial: bytes | None = None, max_steps: int | None = None
) -> CheckResult:
    """Check the ops of one key (all must share it)."""
    ops = sorted(ops, key=lambda o: (o.call, o.op_id))
    search = _searchable(ops)
    key = ops[0].key if ops else None
    if _wgl(search, initial, max_steps):
        return CheckResult(True, keys_checked=1, ops_checked=len(ops))
    window, from_start = _explain(search, initial, max_steps)
    return CheckResult(
        False,
        key=key,
        window=tuple(window),
        window_from_start=from_start,
        keys_checked=1,
        ops_checked=len(ops),
        failing_keys=(key,) if key is not None else (),
    )


def check(ops: Iterable[Op] | History, max_steps: int | None = None) -> CheckResult:
    """Check a whole history key by key (every key starts absent); explain the first failure."""
    if isinstance(ops, History):
        ops = ops.ops()
    by_key: dict[bytes, list[Op]] = {}
    for o in ops:
        by_key.setdefault(o.key, []).append(o)
    first: CheckResult | None = None
    failing: list[bytes] = []
    total = 0
    for key in sorted(by_key):
        total += len(by_key[key])
        r = check_key(by_key[key], None, max_steps)
        if not r.ok:
            failing.append(key)
            if first is None:
                first = r
    if first is None:
        return CheckResult(True, keys_checked=len(by_key), ops_checked=total)
    return replace(first, keys_checked=len(by_key), ops_checked=total, failing_keys=tuple(failing))


def is_linearizable(ops: Iterable[Op] | History, max_steps: int | None = None) -> bool:
    return check(ops, max_steps).ok
