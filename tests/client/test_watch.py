"""Watch against real nodes in this process: replay, live events, progress, compaction,
resuming on another member, and the checker on every stream."""

from __future__ import annotations

import asyncio

import pytest

from dengine import errors as E
from dengine.client import Client
from dengine.testing.watch_checker import (
    WatchCheckError,
    WatchRecord,
    changes_from_history,
    check_watcher,
    histories_agree,
)


async def _collect(it, rec: WatchRecord, until_revision: int) -> None:
    async for u in it:
        rec.updates.append(u)
        if u.revision >= until_revision:
            return


async def _all_applied(rc, timeout: float = 5) -> None:
    """Wait until every member applied what the leader has: a watch may be served by any
    member, and a follower learns a commit up to a tick later (lazy commit), so its window
    can trail the leader's by a revision."""
    target = max(n.state_machine.applied_index() for n in rc.nodes.values())
    deadline = asyncio.get_running_loop().time() + timeout
    while any(n.state_machine.applied_index() < target for n in rc.nodes.values()):
        assert asyncio.get_running_loop().time() < deadline, "members did not catch up"
        await asyncio.sleep(0.01)


def _truth(rc):
    return histories_agree([changes_from_history(n.state_machine.history)
                            for n in rc.nodes.values()])


def test_replay_then_live_on_a_follower_with_previous_values(run_uvloop, real_cluster):
    async def go():
        async with real_cluster() as rc, Client(rc.endpoints, timeout=10) as c:
            first = await c.put(b"app/a", b"1")
            await c.put(b"other", b"x")
            await c.put(b"app/a", b"2")
            await c.delete(b"app/a")
            leader = await rc.leader_id()
            follower = next(rc.members[i] for i in rc.nodes if i != leader)
            rec = WatchRecord(b"app/", True, first)
            it = c.watch(b"app/", prefix=True, start_revision=first, prev_kv=True,
                         endpoint=follower)
            last = await c.write_batch(puts={b"app/b": b"3", b"app/c": b"4"})
            await asyncio.wait_for(_collect(it, rec, last), 10)
            await it.aclose()
            events = [e for u in rec.updates for e in u.events]
            assert [(e.type, e.key, e.value) for e in events] == [
                ("put", b"app/a", b"1"), ("put", b"app/a", b"2"), ("delete", b"app/a", b""),
                ("put", b"app/b", b"3"), ("put", b"app/c", b"4")]
            assert [e.prev_value for e in events] == [None, b"1", b"2", None, None]
            assert events[3].revision == events[4].revision == last
            assert {u.member for u in rec.updates} == {follower}
            assert check_watcher(_truth(rc), rec) == 5

    run_uvloop(go)


def test_progress_notifications_on_an_idle_stream(run_uvloop, real_cluster):
    async def go():
        async with real_cluster() as rc, Client(rc.endpoints, timeout=10) as c:
            rev = await c.put(b"k", b"v")
            it = c.watch(b"idle", start_revision=rev + 1, progress=True,
                         progress_interval_ms=50)
            u = await asyncio.wait_for(it.__anext__(), 5)
            assert u.events == () and u.revision >= rev
            await it.aclose()

    run_uvloop(go)


def test_a_start_older_than_the_window_is_compacted(run_uvloop, real_cluster):
    async def go():
        sections = {"statemachine": {"history_revisions": 5, "engine": "memory"}}
        async with real_cluster(**sections) as rc, Client(rc.endpoints, timeout=10) as c:
            for i in range(10):
                rev = await c.put(b"k", b"%d" % i)
            await _all_applied(rc)
            with pytest.raises(E.WatchCompacted) as info:
                async for _ in c.watch(b"k", start_revision=1):
                    pass
            assert info.value.compact_revision == rev - 4
            rec = WatchRecord(b"k", False, rev - 4)
            await asyncio.wait_for(_collect(c.watch(b"k", start_revision=rev - 4), rec, rev), 5)
            assert [e.value for u in rec.updates for e in u.events] == [b"5", b"6", b"7", b"8",
                                                                          b"9"]

    run_uvloop(go)


