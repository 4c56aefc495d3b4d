"""``dengine bench --preload N --compare-scan``: a full scan by ``dengine scan`` against one
by the Python client, on the same data, in the same run.

Theory of operation. Both run as their own process against the cluster's endpoints, one after
the other, timed from start to exit (interpreter start included, as a user sees it): the
client program walks ``Client.scan_iter`` (pages of 1,000 keys, linearizable reads) and counts
keys and bytes; the CLI runs ``dengine scan`` with the same page size and writes its text to a
file. Both must see every key; the ratio CLI / client is the row of the preload report (the
goal is under 2). Run from a thread, so an in-process node keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

__all__ = ["ScanComparison", "compare_scan"]

_CLIENT = """
import asyncio, sys
from dengine.client import Client

async def main():
    keys = size = 0
    async with Client(sys.argv[1].split(","), timeout=60) as c:
        async for kv in c.scan_iter(page_size=1000):
            keys += 1
            size += len(kv.key) + len(kv.value)
    print(keys, size)

asyncio.run(main())
"""


@dataclass(frozen=True, slots=True)
class ScanComparison:
    """Seconds for each full scan and the keys each saw."""

    keys: int
    client_s: float
    client_keys: int
    cli_s: float
    cli_keys: int

    @property
    def ratio(self) -> float:
        return self.cli_s / self.client_s if self.client_s else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}

    def row(self) -> str:
        return (f"full scan of {self.keys:,} keys: client {self.client_s:.1f}s "
                f"({self.client_keys:,} keys), dengine scan {self.cli_s:.1f}s "
                f"({self.cli_keys:,} keys), CLI/client {self.ratio:.2f}")


def _run(args: list[str], stdout: int | object) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(args, stdout=stdout, stderr=subprocess.PIPE,  # type: ignore[arg-type]
                         timeout=1800, check=False)
    secs = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{args[1:3]} failed ({out.returncode}): "
                           f"{out.stderr.decode(errors='replace')[-500:]}")
    return secs


def _compare(endpoints: list[str], keys: int) -> ScanComparison:
    eps = ",".join(endpoints)
    with tempfile.TemporaryFile() as fh:
        client_s = _run([sys.executable, "-c", _CLIENT, eps], fh)
        fh.seek(0)
        client_keys = int(fh.read().split()[0])
    with tempfile.TemporaryFile() as fh:
        cli_s = _run([sys.executable, "-m", "dengine", "scan", "--endpoints", eps,
                      "--timeout", "60"], fh)
        fh.seek(0)
        cli_keys = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    return ScanComparison(keys, client_s, client_keys, cli_s, cli_keys)


async def compare_scan(endpoints: list[str], keys: int) -> ScanComparison:
    """Time both full scans (see the module docstring); ``keys`` is what the cluster holds
    at least, for the report."""
    return await asyncio.to_thread(_compare, endpoints, keys)
