"""Long simulation runs: N seeds of every schedule variant on all cores, one summary.

    python -m dengine.testing.soak --seeds 100000 [--start 0] [--jobs N] [--variants ...]

Each failure prints its first line and the command that replays it; the exit status is 1
when any seed failed. The variants are the mutation gate's (``mutants.VARIANTS``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from dengine.testing.mutants import VARIANTS

__all__ = ["main", "run_chunk"]


def run_chunk(args: tuple[int, int, str]) -> list[tuple[int, str, str]]:
    """Run seeds ``[start, stop)`` of one variant; (seed, variant, what) of each failure."""
    from dengine.testing.sim import SimConfig, SimFailure, Simulator

    start, stop, variant = args
    failures = []
    for seed in range(start, stop):
        try:
            Simulator(seed, SimConfig(**VARIANTS[variant])).run()  # type: ignore[arg-type]
        except SimFailure as e:
            failures.append((seed, variant, str(e).splitlines()[0]))
    return failures


def replay(seed: int, variant: str) -> str:
    kw = ", ".join(f"{k}={v!r}" for k, v in VARIANTS[variant].items())
    return (f"python -c \"from dengine.testing.sim import *; "
            f"Simulator({seed}, SimConfig({kw})).run()\"")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dengine.testing.soak",
                                description="Run many simulation seeds on all cores.")
    p.add_argument("--seeds", type=int, default=1000)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--chunk", type=int, default=50, help="seeds per task")
    p.add_argument("--variants", default=",".join(VARIANTS))
    a = p.parse_args(argv)
    variants = [v for v in a.variants.split(",") if v]
    tasks = [(s, min(s + a.chunk, a.start + a.seeds), v)
             for v in variants for s in range(a.start, a.start + a.seeds, a.chunk)]
    t0 = time.monotonic()
    failures: list[tuple[int, str, str]] = []
    with ProcessPoolExecutor(max_workers=a.jobs or os.cpu_count() or 1) as pool:
        for found in pool.map(run_chunk, tasks):
            failures += found
            for seed, variant, what in found:
                print(f"FAILED seed {seed} ({variant}): {what}\n  replay: {replay(seed, variant)}",
                      flush=True)
    runs = a.seeds * len(variants)
    print(f"{runs - len(failures)}/{runs} runs clean: seeds {a.start}..{a.start + a.seeds - 1} "
          f"of {', '.join(variants)} in {time.monotonic() - t0:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
