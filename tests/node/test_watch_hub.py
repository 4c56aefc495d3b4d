"""The watch hub over a real KV machine: fan-out by group, a slow watcher cancelled (never
skipped), a snapshot install ending every stream so it resumes from history."""

from __future__ import annotations

import asyncio

from dengine._core import codec
from dengine.node import watch as W
from dengine.raft.types import Entry, EntryKind
from dengine.statemachine import KVStateMachine, MemoryEngine
from dengine.v1 import client_pb2 as pb


def _put(sm, key: bytes, value: bytes) -> int:
    i = sm.applied_index() + 1
    sm.apply([Entry(1, i, EntryKind.NORMAL, codec.encode_put(key, value))])
    return i


def _parse(r) -> pb.WatchResponse:
    return pb.WatchResponse.FromString(r) if isinstance(r, bytes) else r


def test_watchers_of_one_key_share_a_group_and_one_serialized_response():
    async def go():
        sm = KVStateMachine(MemoryEngine())
        hub = W.WatchHub(sm)
        streams = [hub.stream(pb.WatchRequest(key=b"a/", prefix=True)) for _ in range(50)]
        for s in streams:
            assert _parse(await s.__anext__()).created
        pending = [asyncio.ensure_future(s.__anext__()) for s in streams]
        await asyncio.sleep(0)
        assert len(hub.groups) == 1 and hub.watchers == 50
        rev = _put(sm, b"a/x", b"1")
        _put(sm, b"b", b"no")
        got = await asyncio.gather(*pending)
        assert all(g is got[0] for g in got)  # the very same bytes object for every watcher
        resp = _parse(got[0])
        assert [(e.kv.key, e.kv.revision) for e in resp.events] == [(b"a/x", rev)]
        for s in streams:
            await s.aclose()
        assert hub.groups == {} and hub._lengths == {}

    asyncio.run(go())


def test_a_watcher_that_falls_behind_is_cancelled_then_resumes_from_history(monkeypatch):
    monkeypatch.setattr(W, "GROUP_BUFFER_BATCHES", 8)

    async def go():
        sm = KVStateMachine(MemoryEngine(), history_revisions=1000)
        hub = W.WatchHub(sm)
        s = hub.stream(pb.WatchRequest(key=b"k", start_revision=1))
        assert _parse(await s.__anext__()).created
        first = asyncio.ensure_future(s.__anext__())
        await asyncio.sleep(0)
        revs = [_put(sm, b"k", b"first")]
        got = [_parse(await first)]
        revs += [_put(sm, b"k", b"%d" % i) for i in range(20)]
        while not got[-1].canceled:
            got.append(_parse(await s.__anext__()))
        delivered = [e.kv.revision for r in got for e in r.events]
        assert delivered == revs[: len(delivered)] and len(delivered) < 21
        last = got[-1]
        assert last.revision == delivered[-1] and last.compact_revision <= last.revision + 1
        again = hub.stream(pb.WatchRequest(key=b"k", start_revision=last.revision + 1))
        assert _parse(await again.__anext__()).created
        rest = _parse(await again.__anext__())
        assert [e.kv.revision for e in rest.events] == revs[len(delivered):]
        await again.aclose()

    asyncio.run(go())


def test_a_snapshot_install_ends_live_streams_with_their_position():
    async def go():
        sm = KVStateMachine(MemoryEngine())
        hub = W.WatchHub(sm)
        rev = _put(sm, b"k", b"1")
        s = hub.stream(pb.WatchRequest(key=b"k", start_revision=rev + 1))
        await s.__anext__()
        nxt = asyncio.ensure_future(s.__anext__())
        await asyncio.sleep(0)
        other = KVStateMachine(MemoryEngine())
        for i in range(5):
            _put(other, b"k", b"%d" % i)
        snap = other.snapshot()
        sm.restore(list(snap.chunks()))
        r = _parse(await nxt)
        assert r.canceled and r.revision == rev and r.compact_revision == 1

    asyncio.run(go())
