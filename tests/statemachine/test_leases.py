"""Leases in the KV machine: grant, attach, detach, revoke deleting its keys in one revision,
restart, snapshots, malformed commands."""

from __future__ import annotations

import pytest

from dengine._core import codec
from dengine.errors import DecodeError, InvalidArgument, LeaseNotFound, SessionExpired
from dengine.raft.types import Entry, EntryKind
from dengine.statemachine import KVStateMachine, MemoryEngine
from dengine.statemachine import leases as L
from dengine.statemachine.history import DELETE
from dengine.statemachine.sessions import encode_register


def _apply(sm, *payloads):
    i = sm.applied_index()
    return sm.apply([Entry(1, i + n + 1, EntryKind.NORMAL, p) for n, p in enumerate(payloads)])


def test_revoke_deletes_exactly_the_attached_keys_at_one_revision(kv_factory):
    sm = kv_factory.open()
    _apply(sm, L.encode_grant(7, 10), L.encode_put(7, b"a", b"1"), L.encode_put(7, b"b", b"2"),
           L.encode_put(7, b"c", b"3"), codec.encode_put(b"c", b"detached"),
           codec.encode_put(b"free", b"x"), L.encode_put(7, b"d", b"4"), codec.encode_delete(b"d"))
    assert sm.get(b"a").value == b"1" and sm.leases.attached(7) == [b"a", b"b"]
    events, _ = sm.history.read(1)
    assert [e.lease for e in events if e.key == b"a"] == [7]
    (r,) = _apply(sm, L.encode_revoke(7, expired=True))
    rev = sm.applied_index()
    assert r.ok and r.revision == rev
    assert sm.get(b"a") is None and sm.get(b"b") is None
    assert sm.get(b"c").value == b"detached" and sm.get(b"free").value == b"x"
    events, _ = sm.history.read(rev)
    assert [(e.type, e.key, e.revision) for e in events] == [(DELETE, b"a", rev),
                                                            (DELETE, b"b", rev)]
    (again,) = _apply(sm, L.encode_revoke(7))
    assert isinstance(again, LeaseNotFound)
    (put,) = _apply(sm, L.encode_put(7, b"z", b"z"))
    assert isinstance(put, LeaseNotFound) and sm.get(b"z") is None
    sm.close()


def test_leases_survive_restart_and_move_with_a_snapshot(kv_factory):
    sm = kv_factory.open()
    _apply(sm, L.encode_grant(1, 5), L.encode_grant(2, 60), L.encode_put(2, b"k", b"v"))
    if kv_factory.durable:
        sm.close()
        sm = kv_factory.open()
    assert sm.leases.ttl == {1: 5, 2: 60} and sm.leases.attached(2) == [b"k"]
    fresh = KVStateMachine(MemoryEngine())
    snap = sm.snapshot()
    fresh.restore(list(snap.chunks()))
    snap.close()
    assert fresh.leases.ttl == {1: 5, 2: 60} and fresh.leases.attached(2) == [b"k"]
    _apply(fresh, L.encode_revoke(2))
    assert fresh.get(b"k") is None
    sm.close()


def test_a_grant_twice_and_bad_commands_are_results_not_crashes():
    sm = KVStateMachine(MemoryEngine())
    r = _apply(sm, L.encode_grant(3, 5), L.encode_grant(3, 5), bytes([L.OP_GRANT, 1, 2]),
               bytes([L.OP_PUT]) + b"\x00" * 8 + codec.encode_delete(b"x"), bytes([0x4E]))
    assert r[0].ok and isinstance(r[1], InvalidArgument)
    assert all(isinstance(x, DecodeError) for x in r[2:])
    with pytest.raises(InvalidArgument):
        L.encode_grant(0, 5)
    with pytest.raises(InvalidArgument):
        L.encode_grant(1, 0)


def test_a_lease_write_with_a_session_applies_once():
    sm = KVStateMachine(MemoryEngine())
    put = L.encode_session(2 * 256, 1, L.encode_put(4, b"k", b"v"))
    r = _apply(sm, L.encode_grant(4, 5), encode_register(), put, put)
    assert r[2] == r[3] and sm.get(b"k").version == 1


def test_a_lease_write_on_an_unknown_session_is_refused_unapplied():
    sm = KVStateMachine(MemoryEngine())
    r = _apply(sm, L.encode_grant(4, 5), L.encode_session(9, 1, L.encode_put(4, b"k", b"v")))
    assert isinstance(r[1], SessionExpired) and sm.get(b"k") is None
