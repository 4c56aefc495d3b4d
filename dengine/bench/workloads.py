"""The benchmark workloads and the loop that runs one against a target.

Theory of operation
-------------------
A workload is a :class:`WorkloadSpec`: how many operations, how many concurrent clients share
how many connections, and what each operation is (a put, a get at some consistency, or a mix).
:func:`run_workload` first writes the keys the reads will ask for (not timed), runs a short
warm-up, then starts ``clients`` tasks that take operation numbers from one shared counter until
``ops`` are done, each timing its own calls with ``perf_counter_ns``. A failed call counts as an
error and is not timed; a read of a missing key counts as a miss. Keys are ``key_bytes`` long
(decimal, zero-padded), values ``value_bytes`` of random bytes.

Every workload sends its operations to the leader, except the ``-spread`` ones
(``spread=True``): their reads go to every member (the target opens connections to all of
them), a follower answering a serializable read from its own state and a linearizable one
after a ReadIndex round with the leader. Each is the same as the leader-only workload whose
name it extends (:func:`leader_only_of`), so the pair, run together, says whether three
members serve more reads than one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from dengine.bench.stats import LatencyStats, Summary

__all__ = ["WORKLOADS", "WorkloadSpec", "Target", "run_workload", "make_key", "Progress",
           "leader_only_of"]


class Target(Protocol):
    """What a workload talks to (see :mod:`dengine.bench.targets`)."""

    name: str

    async def open(self, connections: int) -> None:
        """``connections`` to the leader; a target that can spread reads also takes
        ``spread=True``: connections to every member, reads served where they land."""

    async def put(self, slot: int, key: bytes, value: bytes) -> None: ...

    async def get(self, slot: int, key: bytes, consistency: str) -> bool: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """One workload; ``read_ratio`` 0 is all writes, 1 all reads."""

    name: str
    connections: int
    clients: int
    read_ratio: float
    consistency: str = "linearizable"
    ops: int = 10_000
    key_bytes: int = 8
    value_bytes: int = 256
    key_space: int = 10_000
    warmup_ops: int = 200
    seed: int = 1
    #: Watchers of the written prefix (the ``watch`` workload; 0: none).
    watchers: int = 0
    #: Reads go to every member, not only the leader (the ``-spread`` workloads).
    spread: bool = False

    def with_(self, **changes: Any) -> WorkloadSpec:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


WORKLOADS: dict[str, WorkloadSpec] = {
    "write-single": WorkloadSpec("write-single", 1, 1, 0.0),
    "write-concurrent": WorkloadSpec("write-concurrent", 10, 100, 0.0),
    "read-linearizable": WorkloadSpec("read-linearizable", 10, 100, 1.0, "linearizable"),
    "read-linearizable-spread": WorkloadSpec("read-linearizable-spread", 10, 100, 1.0,
                                             "linearizable", spread=True),
    "read-lease": WorkloadSpec("read-lease", 10, 100, 1.0, "lease"),
    "read-serializable": WorkloadSpec("read-serializable", 10, 100, 1.0, "serializable"),
    "read-serializable-spread": WorkloadSpec("read-serializable-spread", 10, 100, 1.0,
                                             "serializable", spread=True),
    "mixed": WorkloadSpec("mixed", 10, 100, 0.9, "linearizable"),
    # Only when named: it needs dengine's watch (dengine.bench.watch_workload).
    "watch": WorkloadSpec("watch", 10, 10, 0.0, ops=2000, watchers=100),
}


def leader_only_of(name: str) -> str | None:
    """The leader-only workload a ``-spread`` workload is measured against (None for any other
    name)."""
    base = name.removesuffix("-spread")
    return base if base != name and base in WORKLOADS else None


def make_key(i: int, key_bytes: int) -> bytes:
    """Key number ``i`` as ``key_bytes`` zero-padded decimal digits (wrapping if too long)."""
    return str(i % 10**key_bytes).zfill(key_bytes).encode()


class Progress:
    """A one-line progress bar on stderr, redrawn a few times a second (off when not a tty)."""

    def __init__(self, label: str, total: int, enabled: bool | None = None) -> None:
        self.label = label
        self.total = total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._start = time.perf_counter()

    def draw(self, done: int, final: bool = False) -> None:
        if not self.enabled:
            return
        width = 30
        frac = min(1.0, done / self.total) if self.total else 1.0
        bar = "#" * int(frac * width)
        rate = done / max(time.perf_counter() - self._start, 1e-9)
        end = "\n" if final else ""
        sys.stderr.write(f"\r{self.label:<28} [{bar:<{width}}] {done:>7}/{self.total} "
                         f"{rate:>9,.0f} ops/s{end}")
        sys.stderr.flush()


async def _preload(target: Target, spec: WorkloadSpec, value: bytes) -> None:
    """Write every key a read may ask for (bounded concurrency; not timed)."""
    keys = [make_key(i, spec.key_bytes) for i in range(spec.key_space)]
    width = max(1, min(spec.clients, 100))

    async def writer(w: int) -> None:
        for i in range(w, len(keys), width):
            await target.put(w, keys[i], value)

    await asyncio.gather(*(writer(w) for w in range(width)))


async def run_workload(
    target: Target,
    spec: WorkloadSpec,
    *,
    progress: bool | None = None,
    preload: bool = True,
    label: str | None = None,
    cpu: Callable[[], dict[str, float]] | None = None,
) -> Summary:
    """Run ``spec`` against an opened ``target``; returns its summary. ``cpu`` returns CPU
    seconds used so far by name (e.g. servers, client): read around the timed part, its
    deltas go in the summary as ``cpu_us_per_op``."""
    if spec.watchers:
        from dengine.bench.watch_workload import run_watch_workload

        return await run_watch_workload(target, spec, progress=progress)
    rng = random.Random(spec.seed)
    value = os.urandom(spec.value_bytes)
    if spec.read_ratio > 0 and preload:
        await _preload(target, spec, value)
    n_keys = spec.key_space
    kb = spec.key_bytes
    keys = [make_key(i, kb) for i in range(n_keys)]
    ratio = spec.read_ratio
    consistency = spec.consistency
    # Which operations read, decided up front so the timed loop draws no random numbers.
    n_plan = max(spec.ops, spec.warmup_ops, 1)
    plan = [rng.random() < ratio for _ in range(n_plan)] if 0 < ratio < 1 else None
    picks = [rng.randrange(n_keys) for _ in range(min(n_plan, 1 << 16))]
    stats = LatencyStats()
    counter = iter(range(spec.ops))
    bar = Progress(label or f"{target.name} {spec.name}", spec.ops, progress)

    def op_for(i: int) -> Callable[[int], Any]:
        reads = plan[i] if plan is not None else ratio >= 1
        key = keys[picks[i % len(picks)]] if reads else keys[i % n_keys]
        if reads:
            return lambda slot: target.get(slot, key, consistency)
        return lambda slot: target.put(slot, key, value)

    async def warm(w: int) -> None:
        for i in range(w, spec.warmup_ops, spec.clients):
            try:
                await op_for(i)(w)
            except Exception:  # noqa: BLE001 - warm-up errors show up in the timed run
                pass

    async def client(w: int) -> None:
        clock = time.perf_counter_ns
        for i in counter:
            call = op_for(i)(w)
            t0 = clock()
            try:
                found = await call
            except Exception:  # noqa: BLE001 - counted; a benchmark keeps going
                stats.errors += 1
                continue
            stats.add(clock() - t0)
            if found is False:
                stats.misses += 1

    async def ticker() -> None:
        while True:
            bar.draw(len(stats.samples) + stats.errors)
            await asyncio.sleep(0.2)

    await asyncio.gather(*(warm(w) for w in range(spec.clients)))
    tick = asyncio.ensure_future(ticker())
    # A target's own counters (e.g. the client's stream messages), as deltas of the timed part.
    counters = getattr(target, "counters", None)
    count0 = counters() if counters is not None else {}
    cpu0 = cpu() if cpu is not None else {}
    start = time.perf_counter()
    try:
        await asyncio.gather(*(client(w) for w in range(spec.clients)))
    finally:
        elapsed = time.perf_counter() - start
        tick.cancel()
    done = max(1, len(stats.samples) + stats.errors)
    cpu_per_op = {k: round(1e6 * (v - cpu0.get(k, 0.0)) / done, 1)
                  for k, v in (cpu() if cpu is not None else {}).items()}
    counted = {k: v - count0.get(k, 0) for k, v in (counters() if counters else {}).items()}
    bar.draw(len(stats.samples) + stats.errors, final=True)
    return stats.summary(spec.name, target.name, elapsed, connections=spec.connections,
                         clients=spec.clients, consistency=consistency if ratio else None,
                         read_ratio=ratio, key_bytes=kb, value_bytes=spec.value_bytes,
                         **({"cpu_us_per_op": cpu_per_op} if cpu_per_op else {}),
                         **({"spread": True} if spec.spread else {}),
                         **({"client_counters": counted} if counted else {}))
