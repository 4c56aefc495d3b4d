"""Watchers on every member while the leader is killed (kill -9): each stream equals the
committed changes to its keys from its start revision, across reconnects, with no gap and no
duplicate (checked against the replicas' own watch histories, read from disk afterwards)."""

from __future__ import annotations

import asyncio
import signal

from dengine.statemachine import open_kv
from dengine.testing.watch_checker import (
    WatchRecord,
    changes_from_history,
    check_all,
    histories_agree,
)


async def _follow(c, rec: WatchRecord, endpoint: str) -> None:
    async for u in c.watch(rec.key, prefix=rec.prefix, start_revision=rec.start_revision,
                           endpoint=endpoint, backoff_s=0.05, progress=True,
                           progress_interval_ms=100):
        rec.updates.append(u)


def test_watchers_see_every_committed_change_once_across_a_leader_kill(cluster_factory, run):
    lc = cluster_factory(3)

    async def go():
        async with lc.client() as c, lc.client() as wc:
            old = await lc.wait_leader(c)
            start = await c.put(b"w/start", b"0")
            eps = {i: n.address for i, n in lc.nodes.items()}
            specs = [(b"w/", True, old.id), (b"w/", True, old.id), (b"w/k3", False, old.id)]
            specs += [(b"w/", True, i) for i in eps if i != old.id]
            specs += [(b"w/k1", False, i) for i in eps if i != old.id]
            records = [WatchRecord(k, p, start) for k, p, _ in specs]
            tasks = [asyncio.ensure_future(_follow(wc, r, eps[i]))
                     for r, (_k, _p, i) in zip(records, specs, strict=True)]

            async def writer(lane: int, n: int) -> int:
                last = 0
                for i in range(n):
                    try:
                        last = max(last, await c.put(b"w/k%d" % ((lane + i) % 5),
                                                     b"%d-%d" % (lane, i)))
                    except Exception:  # noqa: BLE001 - an outcome unknown in the failover
                        pass
                    if lane == 0 and i == 40:
                        lc.nodes[old.id].kill()
                return last

            lasts = await asyncio.gather(*(writer(lane, 120) for lane in range(3)))
            final = max(lasts)
            for _ in range(400):
                if all(r.updates and r.updates[-1].revision >= final for r in records):
                    break
                await asyncio.sleep(0.05)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            assert all(r.updates and r.updates[-1].revision >= final for r in records), \
                [r.updates[-1].revision if r.updates else None for r in records]
            moved = [r for r, s in zip(records, specs, strict=True) if s[2] == old.id]
            assert all(len({u.member for u in r.updates}) >= 2 for r in moved)
            return records

    records = run(go)
    for n in lc.nodes.values():
        n.kill(signal.SIGTERM)
    histories = []
    for n in lc.nodes.values():
        sm = open_kv("rocksdb", str(n.data_dir / "sm"))
        try:
            histories.append(changes_from_history(sm.history))
        finally:
            sm.close()
    truth = histories_agree(histories)
    assert check_all(truth, records) > 1000
