"""A seeded watch simulation: three replicas (real KV machines and watch hubs) apply one
committed log at their own pace (also while a stream is suspended mid-read), restart and
install each other's snapshots, while watchers follow them, fall behind tiny buffers, get
cancelled and reconnect to another replica with their last revision + 1. The watch checker
holds every stream to the committed changes: no gap, no duplicate, no reorder. A failure names
the seed (``DENGINE_WATCH_SIM_SEEDS=N`` runs more)."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from dengine._core import codec
from dengine.client.watch import WatchEvent, WatchUpdate
from dengine.node import watch as W
from dengine.raft.types import Entry, EntryKind
from dengine.statemachine import KVStateMachine, MemoryEngine
from dengine.statemachine import leases as L
from dengine.testing.watch_checker import (
    WatchCheckError,
    WatchRecord,
    changes_from_history,
    check_watcher,
)
from dengine.v1 import client_pb2 as pb

SEEDS = int(os.environ.get("DENGINE_WATCH_SIM_SEEDS", "6"))


def _log(rng: random.Random, n: int) -> list[Entry]:
    keys = [b"p/%d" % i for i in range(6)] + [b"q/0"]
    out = []
    for i in range(1, n + 1):
        r = rng.random()
        k = rng.choice(keys)
        if r < 0.5:
            data = codec.encode_put(k, b"%d" % i)
        elif r < 0.65:
            data = codec.encode_delete(k)
        elif r < 0.75:
            data = codec.encode_batch([(codec.OP_PUT, rng.choice(keys), b"b%d" % i),
                                       (codec.OP_DELETE, rng.choice(keys))])
        elif r < 0.8:
            data = L.encode_grant(1 + i % 3, 5)
        elif r < 0.9:
            data = L.encode_put(1 + i % 3, k, b"l%d" % i)
        elif r < 0.95:
            data = L.encode_revoke(1 + rng.randrange(3))
        else:
            data = b""  # an entry that changes nothing (a no-op, a barrier)
        out.append(Entry(1, i, EntryKind.NORMAL, data))
    return out


class Replica:
    def __init__(self) -> None:
        self.engine = MemoryEngine()
        self.open()

    def open(self) -> None:  # a (re)start on the same engine content
        self.sm = KVStateMachine(self.engine, history_revisions=10_000)
        self.hub = W.WatchHub(self.sm)
        self.gen = getattr(self, "gen", 0) + 1


class Watcher:
    def __init__(self, rec: WatchRecord, rng: random.Random) -> None:
        self.rec = rec
        self.rng = rng
        self.next_rev = rec.start_revision
        self.stream = None
        self.on: tuple[int, int] | None = None  # (replica, its generation)

    async def connect(self, i: int, r: Replica) -> None:
        req = pb.WatchRequest(key=self.rec.key, prefix=self.rec.prefix,
                              start_revision=self.next_rev, progress_interval_ms=20)
        self.stream = r.hub.stream(req)
        self.on = (i, r.gen)

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
        self.stream = None

    async def pull(self, member: str, meanwhile=None) -> None:
        if meanwhile is not None:  # runs at the stream's first suspension (an apply, say)
            asyncio.get_running_loop().call_soon(meanwhile)
        raw = await self.stream.__anext__()
        resp = pb.WatchResponse.FromString(raw) if isinstance(raw, bytes) else raw
        at = max(resp.revision, self.next_rev - 1)
        if resp.canceled:
            if resp.compact_revision > at + 1:
                raise WatchCheckError(f"compacted at {resp.compact_revision} past {at + 1}")
            self.next_rev = at + 1
            await self.close()
            return
        events = tuple(WatchEvent.from_proto(e) for e in resp.events)
        self.next_rev = max(self.next_rev, at + 1)
        self.rec.updates.append(WatchUpdate(events, self.next_rev - 1, member))


async def _simulate(seed: int) -> None:
    rng = random.Random(seed)
    log = _log(rng, 300)
    reps = [Replica() for _ in range(3)]
    watchers = []
    for _ in range(8):
        prefix = rng.random() < 0.6
        key = b"p/" if prefix else b"p/%d" % rng.randrange(6)
        watchers.append(Watcher(WatchRecord(key, prefix, 1 + rng.randrange(60)), rng))
    for _ in range(600):
        r_i = rng.randrange(3)
        r = reps[r_i]
        roll = rng.random()
        applied = r.sm.applied_index()
        if roll < 0.55 and applied < len(log):
            n = rng.randint(1, 6)
            r.sm.apply(log[applied : applied + n])
        elif roll < 0.58:  # restart: its streams die with it
            for w in watchers:
                if w.on and w.on[0] == r_i:
                    await w.close()
            r.sm.close()
            r.open()
        elif roll < 0.61:  # install the snapshot of a replica that is ahead
            ahead = max(reps, key=lambda x: x.sm.applied_index())
            if ahead is not r and ahead.sm.applied_index() > applied:
                snap = ahead.sm.snapshot()
                r.sm.restore(list(snap.chunks()))
                snap.close()
        else:
            w = rng.choice(watchers)
            if w.stream is None or w.on != (w.on[0], reps[w.on[0]].gen):
                await w.close()
                target = rng.randrange(3)
                await w.connect(target, reps[target])
            mine = reps[w.on[0]]

            def apply_some(r: Replica = mine) -> None:
                a = r.sm.applied_index()
                if a < len(log):
                    r.sm.apply(log[a : a + rng.randint(1, 4)])

            await w.pull(f"replica {w.on[0]}", apply_some if rng.random() < 0.5 else None)
    # drain: every replica catches up, every watcher reads to the end of the log
    for r in reps:
        while r.sm.applied_index() < len(log):
            a = r.sm.applied_index()
            r.sm.apply(log[a : a + 50])
    for w in watchers:
        while not w.rec.updates or w.rec.updates[-1].revision < len(log):
            if w.stream is None:
                target = rng.randrange(3)
                await w.connect(target, reps[target])
            await w.pull(f"replica {w.on[0]}")
        await w.close()
    truth = changes_from_history(reps[0].sm.history)
    for other in reps[1:]:
        assert changes_from_history(other.sm.history) == truth
    for i, w in enumerate(watchers):
        check_watcher(truth, w.rec, f"seed {seed} watcher {i}")


@pytest.mark.parametrize("seed", range(SEEDS))
def test_watch_streams_equal_the_committed_changes_under_faults(seed, monkeypatch):
    monkeypatch.setattr(W, "GROUP_BUFFER_BATCHES", 4)  # slow watchers fall behind often
    asyncio.run(_simulate(seed))
