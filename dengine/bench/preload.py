"""``dengine bench --preload N``: the same workloads on an empty cluster and at N keys.

Theory of operation. The selected workloads run once on the cluster as it is (empty, for a
cluster the benchmark started), then N keys are written in atomic batches (``write_batch`` of
``BATCH_KEYS`` keys of distinct random values, a few batches in flight; untimed for the table,
its rate is reported), then the same workloads run again. The table gives, per workload, throughput and p50/p99 latency
before and after, and their ratios: a cost that grows with the data (a snapshot that copies
everything, a scan in the write path) shows as a ratio well below 1 for throughput. Both runs
happen in one process on one cluster, so a ratio compares like with like; on a loaded machine
the noise of each number still applies to the ratio (run it more than once).

With ``--settle`` the workloads run a third time, after :func:`settle` brought every member
to a steady state (its store flushed and compacted, nothing owed): the rows right after the
load and the settled rows are both printed.

Preloaded keys are ``p`` + ``key_bytes - 1`` digits, apart from the workloads' keys.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dengine.bench.stats import Summary
from dengine.bench.workloads import Progress
from dengine.errors import DengineError, NotLeader

__all__ = ["BATCH_KEYS", "preload_keys", "comparison_rows", "settle", "cluster_cpu",
           "regain_leadership"]

BATCH_KEYS = 1000
IN_FLIGHT = 4
IDLE_S = 3.0


async def preload_keys(target: Any, n: int, *, key_bytes: int = 16, value_bytes: int = 256,
                       progress: bool | None = None,
                       regain: Callable[[], Awaitable[None]] | None = None) -> float:
    """Write ``n`` keys in batches; returns the seconds it took. ``regain``, when given, is
    awaited after a NotLeader before the batch is tried again (the embedded cluster writes
    through its in-process node only: see :func:`regain_leadership`)."""
    if not hasattr(target, "put_many"):
        raise ValueError(f"--preload needs a dengine target, not {target.name}")
    await target.open(IN_FLIGHT)
    regaining = asyncio.Lock()  # one transfer at a time for the IN_FLIGHT workers
    digits = max(1, key_bytes - 1)
    bar = Progress(f"{target.name} preload", n, progress)
    done = 0
    starts = iter(range(0, n, BATCH_KEYS))
    t0 = time.perf_counter()

    async def worker(slot: int) -> None:
        nonlocal done
        for lo in starts:
            hi = min(n, lo + BATCH_KEYS)
            # Distinct random values, as real data: nothing for compression to fold away.
            blob = os.urandom(value_bytes * (hi - lo))
            pairs = [(b"p" + str(i).zfill(digits).encode(),
                      blob[(i - lo) * value_bytes:(i - lo + 1) * value_bytes])
                     for i in range(lo, hi)]
            for attempt in range(5):
                try:
                    await target.put_many(slot, pairs)
                    break
                except NotLeader:
                    if attempt == 4:
                        raise
                    if regain is not None:
                        async with regaining:
                            await regain()
                    else:
                        await asyncio.sleep(0.2)
                except Exception:  # noqa: BLE001 - a leader change: retry the batch
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.2)
            done += hi - lo
            bar.draw(done)

    try:
        await asyncio.gather(*(worker(s) for s in range(IN_FLIGHT)))
    finally:
        await target.close()
    bar.draw(done, final=True)
    return time.perf_counter() - t0


async def regain_leadership(node: Any, endpoints: list[str], timeout: float = 60.0) -> None:
    """Hand the leadership back to ``node`` (in this process) if another member took it, as
    :func:`dengine.bench.local.embedded_cluster` did at the start; a batch written meanwhile
    may land twice, which a load of fixed keys and values does not notice."""
    if node.is_leader:
        return
    from dengine.client import Client

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with Client(endpoints, timeout=timeout) as client:
        while not node.is_leader:
            if loop.time() > deadline:
                raise TimeoutError(f"node {node.node_id} did not get the leadership back")
            try:
                await client.transfer_leader(node.node_id, timeout=10)
            except DengineError:  # an election under way: ask again
                pass
            for _ in range(40):
                if node.is_leader:
                    break
                await asyncio.sleep(0.05)


async def settle(target: Any, endpoints: list[str], limit_s: float = 300.0) -> dict | None:
    """Steady state after the bulk load, on every member: ask each member in turn to flush
    and compact its state machine store (CompactStorage, what an operator runs after a bulk
    load, as etcd's defragment), then wait until no member reports a flush or compaction
    running or owed (Status) for ``IDLE_S`` in a row; at most ``limit_s`` in all.

    Why more than waiting: a load leaves each member's RocksDB with level-0 files below the
    compaction trigger and a part-full memtable; nothing is owed yet, so waiting returns at
    once, and the next ~15 MB of writes (10,000 puts) trigger the compaction of everything the
    load left in level 0, on every member at once, inside the timed run (an empty cluster's
    run has none). Returns the seconds taken per step, or None for a target that is not the
    embedded cluster (whose members the benchmark started and may compact)."""
    if getattr(target, "node", None) is None:
        return None
    from dengine.client import Client

    t0 = time.perf_counter()
    out: dict[str, Any] = {"compact_s": {}, "wait_s": 0.0}
    async with Client(endpoints, timeout=limit_s) as client:
        for ep in endpoints:  # one at a time: the machine is shared by all of them
            left = max(1.0, limit_s - (time.perf_counter() - t0))
            out["compact_s"][ep] = round(await client.compact_storage(ep, timeout=left), 2)
        t1 = time.perf_counter()
        idle_since = None
        while time.perf_counter() - t0 < limit_s:
            now = time.perf_counter()
            answers = await client.statuses(timeout=5.0)
            busy = [a for a in answers.values() if isinstance(a, Exception)
                    or a.compaction_pending_bytes or a.compactions_running]
            if busy:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= IDLE_S:
                break
            await asyncio.sleep(0.25)
        out["wait_s"] = round(time.perf_counter() - t1, 2)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def cluster_cpu() -> dict[str, float]:
    """CPU seconds so far of the embedded cluster: this process (node 1 and the clients) and
    the node processes it started (its children). Per operation, CPU is far less disturbed
    than throughput by other work on a shared machine, and it counts RocksDB's background
    flushes and compactions on every member."""
    from dengine.bench.compare import cpu_seconds

    me = os.getpid()
    kids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == me:
                        kids.append(int(name))
            except (OSError, IndexError, ValueError):
                pass
    got = cpu_seconds(kids)
    return {"cluster": got["servers"] + got["client"]}


def _cpu_per_op(d: dict) -> float:
    return float(d.get("extra", {}).get("cpu_us_per_op", {}).get("cluster", float("nan")))


def comparison_rows(before: list[Summary], after: list[Summary], n: int) -> list[str]:
    """A plain-text table: each workload's throughput, latency and (when measured) cluster
    CPU per operation, empty vs at ``n`` keys."""
    head = (f"{'workload':<20} {'ops/s empty':>12} {f'ops/s @{n:,}':>14} {'ratio':>6} "
            f"{'p50 ms empty':>13} {f'p50 @{n:,}':>12} {'p99 ms empty':>13} {f'p99 @{n:,}':>12} "
            f"{'CPU us/op empty':>16} {f'@{n:,}':>10}")
    rows = [head]
    for b, a in zip(before, after, strict=True):
        db, da = b.to_dict(), a.to_dict()
        ratio = da["throughput"] / db["throughput"] if db["throughput"] else float("nan")
        rows.append(f"{db['workload']:<20} {db['throughput']:>12,.0f} {da['throughput']:>14,.0f} "
                    f"{ratio:>6.2f} {db['p50_ms']:>13.2f} {da['p50_ms']:>12.2f} "
                    f"{db['p99_ms']:>13.2f} {da['p99_ms']:>12.2f} "
                    f"{_cpu_per_op(db):>16,.0f} {_cpu_per_op(da):>10,.0f}")
    return rows
