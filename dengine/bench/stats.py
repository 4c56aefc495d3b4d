"""Latency samples and the summary a benchmark prints: throughput, average and percentiles."""

from __future__ import annotations

import math
from array import array
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["LatencyStats", "Summary", "percentile"]


def percentile(sorted_ns: Any, q: float) -> int:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of an ascending sequence; 0 if empty."""
    n = len(sorted_ns)
    if n == 0:
        return 0
    rank = max(1, min(n, math.ceil(q * n / 100 - 1e-9)))
    return int(sorted_ns[rank - 1])


class LatencyStats:
    """Per-operation latencies in nanoseconds (a compact int array, not a list of objects)."""

    __slots__ = ("samples", "errors", "misses")

    def __init__(self) -> None:
        self.samples = array("q")
        self.errors = 0
        self.misses = 0

    def add(self, ns: int) -> None:
        self.samples.append(ns)

    def summary(self, workload: str, target: str, elapsed_s: float, **extra: Any) -> Summary:
        done = sorted(self.samples)
        n = len(done)
        ms = 1e-6
        return Summary(
            workload=workload,
            target=target,
            ops=n,
            errors=self.errors,
            misses=self.misses,
            elapsed_s=elapsed_s,
            throughput=n / elapsed_s if elapsed_s > 0 else 0.0,
            avg_ms=(sum(done) / n * ms) if n else 0.0,
            p50_ms=percentile(done, 50) * ms,
            p99_ms=percentile(done, 99) * ms,
            p999_ms=percentile(done, 99.9) * ms,
            max_ms=(done[-1] * ms) if n else 0.0,
            extra=dict(extra),
        )


@dataclass(frozen=True, slots=True)
class Summary:
    """One workload's result. Latencies in milliseconds; throughput in operations per second."""

    workload: str
    target: str
    ops: int
    errors: int
    misses: int
    elapsed_s: float
    throughput: float
    avg_ms: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    extra: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    HEADER = (f"{'workload':<18} {'target':<9} {'ops':>7} {'err':>5} {'ops/s':>9} "
              f"{'avg ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9}")

    def row(self) -> str:
        return (f"{self.workload:<18} {self.target:<9} {self.ops:>7} {self.errors:>5} "
                f"{self.throughput:>9,.0f} {self.avg_ms:>8.2f} {self.p50_ms:>8.2f} "
                f"{self.p99_ms:>8.2f} {self.p999_ms:>9.2f}")
