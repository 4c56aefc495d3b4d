"""The mutation gate: every rule mutant of ``dengine/raft/`` must be caught by the simulation.

Theory of operation
-------------------
A simulator that passes proves only what it would catch. The gate breaks one rule of the core
at a time (``mutant_table.MUTANTS``: a textual patch, applied exactly once to a temporary copy
of the ``dengine`` package), then runs the random simulation alone -- no scripted test -- on
that copy, seed after seed, until a seed fails (a safety or liveness violation, or a run that
does not finish) or the budget is spent. Each seed runs every schedule variant in
:data:`VARIANTS`. A mutant that survives its budget fails the gate: the simulator needs a new
fault, knob or check, never a dropped mutant.

Mutants run in parallel processes, one per core unless ``--jobs`` says otherwise::

    python -m dengine.testing.mutants                  # the full gate: 200 seeds per mutant
    python -m dengine.testing.mutants --seeds 40       # a CI budget
    python -m dengine.testing.mutants --only NAME --seed S   # replay one catch, full report

The report prints, per mutant, the first failing seed, its variant and the replay command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dengine.testing.mutant_table import MUTANTS, Mutant

__all__ = ["MutantError", "Outcome", "VARIANTS", "apply_mutant", "replay_catches", "run_gate",
           "main"]

#: Schedule variants every seed runs, in order (names of ``SimConfig`` keyword sets).
VARIANTS: dict[str, dict[str, object]] = {
    "default": {},
    "snapshots": {"snapshots_and_membership": True},
    "async": {"shell_order": "async"},
}

#: A single simulated run taking longer than this (wall seconds) counts as a hang.
RUN_LIMIT_S = 60

_PACKAGE = Path(__file__).resolve().parents[1]


class MutantError(RuntimeError):
    """A mutant's patch does not apply exactly once: the core moved; fix the mutant."""


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    seed: int | None  # the first failing seed, None when the budget passed
    variant: str
    what: str
    seeds_run: int
    seconds: float
    #: Set when the unmutated core fails the same seed and variant: not a catch, a finding.
    base_failure: str = ""

    @property
    def caught(self) -> bool:
        return self.seed is not None and not self.base_failure


def apply_mutant(package: Path, mutant: Mutant) -> None:
    """Patch the ``dengine`` package at ``package`` in place; each ``old`` must occur once."""
    for rel, old, new in mutant.edits:
        path = package / rel
        text = path.read_text()
        count = text.count(old)
        if count != 1:
            raise MutantError(f"mutant {mutant.name}: {old!r} occurs {count} times in {rel} "
                              "(expected once): update the mutant to the core's new code")
        path.write_text(text.replace(old, new))


