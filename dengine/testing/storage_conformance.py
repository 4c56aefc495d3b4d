"""The log store conformance suite, shipped for people writing their own adapter.

Use it from a pytest module: provide a ``log_factory`` fixture returning an object with
``open() -> LogStore`` (the same directory each call, so a second ``open`` after ``close`` is a
restart) and ``durable: bool`` (False for a store that keeps nothing across ``close``, whose
"reopen" then keeps the same object), then subclass :class:`LogStoreConformance`::

    @pytest.fixture
    def log_factory(tmp_path):
        return MyFactory(tmp_path / "log")

    class TestMyStore(LogStoreConformance):
        pass

Every method of :class:`~dengine.storage.base.LogStore` is exercised with its edge cases:
an empty log, reads around the anchor after compaction, truncation and replacement across
segment boundaries (make segments small in the factory), refused batches that must leave the
store untouched, and a restart after each of these. A seeded random walk compares the store
with a plain list model, restarting it now and then.
"""

from __future__ import annotations

import random
from typing import Protocol

import pytest

from dengine.errors import ClusterMismatch, Compacted, IndexOutOfRange, InvalidAppend
from dengine.raft.log import LogReader
from dengine.raft.types import ConfState, Entry, EntryKind, HardState, SnapshotMeta
from dengine.storage.base import LogStore


class LogStoreFactory(Protocol):
    durable: bool

    def open(self) -> LogStore: ...


