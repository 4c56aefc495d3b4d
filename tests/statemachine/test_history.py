"""Watch history in the KV machine: revisions, the window, restart and snapshot install."""

from __future__ import annotations

import os

from dengine._core import codec
from dengine.raft.types import ConfState, Entry, EntryKind
from dengine.statemachine import KVStateMachine, MemoryEngine, restore_snapshot, take_snapshot
from dengine.statemachine.history import DELETE, PUT, PrevKV
from dengine.storage.snapshot import SnapshotStore


def _e(index: int, data: bytes) -> Entry:
    return Entry(1, index, EntryKind.NORMAL, data)


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[list, int]] = []
        self.resets: list[tuple[int, int]] = []

    def on_events(self, events, applied_index):
        self.batches.append((list(events), applied_index))

    def on_reset(self, oldest, applied_index):
        self.resets.append((oldest, applied_index))


def test_events_carry_revision_version_and_previous_value(kv_factory):
    sm = kv_factory.open()
    rec = Recorder()
    sm.history.listeners.append(rec)
    sm.apply([_e(1, codec.encode_put(b"a", b"1")), _e(2, codec.encode_put(b"a", b"2"))])
    sm.apply([_e(3, b""), _e(4, codec.encode_delete(b"a")), _e(5, codec.encode_delete(b"a"))])
    sm.apply([_e(6, codec.encode_batch([(codec.OP_PUT, b"x", b"X"), (codec.OP_PUT, b"y", b"Y")]))])
    events, nxt = sm.history.read(1)
    assert nxt == 7
    assert [(e.type, e.key, e.value, e.revision, e.version) for e in events] == [
        (PUT, b"a", b"1", 1, 1), (PUT, b"a", b"2", 2, 2), (DELETE, b"a", b"", 4, 0),
        (PUT, b"x", b"X", 6, 1), (PUT, b"y", b"Y", 6, 1)]
    assert events[1].prev == PrevKV(b"1", 1, 1, 1)
    assert events[2].prev == PrevKV(b"2", 2, 1, 2)
    assert events[0].prev is None and events[0].create_revision == 1
    # listeners saw exactly the same events, batch by batch, after each write
    assert [[e.revision for e in b] for b, _ in rec.batches] == [[1, 2], [4], [6, 6]]
    assert [a for _, a in rec.batches] == [2, 5, 6]
    sm.close()


def test_window_compacts_alike_and_survives_restart(kv_factory):
    sm = kv_factory.open(history_revisions=5)
    for i in range(1, 13):
        sm.apply([_e(i, codec.encode_put(b"k%d" % (i % 3), b"v%d" % i))])
    assert sm.history.oldest_revision(sm.applied_index()) == 8
    events, _ = sm.history.read(1)
    assert [e.revision for e in events] == [8, 9, 10, 11, 12]
    sm = _reopen(kv_factory, sm, history_revisions=5)
    assert sm.history.oldest_revision(sm.applied_index()) == 8
    events, _ = sm.history.read(8)
    assert [e.revision for e in events] == [8, 9, 10, 11, 12]
    # a second machine fed the same entries holds byte-identical history
    other = KVStateMachine(MemoryEngine(), history_revisions=5)
    for i in range(1, 13):
        other.apply([_e(i, codec.encode_put(b"k%d" % (i % 3), b"v%d" % i))])
    assert other.engine.scan(b"h", b"i", 0) == sm.engine.scan(b"h", b"i", 0)
    sm.close()


def _reopen(kv_factory, sm, **options):
    if not kv_factory.durable:
        return sm
    sm.close()
    return kv_factory.open(**options)


def test_read_never_cuts_a_revision(kv_factory):
    sm = kv_factory.open()
    ops = [(codec.OP_PUT, b"b%d" % i, b"") for i in range(5)]
    sm.apply([_e(1, codec.encode_put(b"a", b"")), _e(2, codec.encode_batch(ops)),
              _e(3, codec.encode_put(b"c", b""))])
    events, nxt = sm.history.read(1, limit=2)
    assert [e.revision for e in events] == [1, 2, 2, 2, 2, 2] and nxt == 3
    events, nxt = sm.history.read(1, limit=2, match=lambda k: k.startswith(b"b3"))
    assert [e.key for e in events] == [b"b3"] and nxt == 3
    sm.close()


def test_history_moves_with_a_snapshot(kv_factory, tmp_path):
    sm = kv_factory.open(history_revisions=100)
    for i in range(1, 21):
        sm.apply([_e(i, codec.encode_put(b"k", b"%d" % i))])
    store = SnapshotStore(os.path.join(tmp_path, "snaps"))
    take_snapshot(sm, store, ConfState(voters=frozenset({1})))
    fresh = KVStateMachine(MemoryEngine(), history_revisions=100)
    rec = Recorder()
    fresh.history.listeners.append(rec)
    restore_snapshot(fresh, store.latest())
    assert rec.resets == [(1, 20)]
    events, _ = fresh.history.read(1)
    assert [e.value for e in events] == [b"%d" % i for i in range(1, 21)]
    sm.close()


def test_history_is_bounded_in_bytes_alike_and_across_restart(kv_factory):
    """A bulk load in big atomic batches keeps at most ``history_bytes`` of events (never a
    second copy of the data for ``history_revisions`` revisions); the bound is the same on
    every replica and after a restart, and the newest revision always stays."""
    value = b"v" * 1000

    def batch(i: int) -> Entry:
        return _e(i, codec.encode_batch([(codec.OP_PUT, b"k%d-%d" % (i, j), value)
                                         for j in range(10)]))

    sm = kv_factory.open(history_bytes=25_000)  # room for two 10-key revisions, not three
    for i in range(1, 9):
        sm.apply([batch(i)])
    kept = sm.engine.scan(b"h", b"i", 0)
    assert sum(len(v) for _k, v in kept) <= 25_000
    assert sm.history.oldest_revision(sm.applied_index()) == 7
    events, _ = sm.history.read(1)
    assert sorted({e.revision for e in events}) == [7, 8]
    sm = _reopen(kv_factory, sm, history_bytes=25_000)
    assert sm.history.oldest_revision(sm.applied_index()) == 7
    sm.apply([batch(9)])
    assert sm.history.oldest_revision(sm.applied_index()) == 8
    other = KVStateMachine(MemoryEngine(), history_bytes=25_000)
    for i in range(1, 10):
        other.apply([batch(i)])
    assert other.engine.scan(b"h", b"i", 0) == sm.engine.scan(b"h", b"i", 0)
    # one revision larger than the bound stays whole: a watcher just behind still gets it
    sm.history.max_bytes = 100
    sm.apply([batch(10)])
    events, _ = sm.history.read(1)
    assert {e.revision for e in events} == {10} and len(events) == 10
    sm.close()