def _copy_package(dest: Path) -> Path:
    target = dest / "dengine"
    shutil.copytree(_PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def replay(name: str, seed: int, variant: str) -> str:
    return f"python -m dengine.testing.mutants --only {name} --seed {seed} --variant {variant}"


def _run_mutant(mutant: Mutant, start: int, seeds: int, variants: list[str]) -> Outcome:
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        package = _copy_package(Path(tmp))
        apply_mutant(package, mutant)
        r = _worker_result(tmp, start, seeds, variants, f"mutant {mutant.name}")
    base = "" if r["seed"] is None else _base_failure(r["seed"], r["variant"])
    return Outcome(mutant.name, r["seed"], r["variant"], r["what"], r["seeds_run"],
                   time.monotonic() - t0, base)


def _base_failure(seed: int, variant: str) -> str:
    """What the unmutated core does on the run that failed a mutant: "" when it passes. A
    run the real core fails too (a liveness bound the schedule cannot meet, a simulator
    fault) would otherwise count as a catch of every mutant at that seed."""
    r = _worker_result(str(_PACKAGE.parent), seed, 1, [variant], "the unmutated core")
    return "" if r["seed"] is None else str(r["what"])


def _worker_result(root: str, start: int, seeds: int, variants: list[str],
                   who: str) -> dict[str, Any]:
    """Run the worker on the ``dengine`` package under ``root`` (a mutated copy, or this one)
    in a fresh process, and return its verdict (``_worker``'s dict)."""
    env = dict(os.environ, PYTHONPATH=root, PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "dengine.testing.mutants", "--worker",
           "--start", str(start), "--seeds", str(seeds), "--variants", ",".join(variants)]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{who}: the worker failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run_gate(
    mutants: list[Mutant], start: int = 0, seeds: int = 200, jobs: int | None = None,
    variants: list[str] | None = None,
) -> list[Outcome]:
    """Run every mutant (in parallel processes); one Outcome each, in the given order."""
    names = variants or list(VARIANTS)
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        futures = [pool.submit(_run_mutant, m, start, seeds, names) for m in mutants]
        return [f.result() for f in futures]


def replay_catches(catches: dict[str, tuple[int, str]], jobs: int | None = None) -> list[Outcome]:
    """Run each named mutant on one seed and variant only (``name -> (seed, variant)``, the
    first failing seed a full gate run found): the cheap check that every recorded catch
    still holds. An Outcome that is not caught means the core or the simulator moved the
    catch: run the full gate again."""
    by_name = {m.name: m for m in MUTANTS}
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        futures = [pool.submit(_run_mutant, by_name[name], seed, 1, [variant])
                   for name, (seed, variant) in catches.items()]
        return [f.result() for f in futures]


# -- the worker: runs inside the mutated copy --------------------------------------------------
class _Hang(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Hang()


def _one_run(seed: int, variant: str) -> str | None:
    """None when the seed passes; else the first line of what broke."""
    from dengine.testing.sim import SimConfig, SimFailure, Simulator

    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(RUN_LIMIT_S)
    try:
        Simulator(seed, SimConfig(**VARIANTS[variant])).run()  # type: ignore[arg-type]
    except SimFailure as e:
        return str(e).splitlines()[0]
    except _Hang:
        return f"liveness: the run did not finish within {RUN_LIMIT_S} s"
    finally:
        signal.alarm(0)
    return None


def _worker(start: int, seeds: int, variants: list[str]) -> dict[str, object]:
    for k, seed in enumerate(range(start, start + seeds)):
        for variant in variants:
            what = _one_run(seed, variant)
            if what is not None:
                return {"seed": seed, "variant": variant, "what": what, "seeds_run": k + 1}
    return {"seed": None, "variant": "", "what": "", "seeds_run": seeds}


def _replay_one(mutant: Mutant, seed: int, variant: str) -> int:
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        apply_mutant(_copy_package(Path(tmp)), mutant)
        env = dict(os.environ, PYTHONPATH=tmp, PYTHONDONTWRITEBYTECODE="1")
        code = ("import sys\nfrom dengine.testing.sim import SimConfig, Simulator\n"
                "from dengine.testing.mutants import VARIANTS\n"
                f"Simulator({seed}, SimConfig(**VARIANTS[{variant!r}])).run()\n"
                "print('seed passed')\n")
        return subprocess.run([sys.executable, "-c", code], cwd=tmp, env=env).returncode


def format_report(outcomes: list[Outcome], budget: int) -> str:
    lines = []
    for o in outcomes:
        if o.base_failure:
            lines.append(f"BASE    {o.name:45s} seed {o.seed} ({o.variant}): the unmutated core "
                         f"fails this run too, not a catch: {o.base_failure[:150]}")
        elif o.caught:
            lines.append(f"CAUGHT  {o.name:45s} seed {o.seed:4d} ({o.variant}) after "
                         f"{o.seeds_run} seeds, {o.seconds:5.1f} s: {o.what[:150]}")
            lines.append(f"        replay: {replay(o.name, o.seed, o.variant)}")  # type: ignore[arg-type]
        else:
            lines.append(f"MISSED  {o.name:45s} survived {budget} seeds ({o.seconds:.1f} s)")
    caught = sum(o.caught for o in outcomes)
    lines.append(f"{caught}/{len(outcomes)} mutants caught within {budget} seeds")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dengine.testing.mutants",
                                description="Run the rule mutants through the simulation.")
    p.add_argument("--seeds", type=int, default=200, help="seed budget per mutant")
    p.add_argument("--start", type=int, default=0, help="first seed")
    p.add_argument("--jobs", type=int, default=None, help="parallel mutants (default: cores)")
    p.add_argument("--only", action="append", default=[], help="run only these mutants")
    p.add_argument("--variants", default=",".join(VARIANTS), help="schedule variants per seed")
    p.add_argument("--seed", type=int, default=None, help="with --only: replay this seed")
    p.add_argument("--variant", default="default", help="with --seed: its variant")
    p.add_argument("--list", action="store_true", help="list the mutants and their rules")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    variants = [v for v in a.variants.split(",") if v]
    if a.worker:
        print(json.dumps(_worker(a.start, a.seeds, variants)))
        return 0
    by_name = {m.name: m for m in MUTANTS}
    unknown = [n for n in a.only if n not in by_name]
    if unknown:
        p.error(f"unknown mutants {unknown}; --list shows them")
    chosen = [by_name[n] for n in a.only] if a.only else list(MUTANTS)
    if a.list:
        for m in chosen:
            print(f"{m.name:45s} {m.rule}")
        return 0
    if a.seed is not None:
        if len(chosen) != 1:
            p.error("--seed replays one mutant: give exactly one --only")
        return _replay_one(chosen[0], a.seed, a.variant)
    t0 = time.monotonic()
    outcomes = run_gate(chosen, a.start, a.seeds, a.jobs, variants)
    print(format_report(outcomes, a.seeds))
    print(f"wall time {time.monotonic() - t0:.1f} s")
    return 0 if all(o.caught for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
