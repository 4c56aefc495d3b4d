"""A/B of the ways dengine's client can spread reads, alternating within one run against one
3-process cluster: leader-only, ``spread_reads`` (by caller), the former read-by-read rotation,
and callers pinned with ``endpoint=``. Prints ops/s, the ratio to the round's leader-only run
and requests per Batch stream message.

    PYTHONPATH=$PWD python benches/spread_ab.py --rounds 3 --reads 10000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from dengine.bench.local import dengine_processes
from dengine.client import Client

CLIENTS = 100


class ReadByRead(Client):
    """The former ``spread_reads``: every read to the next member in turn."""

    def _reader(self) -> str:
        addrs = self._read_addresses()
        self._next_reader = (self._next_reader + 1) % len(addrs)
        return addrs[self._next_reader]


async def one_run(endpoints: list[str], mode: str, consistency: str, reads: int
                  ) -> tuple[float, float]:
    spread = mode != "leader-only"
    cls = ReadByRead if mode == "read-by-read" else Client
    pool = 4 if spread else 10  # 10 connections: 4 per member when spread (as the bench)
    async with cls(endpoints, pool_size=pool, timeout=10,
                   spread_reads=mode in ("by-caller", "read-by-read")) as c:
        await c.put(b"k", b"v" * 256)
        await c.status()
        kw: dict[str, Any] = {"consistency": consistency}

        async def caller(i: int, n: int) -> None:
            pin = {"endpoint": endpoints[i % len(endpoints)]} if mode == "pinned" else {}
            for _ in range(n):
                await c.get(b"k", **kw, **pin)

        await asyncio.gather(*(caller(i, 5) for i in range(CLIENTS)))  # warm up
        m0, r0 = c.stats.messages_sent, c.stats.requests_sent
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(i, reads // CLIENTS) for i in range(CLIENTS)))
        elapsed = time.perf_counter() - t0
        per_msg = (c.stats.requests_sent - r0) / max(1, c.stats.messages_sent - m0)
        return reads / elapsed, per_msg


async def main(args: argparse.Namespace) -> None:
    modes = ["leader-only", "by-caller", "read-by-read", "pinned"]
    with tempfile.TemporaryDirectory() as tmp:
        async with dengine_processes(Path(tmp) / "dengine") as lc:
            for consistency in ("serializable", "linearizable"):
                ratios: dict[str, list[float]] = {m: [] for m in modes[1:]}
                for rnd in range(args.rounds):
                    order = modes[rnd % len(modes):] + modes[:rnd % len(modes)]
                    got = {m: await one_run(lc.endpoints, m, consistency, args.reads)
                           for m in order}
                    base = got["leader-only"][0]
                    line = " ".join(f"{m} {ops:,.0f}/s ({ops / base:.2f}x, {pm:.1f}/msg)"
                                    for m, (ops, pm) in got.items())
                    print(f"{consistency} round {rnd + 1}: {line}", flush=True)
                    for m in modes[1:]:
                        ratios[m].append(got[m][0] / base)
                print(f"{consistency} medians vs leader-only: " + ", ".join(
                    f"{m} {statistics.median(r):.2f}x" for m, r in ratios.items()), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reads", type=int, default=10000)
    asyncio.run(main(ap.parse_args()))