def test_resume_on_another_member_after_the_serving_one_stops(run_uvloop, real_cluster):
    async def go():
        async with real_cluster() as rc, Client(rc.endpoints, timeout=10) as c:
            start = await c.put(b"w/0", b"0")
            leader = await rc.leader_id()
            victim = next(i for i in rc.nodes if i != leader)
            rec = WatchRecord(b"w/", True, start)
            it = c.watch(b"w/", prefix=True, start_revision=start, endpoint=rc.members[victim],
                         backoff_s=0.05)

            async def write():
                last = 0
                for i in range(1, 60):
                    last = await c.put(b"w/%d" % (i % 7), b"%d" % i)
                    if i == 20:
                        await rc.nodes[victim].stop()
                return last

            reader = asyncio.ensure_future(_collect(it, rec, 1 << 62))
            last = await write()
            while not rec.updates or rec.updates[-1].revision < last:
                await asyncio.sleep(0.05)
            reader.cancel()
            members = {u.member for u in rec.updates}
            assert rc.members[victim] in members and len(members) == 2
            live = {i: n for i, n in rc.nodes.items() if i != victim}
            truth = histories_agree([changes_from_history(n.state_machine.history)
                                     for n in live.values()])
            assert check_watcher(truth, rec) == 60

    run_uvloop(go, timeout=60)


def test_the_checker_catches_a_gap_a_duplicate_and_a_stray_event():
    from dengine.client.watch import WatchEvent, WatchUpdate
    from dengine.testing.watch_checker import Change

    truth = [Change("put", b"k", b"%d" % i, i) for i in range(1, 6)]

    def rec(revs):
        r = WatchRecord(b"k", False, 1)
        r.updates = [WatchUpdate((WatchEvent("put", b"k", b"%d" % i, i, 1, 1),), i, "m")
                     for i in revs]
        return r

    assert check_watcher(truth, rec([1, 2, 3, 4, 5])) == 5
    for bad in ([1, 2, 4, 5], [1, 2, 2, 3], [1, 3, 2]):
        with pytest.raises(WatchCheckError):
            check_watcher(truth, rec(bad))
    stray = rec([1, 2])
    stray.updates[1] = WatchUpdate((WatchEvent("put", b"k", b"x", 2, 1, 1),), 2, "m")
    with pytest.raises(WatchCheckError):
        check_watcher(truth, stray)


def test_many_watches_on_one_stream(run_uvloop, real_cluster):
    import grpc

    from dengine.v1 import client_pb2 as pb
    from dengine.v1 import client_pb2_grpc as pbg

    async def go():
        async with real_cluster() as rc, Client(rc.endpoints, timeout=10) as c:
            rev = await c.put(b"m/a", b"0")
            requests: asyncio.Queue = asyncio.Queue()

            async def feed():
                while True:
                    yield await requests.get()

            async with grpc.aio.insecure_channel(rc.endpoints[1]) as ch:
                call = pbg.WatchStub(ch).WatchMany(feed())
                for wid, key, prefix in [(1, b"m/a", False), (2, b"m/", True), (3, b"m/b", False)]:
                    requests.put_nowait(pb.WatchManyRequest(watch_id=wid, create=pb.WatchRequest(
                        key=key, prefix=prefix, start_revision=rev + 1,
                        progress_interval_ms=600_000)))
                requests.put_nowait(pb.WatchManyRequest(watch_id=2, create=pb.WatchRequest(
                    key=b"x")))  # the id is in use: refused, the first watch 2 goes on
                created, refused = set(), []
                while len(created) < 3 or not refused:
                    r = await asyncio.wait_for(call.read(), 5)
                    if r.response.created:
                        created.add(r.watch_id)
                    elif r.response.error.code:
                        refused.append(r.watch_id)
                assert created == {1, 2, 3} and refused == [2]
                a = await c.put(b"m/a", b"1")
                got = {}
                while len(got) < 2:
                    r = await asyncio.wait_for(call.read(), 5)
                    got[r.watch_id] = [(e.kv.key, e.kv.revision) for e in r.response.events]
                assert got == {1: [(b"m/a", a)], 2: [(b"m/a", a)]}
                requests.put_nowait(pb.WatchManyRequest(watch_id=1, cancel=True))
                await asyncio.sleep(0.1)
                b = await c.put(b"m/a", b"2")
                r = await asyncio.wait_for(call.read(), 5)
                assert r.watch_id == 2 and r.response.events[0].kv.revision == b
                call.cancel()

    run_uvloop(go)