def payload(index: int, term: int, size: int | None = None) -> bytes:
    """A payload that names its entry, so a misplaced entry shows in a failure."""
    head = f"{term}:{index}:".encode()
    n = (index * 7919 + term) % 97 if size is None else size
    return (head * (n // len(head) + 1))[:n] if n else b""


def make(lo: int, hi: int, term: int, size: int | None = None) -> list[Entry]:
    """Entries ``lo..hi`` (inclusive) of ``term``."""
    return [Entry(term, i, EntryKind.NORMAL, payload(i, term, size)) for i in range(lo, hi + 1)]


def reopen(factory: LogStoreFactory, store: LogStore) -> LogStore:
    """Restart a durable store; a non-durable one stays as it is."""
    if not factory.durable:
        return store
    store.close()
    return factory.open()


def snapshot_of(store: LogStore) -> tuple:
    """Everything observable about a store, to compare before and after an operation."""
    first, last = store.first_index(), store.last_index()
    return (
        first,
        last,
        store.term(first - 1),
        store.entries(first, last + 1),
        store.hard_state(),
        store.snapshot_meta(),
    )


class LogStoreConformance:
    """Subclass in a test module that provides the ``log_factory`` fixture."""

    @pytest.fixture
    def store(self, log_factory):
        s = log_factory.open()
        holder = [s]
        yield holder
        holder[0].close()

    # -- empty ---------------------------------------------------------------------------------
    def test_is_a_log_store(self, store):
        assert isinstance(store[0], LogStore)
        assert isinstance(store[0], LogReader)  # what the Raft core reads through

    def test_empty(self, store, log_factory):
        for _ in range(2):
            s = store[0]
            assert (s.first_index(), s.last_index(), s.term(0)) == (1, 0, 0)
            assert s.entries(1, 1) == []
            with pytest.raises(IndexOutOfRange):
                s.term(1)
            with pytest.raises(IndexOutOfRange):
                s.entries(1, 2)
            assert s.hard_state() == HardState()
            assert s.snapshot_meta() is None
            assert s.identity() is None
            store[0] = reopen(log_factory, s)

    def test_append_nothing_is_a_no_op(self, store):
        store[0].append([])
        assert store[0].last_index() == 0

    # -- append and read -------------------------------------------------------------------------
    def test_append_and_read(self, store, log_factory):
        es = make(1, 50, 1) + make(51, 120, 2)
        store[0].append(es[:7])
        store[0].append(es[7:])
        for _ in range(2):
            s = store[0]
            assert (s.first_index(), s.last_index()) == (1, 120)
            assert s.entries(1, 121) == es
            assert s.entries(40, 60) == es[39:59]
            assert [s.term(i) for i in (0, 1, 50, 51, 120)] == [0, 1, 1, 2, 2]
            store[0] = reopen(log_factory, s)

    def test_kinds_empty_and_large_payloads(self, store, log_factory):
        es = [
            Entry(1, 1, EntryKind.NORMAL, b""),
            Entry(1, 2, EntryKind.CONF_CHANGE, b"conf"),
            Entry(2, 3, EntryKind.NORMAL, bytes(range(256)) * 400),
            Entry(2, 4, 255, b"\x00" * 10),
        ]
        store[0].append(es)
        store[0] = reopen(log_factory, store[0])
        assert store[0].entries(1, 5) == es

    def test_max_bytes_budget(self, store):
        es = make(1, 10, 1, size=100)
        store[0].append(es)
        per = 100  # payload bytes: what the Raft core counts
        assert store[0].entries(1, 11, max_bytes=0) == es[:1]  # always one
        assert store[0].entries(1, 11, max_bytes=per * 3) == es[:3]
        assert store[0].entries(1, 11, max_bytes=per * 3 + per - 1) == es[:3]
        assert store[0].entries(3, 11, max_bytes=10**9) == es[2:]
        assert store[0].entries(5, 5, max_bytes=0) == []

    def test_read_bounds(self, store):
        store[0].append(make(1, 5, 1))
        with pytest.raises(IndexOutOfRange):
            store[0].entries(1, 7)
        with pytest.raises(IndexOutOfRange):
            store[0].term(6)
        with pytest.raises(ValueError):
            store[0].entries(4, 3)
        assert store[0].entries(6, 6) == []

    # -- refused appends leave the store untouched -----------------------------------------------
    @pytest.mark.parametrize(
        "bad",
        [
            [Entry(2, 12, 0, b"gap")],
            [Entry(2, 11, 0, b"a"), Entry(2, 13, 0, b"skip")],
            [Entry(2, 11, 0, b"a"), Entry(2, 10, 0, b"back")],
            [Entry(2, 11, 0, b"a"), Entry(1, 12, 0, b"falls")],
            [Entry(1, 8, 0, b"below the held term at 7 (2)")],
            [Entry(0, 11, 0, b"term zero")],
        ],
    )
    def test_bad_batch_is_refused_whole(self, store, log_factory, bad):
        store[0].append(make(1, 5, 1) + make(6, 10, 2))
        before = snapshot_of(store[0])
        with pytest.raises(InvalidAppend):
            store[0].append(bad)
        assert snapshot_of(store[0]) == before
        store[0] = reopen(log_factory, store[0])
        assert snapshot_of(store[0]) == before

    def test_entries_covered_by_the_snapshot_are_skipped(self, store, log_factory):
        store[0].append(make(1, 20, 1))
        store[0].compact(10)
        store[0].append(make(5, 10, 1))  # all covered: nothing to do
        assert store[0].entries(11, 21) == make(11, 20, 1)
        store[0].append(make(5, 25, 2))  # covered part skipped, the rest replaces 11..
        store[0] = reopen(log_factory, store[0])
        assert store[0].first_index() == 11
        assert store[0].entries(11, 26) == make(11, 25, 2)

    # -- conflicts, truncation ------------------------------------------------------------------
    def test_append_replaces_a_conflicting_suffix(self, store, log_factory):
        store[0].append(make(1, 100, 1))
        store[0].append(make(40, 60, 2))
        for _ in range(2):
            assert store[0].last_index() == 60
            assert store[0].entries(1, 61) == make(1, 39, 1) + make(40, 60, 2)
            store[0] = reopen(log_factory, store[0])
        store[0].append(make(61, 70, 3))
        store[0].append(make(1, 3, 4))  # replace from the very first entry
        store[0] = reopen(log_factory, store[0])
        assert store[0].entries(1, 4) == make(1, 3, 4)
        assert store[0].last_index() == 3

    @pytest.mark.parametrize("cut", [1, 2, 37, 99, 100, 101, 500])
    def test_truncate_suffix(self, store, log_factory, cut):
        es = make(1, 100, 1, size=60)
        for i in range(0, 100, 9):
            store[0].append(es[i : i + 9])
        store[0].truncate_suffix(cut)
        for _ in range(2):
            last = min(cut - 1, 100)
            assert store[0].last_index() == last
            assert store[0].entries(1, last + 1) == es[:last]
            store[0] = reopen(log_factory, store[0])
        store[0].append(make(last + 1, last + 5, 2))
        store[0] = reopen(log_factory, store[0])
        assert store[0].entries(1, last + 6) == es[:last] + make(last + 1, last + 5, 2)

    def test_truncate_below_compaction_point_is_refused(self, store):
        store[0].append(make(1, 30, 1))
        store[0].compact(20)
        before = snapshot_of(store[0])
        with pytest.raises(Compacted):
            store[0].truncate_suffix(20)
        store[0].truncate_suffix(21)  # the first kept index is fine
        assert store[0].last_index() == 20
        assert before[0] == store[0].first_index()

    # -- compaction ----------------------------------------------------------------------------
    def test_compact(self, store, log_factory):
        es = make(1, 60, 1, size=80) + make(61, 100, 2, size=80)
        for i in range(0, 100, 7):
            store[0].append(es[i : i + 7])
        store[0].compact(64)
        for _ in range(2):
            s = store[0]
            assert (s.first_index(), s.last_index(), s.term(64)) == (65, 100, 2)
            assert s.entries(65, 101) == es[64:]
            with pytest.raises(Compacted):
                s.entries(64, 70)
            with pytest.raises(Compacted):
                s.term(63)
            store[0] = reopen(log_factory, s)
        store[0].compact(10)  # below the anchor: nothing to do
        store[0].compact(64)
        assert store[0].first_index() == 65
        with pytest.raises(IndexOutOfRange):
            store[0].compact(101)
        store[0].compact(100)  # everything: an empty log anchored at 100
        store[0] = reopen(log_factory, store[0])
        assert (store[0].first_index(), store[0].last_index(), store[0].term(100)) == (101, 100, 2)
        store[0].append(make(101, 103, 3))
        store[0] = reopen(log_factory, store[0])
        assert store[0].entries(101, 104) == make(101, 103, 3)

    def test_reset_for_a_snapshot(self, store, log_factory):
        store[0].append(make(1, 50, 1))
        store[0].reset(1000, 7)
        for _ in range(2):
            s = store[0]
            assert (s.first_index(), s.last_index(), s.term(1000)) == (1001, 1000, 7)
            with pytest.raises(Compacted):
                s.entries(50, 51)
            store[0] = reopen(log_factory, s)
        store[0].append(make(1001, 1010, 7))
        store[0].reset(5, 1)  # backwards is allowed too: the log is whatever the snapshot says
        store[0].append(make(6, 8, 1))
        store[0] = reopen(log_factory, store[0])
        assert store[0].entries(6, 9) == make(6, 8, 1)
        assert store[0].first_index() == 6

    # -- small records -------------------------------------------------------------------------
    def test_hard_state(self, store, log_factory):
        store[0].append(make(1, 9, 3))
        store[0].save_hard_state(HardState(3, 2, 5))
        store[0].save_hard_state(HardState(4, 0, 9))
        store[0] = reopen(log_factory, store[0])
        assert store[0].hard_state() == HardState(4, 0, 9)

    def test_snapshot_meta(self, store, log_factory):
        cs = ConfState(
            frozenset({1, 2, 3}), frozenset({9}), frozenset({1, 4}), frozenset({4}), True
        )
        meta = SnapshotMeta(77, 5, cs)
        store[0].save_snapshot_meta(SnapshotMeta(10, 1))
        store[0].save_snapshot_meta(meta)
        store[0] = reopen(log_factory, store[0])
        assert store[0].snapshot_meta() == meta

    def test_identity(self, store, log_factory):
        store[0].bind_identity(0xC1, 3)
        store[0].bind_identity(0xC1, 3)
        store[0] = reopen(log_factory, store[0])
        assert store[0].identity() == (0xC1, 3)
        with pytest.raises(ClusterMismatch):
            store[0].bind_identity(0xC2, 3)
        with pytest.raises(ClusterMismatch):
            store[0].bind_identity(0xC1, 4)
        assert store[0].identity() == (0xC1, 3)

    def test_sync_is_callable_any_time(self, store):
        store[0].sync()
        store[0].append(make(1, 3, 1))
        store[0].sync()
        assert store[0].last_index() == 3

    # -- a random walk against a model ---------------------------------------------------------
    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_random_walk_matches_a_model(self, store, log_factory, seed):
        rng = random.Random(seed)
        model: list[Entry] = []
        anchor = (0, 0)
        term = 1
        for _step in range(150):
            s = store[0]
            last = anchor[0] + len(model)
            op = rng.random()
            if op < 0.55:
                start = rng.randint(anchor[0] + 1, last + 1) if rng.random() < 0.3 else last + 1
                term += rng.random() < 0.2
                batch = make(start, start + rng.randint(0, 12), term, size=rng.randint(0, 200))
                s.append(batch)
                model = model[: start - anchor[0] - 1] + batch
            elif op < 0.65 and last >= anchor[0] + 1:
                cut = rng.randint(anchor[0] + 1, last + 1)
                s.truncate_suffix(cut)
                model = model[: cut - anchor[0] - 1]
            elif op < 0.75 and model:
                at = rng.randint(anchor[0], last)
                s.compact(at)
                if at > anchor[0]:
                    t = model[at - anchor[0] - 1].term
                    model = [e for e in model if e.index > at]
                    anchor = (at, t)
            elif op < 0.78:
                at = last + rng.randint(0, 30)
                s.reset(at, term)
                anchor, model = (at, term), []
            elif op < 0.85:
                store[0] = reopen(log_factory, s)
            s = store[0]
            assert (s.first_index(), s.last_index()) == (anchor[0] + 1, anchor[0] + len(model))
            assert s.term(anchor[0]) == anchor[1]
            lo = rng.randint(anchor[0] + 1, anchor[0] + len(model) + 1)
            hi = rng.randint(lo, anchor[0] + len(model) + 1)
            assert s.entries(lo, hi) == model[lo - anchor[0] - 1 : hi - anchor[0] - 1]


# -- crash harness -----------------------------------------------------------------------------
# A writer process announces each operation (``P ...``) before it starts and confirms it (``D``)
# once the call has returned, that is once it is durable. The parent SIGKILLs it at a random
# moment, reopens the store and checks it holds exactly the confirmed state, or that state plus
# the one pending operation: whole when ``atomic`` (a RocksDB write batch); for a WAL, a
# truncation may have gone part of the way (segment by segment, from the end) and a batch may
# have left a prefix of its records (whole records only). Children come from a fork server that has imported
# dengine but never opened a store, so each starts in milliseconds.


#: What the fork server imports once, so that each writer starts in milliseconds.
FORKSERVER_PRELOAD = [
    "dengine.storage",
    "dengine.storage.rocksdb",
    "dengine.statemachine",
    "dengine.testing.storage_conformance",
    "dengine.testing.statemachine_conformance",
]


def crash_writer(open_store, term: int, seed: int, conn) -> None:
    """The child: append, compact and save hard state until killed, reporting over ``conn``."""
    rng = random.Random(seed)
    store = open_store()
    conn.send("O")
    commit = store.hard_state().commit
    while True:
        first, last = store.first_index(), store.last_index()
        r = rng.random()
        if r < 0.74:
            lo = last + 1
            if rng.random() < 0.15:  # replace an uncommitted suffix
                lo = max(commit + 1, first, last - 3)
            hi = lo + rng.randint(0, 31)
            conn.send(f"P A {lo} {hi} {term}")
            store.append(make(lo, hi, term))
        elif r < 0.79 and last > max(commit, first):  # across segment boundaries at times
            lo = rng.randint(max(commit + 1, first, last - 150), last)
            conn.send(f"P T {lo}")
            store.truncate_suffix(lo)
        elif r < 0.8:
            conn.send(f"P R {last + 5} {term}")
            store.reset(last + 5, term)
        elif r < 0.9 and last - 60 >= first:
            conn.send(f"P C {last - 60}")
            store.compact(last - 60)
        else:
            commit = max(commit, last - 100, first - 1)
            conn.send(f"P H {commit}")
            store.save_hard_state(HardState(term, 1, commit))
        conn.send("D")


class CrashModel:
    """What the store must hold: the confirmed state (first index, entries, commit)."""

    def __init__(self) -> None:
        self.state: tuple[int, list[Entry], int] = (1, [], 0)

    def after(self, op: list[str], prefix: int | None = None) -> tuple[int, list[Entry], int]:
        """The state once ``op`` is done (``prefix``: only that many entries of a batch)."""
        first, entries, commit = self.state
        if op[0] == "A":
            lo, hi, term = int(op[1]), int(op[2]), int(op[3])
            entries = [e for e in entries if e.index < lo] + make(lo, hi, term)[:prefix]
        elif op[0] == "C":
            at = int(op[1])
            first, entries = at + 1, [e for e in entries if e.index > at]
        elif op[0] == "H":
            commit = int(op[1])
        elif op[0] == "T":
            entries = [e for e in entries if e.index < int(op[1])]
        elif op[0] == "R":
            first, entries = int(op[1]) + 1, []
        return first, entries, commit

    def replay(self, lines: list[str]) -> tuple[list[str] | None, int]:
        """Apply the confirmed operations; return the pending one (or None) and the count."""
        pending, done = None, 0
        for line in lines:
            parts = line.split()
            if parts[0] == "P":
                pending = parts[1:]
            elif parts[0] == "D":
                if pending is None:
                    raise ValueError("the journal has a done line with no pending one before it")
                self.state = self.after(pending)
                pending, done = None, done + 1
        return pending, done

    def allowed(self, pending: list[str] | None, atomic: bool) -> list[tuple]:
        states = [self.state]
        if pending is not None and pending[0] == "A" and not atomic:
            # the held suffix may be cut (at once or segment by segment), then a batch prefix
            first, held, commit = self.state
            lo = int(pending[1])
            states += [
                (first, [e for e in held if e.index < x], commit)
                for x in range(lo, len(held) + first + 1)
            ]
            n = int(pending[2]) - lo + 1
            states += [self.after(pending, k) for k in range(n + 1)]
        elif pending is not None and pending[0] == "T" and not atomic:
            first, held, commit = self.state
            states += [
                (first, [e for e in held if e.index < x], commit)
                for x in range(int(pending[1]), first + len(held) + 1)
            ]
        elif pending is not None:
            states.append(self.after(pending))
        return states


def _observe(store: LogStore) -> tuple[int, list[Entry], int]:
    first, last = store.first_index(), store.last_index()
    return first, store.entries(first, last + 1), store.hard_state().commit


def _drain(conn) -> list[str]:
    lines = []
    while True:
        try:
            lines.append(conn.recv())
        except (EOFError, OSError):
            return lines


def run_crash_test(open_store, kills: int, seed: int, atomic: bool) -> dict[str, int]:
    """Kill ``kills`` writers at random moments; assert after each that nothing confirmed is lost.

    ``open_store`` must be picklable (a top-level function or a ``functools.partial`` of one,
    such as :func:`dengine.storage.open_log_store`). Returns counts: kills, confirmed
    operations, kills that landed with an operation pending.
    """
    import multiprocessing
    import time

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
    rng = random.Random(seed)
    model = CrashModel()
    stats = {"kills": 0, "confirmed": 0, "mid_operation": 0}
    for kill in range(kills):
        r, w = ctx.Pipe(duplex=False)
        child = ctx.Process(
            target=crash_writer, args=(open_store, kill + 1, rng.randrange(1 << 30), w)
        )
        child.start()
        w.close()
        if rng.random() < 0.2:  # anywhere, start-up and recovery included
            time.sleep(rng.uniform(0.0, 0.05))
        else:  # while it works
            assert r.poll(30) and r.recv() == "O", f"the writer failed to open (seed {seed})"
            time.sleep(rng.uniform(0.0, 0.08))
        child.kill()
        child.join()
        assert child.exitcode == -9, f"the writer ended by itself: {child.exitcode} (seed {seed})"
        pending, done = model.replay([x for x in _drain(r) if x != "O"])
        r.close()
        stats["kills"] += 1
        stats["confirmed"] += done
        stats["mid_operation"] += pending is not None
        store = open_store()
        try:
            got = _observe(store)
            assert got in model.allowed(pending, atomic), (
                f"after kill {kill} (seed {seed}) the store holds {got[0]}..{got[0] + len(got[1]) - 1}"
                f" commit {got[2]}: none of the states allowed with {pending} pending"
            )
            model.state = got
        finally:
            store.close()
    return stats
