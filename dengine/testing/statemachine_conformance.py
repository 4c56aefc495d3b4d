"""State machine conformance suites, shipped for people writing their own machine or engine.

:class:`StateMachineConformance` holds for any :class:`~dengine.statemachine.StateMachine`. Give
it a ``sm_factory`` fixture with ``durable``, ``open()`` (the same place each call: a second
``open`` after ``close`` is a restart), ``command(rng) -> bytes`` (a random valid command) and
``state(sm)`` (the machine's observable state, comparable with ``==``).

:class:`KVStateMachineConformance` pins down the KV machine's semantics on one engine; give it a
``kv_factory`` fixture with ``durable`` and ``open(**options) -> KVStateMachine``.
"""

from __future__ import annotations

import os
import random
from typing import Protocol

import pytest

from dengine._core import codec
from dengine.errors import DecodeError, SessionExpired, SnapshotError
from dengine.raft.types import ConfState, Entry, EntryKind
from dengine.statemachine.base import StateMachine, restore_snapshot, take_snapshot
from dengine.statemachine.engines import MemoryEngine, pack_items
from dengine.statemachine.kv import KVStateMachine, WriteResult
from dengine.statemachine.sessions import Registered, encode_register
from dengine.storage.snapshot import SnapshotReader, SnapshotStore
from dengine.testing.storage_conformance import FORKSERVER_PRELOAD


class StateMachineFactory(Protocol):
    durable: bool

    def open(self) -> StateMachine: ...
    def command(self, rng: random.Random) -> bytes: ...
    def state(self, sm: StateMachine) -> object: ...


def entries(start: int, payloads: list[bytes], term: int = 1) -> list[Entry]:
    return [Entry(term, start + i, EntryKind.NORMAL, p) for i, p in enumerate(payloads)]


def _restart(factory, sm, **options):
    if not factory.durable:
        return sm
    sm.close()
    return factory.open(**options)


class StateMachineConformance:
    """Holds for every state machine (see the module docstring for the fixture)."""

    @pytest.fixture
    def machine(self, sm_factory):
        holder = [sm_factory.open()]
        yield holder
        holder[0].close()

    def _feed(self, sm_factory, sm, start: int, n: int, seed: int) -> None:
        rng = random.Random(seed)
        sm.apply(entries(start, [sm_factory.command(rng) for _ in range(n)]))

    def test_is_a_state_machine(self, machine):
        assert isinstance(machine[0], StateMachine)
        assert machine[0].applied_index() == 0

    def test_one_result_per_entry_and_applied_index(self, machine, sm_factory):
        sm = machine[0]
        es = entries(1, [sm_factory.command(random.Random(1)) for _ in range(5)], term=2)
        es.append(Entry(2, 6, EntryKind.NORMAL, b""))  # a leader's no-op
        es.append(Entry(2, 7, EntryKind.CONF_CHANGE, b"conf"))
        assert len(sm.apply(es)) == 7
        assert (sm.applied_index(), sm.applied_term()) == (7, 2)

    def test_restart_keeps_exactly_what_was_applied(self, machine, sm_factory):
        self._feed(sm_factory, machine[0], 1, 30, seed=2)
        self._feed(sm_factory, machine[0], 31, 30, seed=3)
        state = sm_factory.state(machine[0])
        machine[0] = _restart(sm_factory, machine[0])
        assert machine[0].applied_index() == 60
        assert sm_factory.state(machine[0]) == state

    def test_snapshot_is_point_in_time_and_round_trips(self, machine, sm_factory):
        sm = machine[0]
        self._feed(sm_factory, sm, 1, 40, seed=4)
        state = sm_factory.state(sm)
        source = sm.snapshot()
        self._feed(sm_factory, sm, 41, 20, seed=5)  # after the pin: not in the snapshot
        assert source.index == 40
        chunks = list(source.chunks())
        source.close()
        sm.restore(iter(chunks))
        assert sm.applied_index() == 40
        assert sm_factory.state(sm) == state
        machine[0] = _restart(sm_factory, sm)
        assert sm_factory.state(machine[0]) == state

    def test_a_bad_stream_is_refused_and_changes_nothing(self, machine, sm_factory):
        sm = machine[0]
        self._feed(sm_factory, sm, 1, 10, seed=6)
        state = sm_factory.state(sm)

        def stream():
            yield b"\x07" * 33
            raise SnapshotError("stream cut")

        with pytest.raises((SnapshotError, DecodeError)):
            sm.restore(stream())
        assert sm_factory.state(sm) == state
        assert sm.applied_index() == 10


    def test_a_corrupted_snapshot_file_is_refused_untouched(self, machine, sm_factory, tmp_path):
        sm = machine[0]
        self._feed(sm_factory, sm, 1, 40, seed=7)
        store = SnapshotStore(str(tmp_path / "snapshots"))
        meta, path = take_snapshot(sm, store, ConfState(frozenset({1})))
        assert store.latest().meta == meta
        self._feed(sm_factory, sm, 41, 10, seed=8)
        state = sm_factory.state(sm)
        size = os.path.getsize(path)
        with open(path, "r+b") as f:  # damage the last chunk: restore must not start at all
            f.seek(size - 30)
            b = f.read(1)
            f.seek(size - 30)
            f.write(bytes([b[0] ^ 0xFF]))
        with pytest.raises(SnapshotError):
            restore_snapshot(sm, SnapshotReader(path))
        assert sm_factory.state(sm) == state and sm.applied_index() == 50


