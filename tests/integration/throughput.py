"""First look at write throughput against a real 3-node cluster (a script, not a test).

Starts three ``dengine serve`` processes on loopback (the default rocksdb storage, the
integration suite's short timeouts), then measures for a few seconds each:

* one writer doing sequential puts;
* 100 concurrent writers sharing one client (batch stream, the default);
* the same 100 writers with unary calls only (``use_stream=False``), for the ratio.

Run: ``PYTHONPATH=. python tests/integration/throughput.py [--seconds 5] [--value-bytes 100]``.
Every process it starts is killed on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import LocalCluster  # noqa: E402

from dengine.client import Client  # noqa: E402


async def writers(c: Client, n: int, seconds: float, value: bytes) -> tuple[int, float]:
    """``n`` writers doing sequential puts for ``seconds``; returns (acknowledged, elapsed)."""
    stop = time.monotonic() + seconds
    done = 0

    async def one(w: int) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < stop:
            await c.put(f"tp/{w}/{i}", value)
            i += 1
            done += 1

    t0 = time.monotonic()
    await asyncio.gather(*(one(w) for w in range(n)))
    return done, time.monotonic() - t0


async def main(seconds: float, value_bytes: int) -> None:
    value = b"x" * value_bytes
    with tempfile.TemporaryDirectory() as tmp:
        lc = LocalCluster(
            Path(tmp), 3, cluster_id="throughput", observability={"log_level": "warning"}
        )
        lc.start()
        try:
            async with lc.client() as probe:
                leader = await lc.wait_leader(probe)
            print(
                f"3 nodes up, leader node {leader.id}; {value_bytes}-byte values, "
                f"{seconds:g}s per run"
            )
            rows = []
            for label, n, stream in (
                ("1 sequential writer", 1, True),
                ("100 concurrent writers, batch stream", 100, True),
                ("100 concurrent writers, unary calls", 100, False),
            ):
                async with Client(lc.endpoints, timeout=30, use_stream=stream) as c:
                    await c.put(b"warm", b"up")
                    sent0 = c.stats.messages_sent
                    cpu0 = time.process_time()
                    done, elapsed = await writers(c, n, seconds, value)
                    cpu = (time.process_time() - cpu0) / elapsed
                    msgs = c.stats.messages_sent - sent0 if stream else c.unary_calls
                rate = done / elapsed
                rows.append((label, rate))
                print(
                    f"{label:40s} {rate:8.0f} writes/s  ({done} writes, {msgs} gRPC messages, "
                    f"client process busy {cpu:.0%} of one core)"
                )
            base = rows[0][1]
            for label, rate in rows[1:]:
                print(f"{label:40s} {rate / base:6.1f}x the sequential writer")
        finally:
            lc.kill_all()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--value-bytes", type=int, default=100)
    a = ap.parse_args()
    asyncio.run(main(a.seconds, a.value_bytes))
