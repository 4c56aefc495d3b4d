"""Run a list of workloads against one target and print the table."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from dengine.bench.stats import Summary
from dengine.bench.workloads import WORKLOADS, WorkloadSpec, run_workload

__all__ = ["select_workloads", "run_all", "print_table"]


def select_workloads(names: Iterable[str] | None, **overrides: Any) -> list[WorkloadSpec]:
    """The named workloads (all when ``names`` is empty or "all") with flag overrides applied."""
    wanted: list[str] = []
    for item in names or ["all"]:
        wanted += [n.strip() for n in item.split(",") if n.strip()]
    if not wanted or "all" in wanted:
        wanted = [n for n, w in WORKLOADS.items() if not w.watchers]
    unknown = [n for n in wanted if n not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}")
    return [WORKLOADS[n].with_(**overrides) for n in dict.fromkeys(wanted)]


async def run_all(target: Any, specs: list[WorkloadSpec], *, progress: bool | None = None,
                  preloaded: set[tuple[str, int, int]] | None = None,
                  echo: bool = True, cpu: Any = None) -> list[Summary]:
    """Each workload in turn on its own connections; the read keys are written once per target
    (``preloaded`` remembers which key sets a target already holds)."""
    done = preloaded if preloaded is not None else set()
    out = []
    for spec in specs:
        if spec.spread:
            if not getattr(target, "spreads_reads", False):
                raise ValueError(f"the {target.name} target cannot spread reads over the "
                                 f"members ({spec.name})")
            await target.open(spec.connections, spread=True)
        else:
            await target.open(spec.connections)
        try:
            mark = (target.name, spec.key_space, spec.key_bytes)
            if hasattr(target, "run_spec"):  # a target that runs whole workloads itself
                s = await target.run_spec(spec, preload=mark not in done, cpu=cpu)
            else:
                s = await run_workload(target, spec, progress=progress,
                                       preload=mark not in done, cpu=cpu)
            if spec.read_ratio > 0:
                done.add(mark)
        finally:
            await target.close()
        if echo:
            print(s.row(), flush=True)
        out.append(s)
    return out


def print_table(summaries: list[Summary], file: Any = None) -> None:
    f = file or sys.stdout
    print(Summary.HEADER, file=f)
    for s in summaries:
        print(s.row(), file=f)