def put(k: bytes, v: bytes) -> bytes:
    return codec.encode_put(k, v)


def register() -> bytes:
    return encode_register()


# the id of the session a REGISTER of one at index 1, 2, 3, 4 opens
A, B, C, D = (i * 256 for i in (1, 2, 3, 4))


class KVStateMachineConformance:
    """The KV machine's semantics on one engine (fixture ``kv_factory``)."""

    @pytest.fixture
    def kv(self, kv_factory):
        holder = [kv_factory.open()]
        yield holder
        holder[0].close()

    def test_put_get_revision_version(self, kv):
        sm: KVStateMachine = kv[0]
        r = sm.apply(entries(1, [put(b"a", b"1"), put(b"b", b"2"), put(b"a", b"3")]))
        assert r == [WriteResult(True, 1, 1), WriteResult(True, 2, 1), WriteResult(True, 3, 2)]
        a = sm.get(b"a")
        assert (a.value, a.revision, a.create_revision, a.version) == (b"3", 3, 1, 2)
        assert sm.get(b"zz") is None
        assert [x and x.value for x in sm.get_many([b"b", b"q", b"a"])] == [b"2", None, b"3"]

    def test_delete_resets_version(self, kv):
        sm = kv[0]
        r = sm.apply(
            entries(
                1,
                [
                    put(b"k", b"1"),
                    codec.encode_delete(b"k"),
                    codec.encode_delete(b"k"),
                    put(b"k", b"2"),
                ],
            )
        )
        assert [x.ok for x in r] == [True, True, False, True]
        k = sm.get(b"k")
        assert (k.version, k.create_revision, k.revision) == (1, 4, 4)

    def test_compare_and_set(self, kv):
        sm = kv[0]
        cas = codec.encode_cas
        r = sm.apply(
            entries(
                1,
                [
                    cas(b"k", None, 0, b"created"),  # version 0: only if absent
                    cas(b"k", None, 0, b"again"),  # now present: fails
                    cas(b"k", b"created", None, b"v2"),
                    cas(b"k", b"wrong", None, b"v3"),
                    cas(b"k", None, 2, b"v3"),
                    cas(b"k", b"v3", 3, None),  # both must match, then delete
                    cas(b"gone", b"x", None, b"y"),  # expected value of a missing key fails
                ],
            )
        )
        assert [x.ok for x in r] == [True, False, True, False, True, True, False]
        assert r[1] == WriteResult(False, 1, 1)
        assert sm.get(b"k") is None

    def test_batch_is_atomic_with_one_revision(self, kv):
        sm = kv[0]
        sm.apply(entries(1, [put(b"old", b"x")]))
        b = codec.encode_batch(
            [
                (codec.OP_PUT, b"a", b"1"),
                (codec.OP_PUT, b"b", b"2"),
                (codec.OP_DELETE, b"old"),
                (codec.OP_PUT, b"a", b"11"),
            ]
        )
        assert sm.apply(entries(2, [b]))[0].ok
        assert sm.get(b"old") is None
        assert (sm.get(b"a").value, sm.get(b"a").version, sm.get(b"b").revision) == (b"11", 2, 2)

    def test_range_and_prefix_pages(self, kv):
        sm = kv[0]
        keys = [b"a", b"app/1", b"app/2", b"app/3", b"app\xff", b"b", b"\xff", b"\xff\xff"]
        sm.apply(entries(1, [put(k, k) for k in keys]))
        assert [x.key for x in sm.range(b"").items] == keys
        assert [x.key for x in sm.range(b"app/", b"b").items] == keys[1:5]
        pages, start = [], b""
        while start is not None:
            page = sm.range(start, limit=3)
            pages.append([x.key for x in page.items])
            start = page.next_key
        assert sum(pages, []) == keys and all(len(p) <= 3 for p in pages)
        got, cont = [], None
        while True:
            page = sm.prefix(b"app/", limit=2, start=cont)
            got += [x.key for x in page.items]
            if page.next_key is None:
                break
            cont = page.next_key
        assert got == keys[1:4]
        assert [x.key for x in sm.prefix(b"\xff").items] == [b"\xff", b"\xff\xff"]
        assert sm.range(b"\xff\xff\x00").items == [] and sm.range(b"zz", b"zz").next_key is None

    def test_bad_commands_give_results_not_crashes(self, kv):
        sm = kv[0]
        r = sm.apply(entries(1, [b"\xff", put(b"a", b"1")[:-3], put(b"a", b"1")]))
        assert isinstance(r[0], DecodeError) and isinstance(r[1], DecodeError)
        assert r[2].ok and sm.applied_index() == 3

    def test_already_applied_entries_are_refused(self, kv):
        sm = kv[0]
        sm.apply(entries(1, [put(b"a", b"1")]))
        with pytest.raises(ValueError):
            sm.apply(entries(1, [put(b"a", b"2")]))
        assert sm.get(b"a").value == b"1"

    def test_applied_index_and_data_survive_restart(self, kv, kv_factory):
        kv[0].apply(entries(1, [put(b"a", b"1"), put(b"b", b"2")], term=3))
        kv[0] = _restart(kv_factory, kv[0])
        assert (kv[0].applied_index(), kv[0].applied_term()) == (2, 3)
        assert kv[0].get(b"b").value == b"2"

    # -- exactly once (dengine.statemachine.sessions) ------------------------------------------
    def test_register_names_the_sessions_after_its_index(self, kv):
        r = kv[0].apply(entries(1, [put(b"a", b"1"), register(), encode_register(3)]))
        assert r[1:] == [Registered(2 * 256), Registered(3 * 256, 3)]
        assert set(kv[0].sessions.dump()) == {512, 768, 769, 770}

    def test_a_retried_session_write_applies_once(self, kv, kv_factory):
        sm = kv[0]
        s = codec.encode_session
        first = sm.apply(entries(1, [register(), s(A, 1, put(b"n", b"1"))]))[1]
        sm.apply(entries(3, [put(b"n", b"changed by someone else")]))
        again = sm.apply(entries(4, [s(A, 1, put(b"n", b"1"))]))[0]
        assert again == first
        assert sm.get(b"n").value == b"changed by someone else"
        kv[0] = _restart(kv_factory, sm)
        assert kv[0].apply(entries(5, [s(A, 1, put(b"n", b"1"))]))[0] == first
        assert kv[0].get(b"n").version == 2

    def test_a_retried_cas_returns_its_first_answer(self, kv):
        sm = kv[0]
        s = codec.encode_session
        cas = s(A, 1, codec.encode_cas(b"c", b"v1", None, b"v2"))
        first = sm.apply(entries(1, [register(), put(b"c", b"v1"), cas]))[2]
        assert first.ok
        sm.apply(entries(4, [put(b"c", b"v3")]))
        assert sm.apply(entries(5, [cas]))[0] == first  # succeeded stays succeeded
        assert sm.get(b"c").value == b"v3"

    def test_an_unknown_session_is_refused_unapplied(self, kv):
        sm = kv[0]
        s = codec.encode_session
        r = sm.apply(entries(1, [s(99 * 256, 1, put(b"u", b"1")), s(B, 1, put(b"u", b"2"))]))
        assert all(isinstance(x, SessionExpired) for x in r)
        assert sm.get(b"u") is None and sm.sessions.dump() == {}

    def test_old_sequence_numbers_expire(self, kv_factory):
        sm = kv_factory.open(session_results=3)
        try:
            s = codec.encode_session
            sm.apply(entries(1, [register()] + [s(A, q, put(b"k", bytes([q])))
                                                for q in range(1, 6)]))
            r = sm.apply(entries(7, [s(A, 1, put(b"k", b"old")), s(A, 4, put(b"k", b"x"))]))
            assert isinstance(r[0], SessionExpired)
            assert r[1] == WriteResult(True, 5, 4)
            assert sm.get(b"k").value == bytes([5])
        finally:
            sm.close()

    def test_a_full_table_expires_the_least_recently_used(self, kv_factory):
        sm = kv_factory.open(max_sessions=2)
        try:
            s = codec.encode_session
            r = sm.apply(entries(1, [register(), register(), s(A, 1, put(b"a", b"1")),
                                     register()]))
            # session A was used at 3, session B only registered at 2: the register at 4
            # expired session B
            assert r[3] == Registered(D) and set(sm.sessions.dump()) == {A, D}
            r = sm.apply(entries(5, [s(A, 1, put(b"a", b"1")), s(B, 1, put(b"b", b"1")),
                                     s(D, 1, put(b"c", b"1"))]))
            assert r[0] == WriteResult(True, 3, 1)  # kept: the stored result, not applied again
            assert isinstance(r[1], SessionExpired)  # expired: refused, never applied
            assert sm.get(b"b") is None
            assert r[2] == WriteResult(True, 7, 1)
        finally:
            sm.close()

    def test_a_register_of_many_pushes_out_as_many_and_no_more_than_the_table(self, kv_factory):
        sm = kv_factory.open(max_sessions=3)
        try:
            s = codec.encode_session
            sm.apply(entries(1, [register(), register(), s(A, 1, put(b"a", b"1"))]))
            assert sm.apply(entries(4, [encode_register(2)]))[0] == Registered(4 * 256, 2)
            assert set(sm.sessions.dump()) == {A, 4 * 256, 4 * 256 + 1}  # B went first
            assert sm.apply(entries(5, [encode_register(200)]))[0] == Registered(5 * 256, 3)
            assert set(sm.sessions.dump()) == {5 * 256, 5 * 256 + 1, 5 * 256 + 2}
        finally:
            sm.close()

    def test_an_idle_session_expires_by_log_index(self, kv_factory):
        sm = kv_factory.open(session_lifetime_entries=3)
        try:
            s = codec.encode_session
            sm.apply(entries(1, [register(), s(A, 1, put(b"t", b"1"))]))
            sm.apply(entries(3, [put(b"x", b"1"), put(b"x", b"2")]))
            assert sm.apply(entries(5, [s(A, 2, put(b"t", b"2"))]))[0].ok  # 5 - 2 <= 3
            sm.apply(entries(6, [put(b"x", b"3")] * 3))
            r = sm.apply(entries(9, [s(A, 3, put(b"t", b"3")), s(A, 2, put(b"t", b"2"))]))
            assert all(isinstance(x, SessionExpired) for x in r)  # 9 - 5 > 3
            assert sm.get(b"t").value == b"2" and sm.sessions.dump() == {}
        finally:
            sm.close()

    def test_sessions_travel_in_snapshots(self, kv, kv_factory):
        sm = kv[0]
        s = codec.encode_session
        first = sm.apply(entries(1, [register(), s(A, 1, put(b"x", b"1"))]))[1]
        src = sm.snapshot()
        chunks = list(src.chunks())
        src.close()
        fresh = KVStateMachine(MemoryEngine())
        fresh.restore(iter(chunks))
        assert fresh.sessions.dump() == sm.sessions.dump()
        assert fresh.apply(entries(3, [s(A, 1, put(b"x", b"1"))]))[0] == first
        assert fresh.get(b"x").version == 1
        assert isinstance(fresh.apply(entries(4, [s(C, 1, put(b"x", b"2"))]))[0], SessionExpired)

    def test_a_foreign_snapshot_is_refused(self, kv):
        sm = kv[0]
        sm.apply(entries(1, [put(b"a", b"1")]))
        with pytest.raises(SnapshotError):
            sm.restore(pack_items([(b"dkey", b"not a record")], 1 << 20))
        with pytest.raises(SnapshotError):
            sm.restore(iter([b"\x05\x00\x00\x00abc"]))
        assert sm.get(b"a").value == b"1" and sm.applied_index() == 1

    def test_entries_out_of_order_are_refused_whole(self, kv):
        sm = kv[0]
        with pytest.raises(ValueError):
            sm.apply(entries(1, [put(b"a", b"1")]) + entries(3, [put(b"b", b"2")]))
        assert sm.get(b"a") is None and sm.applied_index() == 0


