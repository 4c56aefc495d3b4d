"""The ``watch`` workload: events per second delivered to many watchers of one prefix while
writes run.

``spec.watchers`` watchers (default 100) open a watch on one fresh prefix, spread round robin
over the cluster's members (any member serves a watch), on their own client; then
``spec.clients`` writers put ``spec.ops`` keys under that prefix. Each value starts with the
writer's ``perf_counter_ns`` at the start of its put, so every watcher times each event from
the start of the write to its arrival (one sample per event per watcher). The run ends when
every watcher has seen every write; throughput is events delivered per second over that time,
and the summary's extra fields give the writes per second and the watcher count.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from typing import Any

from dengine.bench.stats import LatencyStats, Summary

__all__ = ["run_watch_workload"]

_TS = struct.Struct("<q")


async def run_watch_workload(target: Any, spec: Any, *, progress: bool | None = None) -> Summary:
    """Run the watch workload on a :class:`~dengine.bench.targets.DengineTarget`."""
    from dengine.bench.workloads import Progress
    from dengine.client import Client

    if getattr(target, "client", None) is None or not hasattr(target, "endpoints"):
        raise ValueError("the watch workload runs against dengine's client (--target dengine)")
    writer = target.client
    prefix = b"watch-bench/%s/" % os.urandom(4).hex().encode()
    start = await writer.put(prefix[:-1], b"") + 1
    status = await writer.statuses(timeout=2.0)
    members = [a for a, st in status.items() if not isinstance(st, BaseException)]
    stats = LatencyStats()
    total = spec.ops * spec.watchers
    pad = os.urandom(max(0, spec.value_bytes - _TS.size))
    bar = Progress(f"{target.name} {spec.name}", total, progress)
    async with Client(target.endpoints, timeout=target.timeout,
                      pool_size=max(1, spec.connections)) as wc:
        ready = asyncio.Event()
        opened = [0]

        async def watcher(i: int) -> None:
            seen = 0
            counted = False
            clock = time.perf_counter_ns
            it = wc.watch(prefix, prefix=True, start_revision=start, progress=True,
                          progress_interval_ms=200, endpoint=members[i % len(members)])
            async for u in it:
                if not counted:  # the stream is open: its first response arrived
                    counted = True
                    opened[0] += 1
                    if opened[0] == spec.watchers:
                        ready.set()
                now = clock()
                for e in u.events:
                    stats.add(now - _TS.unpack_from(e.value)[0])
                seen += len(u.events)
                if seen >= spec.ops:
                    await it.aclose()
                    return

        tasks = [asyncio.ensure_future(watcher(i)) for i in range(spec.watchers)]
        try:
            await asyncio.wait_for(ready.wait(), 30)  # every stream is open (first progress)
            counter = iter(range(spec.ops))

            async def put_all() -> None:
                for n in counter:
                    t0 = time.perf_counter_ns()
                    try:
                        await writer.put(prefix + b"%08d" % n, _TS.pack(t0) + pad)
                    except Exception:  # noqa: BLE001 - counted; a benchmark keeps going
                        stats.errors += 1

            async def ticker() -> None:
                while True:
                    bar.draw(len(stats.samples))
                    await asyncio.sleep(0.2)

            tick = asyncio.ensure_future(ticker())
            t0 = time.perf_counter()
            await asyncio.gather(*(put_all() for _ in range(spec.clients)))
            writes_s = spec.ops / (time.perf_counter() - t0)
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
            elapsed = time.perf_counter() - t0
            tick.cancel()
        finally:
            for t in tasks:
                t.cancel()
    bar.draw(len(stats.samples), final=True)
    return stats.summary(spec.name, target.name, elapsed, watchers=spec.watchers,
                         writes=spec.ops, writes_per_s=round(writes_s, 1),
                         connections=spec.connections, clients=spec.clients,
                         value_bytes=spec.value_bytes)
