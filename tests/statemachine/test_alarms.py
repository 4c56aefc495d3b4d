"""Alarms in the replicated state: applied alike, durable, moved with a snapshot."""

from __future__ import annotations

import os

from dengine._core import codec
from dengine.errors import DecodeError
from dengine.raft.types import ConfState, Entry, EntryKind
from dengine.statemachine import KVStateMachine, MemoryEngine, restore_snapshot, take_snapshot
from dengine.statemachine.alarms import encode_alarm
from dengine.storage.snapshot import SnapshotStore


def _e(index: int, data: bytes) -> Entry:
    return Entry(1, index, EntryKind.NORMAL, data)


def test_raise_clear_and_restart(kv_factory):
    sm = kv_factory.open()
    out = sm.apply([_e(1, encode_alarm(True, 2)), _e(2, codec.encode_put(b"k", b"v")),
                    _e(3, encode_alarm(True, 3))])
    assert out[0] == {2: "NOSPACE"} and out[2] == {2: "NOSPACE", 3: "NOSPACE"}
    if kv_factory.durable:
        sm.close()
        sm = kv_factory.open()
    assert sm.alarms.active() == {2: "NOSPACE", 3: "NOSPACE"}
    assert sm.apply([_e(4, encode_alarm(False, 3))]) == [{2: "NOSPACE"}]
    assert sm.apply([_e(5, encode_alarm(False, 0))]) == [{}]  # 0: every member
    if kv_factory.durable:
        sm.close()
        sm = kv_factory.open()
    assert sm.alarms.active() == {}
    assert sm.get(b"k").value == b"v"
    sm.close()


def test_malformed_alarm_entries_change_nothing(kv_factory):
    sm = kv_factory.open()
    bad = [encode_alarm(True, 2)[:-1], encode_alarm(True, 0), encode_alarm(True, 2, alarm=9),
           b"\x60\x07" + bytes(25)]
    out = sm.apply([_e(i + 1, d) for i, d in enumerate(bad)])
    assert all(isinstance(r, DecodeError) for r in out)
    assert sm.alarms.active() == {}
    sm.close()


def test_alarms_move_with_a_snapshot(kv_factory, tmp_path):
    sm = kv_factory.open()
    sm.apply([_e(1, encode_alarm(True, 5))])
    store = SnapshotStore(os.path.join(tmp_path, "snaps"))
    take_snapshot(sm, store, ConfState(voters=frozenset({1})))
    fresh = KVStateMachine(MemoryEngine())
    fresh.apply([_e(1, encode_alarm(True, 7))])
    restore_snapshot(fresh, store.latest())
    assert fresh.alarms.active() == {5: "NOSPACE"}
    sm.close()