# -- crash harness for the KV machine ----------------------------------------------------------
# A writer process applies batches of deterministic commands and reports each applied index once
# ``apply`` has returned; the parent SIGKILLs it at random moments, reopens the machine and checks
# that it sits exactly at some batch boundary at or after the last reported index, holding
# exactly what a fresh in-memory machine holds after applying the same entries: the applied
# index and the data it covers were written in one atomic batch.


def kv_command(index: int) -> bytes:
    """The command at ``index``: puts, deletes, CAS, batches and retried session writes."""
    key = b"k%02d" % (index * 7 % 23)
    kind = index % 6
    if kind == 0:
        return codec.encode_delete(key)
    if kind == 1:
        return codec.encode_cas(key, None, index % 3, b"cas%d" % index)
    if kind == 2:
        ops = [(codec.OP_PUT, b"b%d" % (index % 5), b"%d" % index), (codec.OP_DELETE, key)]
        return codec.encode_batch(ops)
    if index <= 4:  # sessions 1 to 4
        return encode_register()
    if kind == 3:  # a session write, retried once three entries later
        return codec.encode_session((index % 4 + 1) * 256, index,
                                    codec.encode_put(key, b"s%d" % index))
    if kind == 4:
        return codec.encode_session(((index - 1) % 4 + 1) * 256, index - 1,
                                    b"\x01" + b"\x00" * 8)
    return codec.encode_put(key, b"v%d" % index)


def kv_apply_writer(open_sm, seed: int, conn) -> None:
    """The child: apply batches of :func:`kv_command` until killed, reporting applied indexes."""
    rng = random.Random(seed)
    sm = open_sm()
    conn.send(sm.applied_index())
    while True:
        start = sm.applied_index() + 1
        n = rng.randint(1, 40)
        sm.apply([Entry(1, i, EntryKind.NORMAL, kv_command(i)) for i in range(start, start + n)])
        conn.send(start + n - 1)


def run_kv_apply_crash_test(open_sm, kills: int, seed: int) -> dict[str, int]:
    """Kill ``kills`` writers; after each, check the machine against an in-memory replay.

    ``open_sm`` must be picklable (e.g. ``functools.partial(open_kv, "rocksdb", path)``).
    """
    import multiprocessing
    import time

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
    rng = random.Random(seed)
    model = KVStateMachine(MemoryEngine())
    stats = {"kills": 0, "applied": 0}
    for kill in range(kills):
        r, w = ctx.Pipe(duplex=False)
        child = ctx.Process(target=kv_apply_writer, args=(open_sm, rng.randrange(1 << 30), w))
        child.start()
        w.close()
        assert r.poll(30), f"the writer failed to open (seed {seed})"
        reported = r.recv()
        time.sleep(rng.uniform(0.0, 0.1))
        child.kill()
        child.join()
        while True:
            try:
                reported = r.recv()
            except (EOFError, OSError):
                break
        r.close()
        sm = open_sm()
        try:
            applied = sm.applied_index()
            assert applied >= reported, f"applied {applied} < reported {reported} (seed {seed})"
            start = model.applied_index() + 1
            if applied >= start:
                model.apply(
                    [Entry(1, i, EntryKind.NORMAL, kv_command(i)) for i in range(start, applied + 1)]
                )
            got = [(kv.key, kv.value, kv.revision, kv.version) for kv in sm.range(b"").items]
            want = [(kv.key, kv.value, kv.revision, kv.version) for kv in model.range(b"").items]
            assert got == want, f"state after kill {kill} differs from a replay (seed {seed})"
            assert sm.sessions.dump() == model.sessions.dump()
        finally:
            sm.close()
        stats["kills"] += 1
        stats["applied"] = applied
    return stats
