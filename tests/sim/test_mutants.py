"""The mutation gate (``python -m dengine.testing.mutants``): rule mutants of the core must be
caught by the random simulation alone.

The default run checks that every mutant's patch still applies exactly once (a refactor of
the core that moves a rule breaks its mutant loudly) and runs a small slice of the gate; the
``slow`` marker runs the whole gate on the full budget of 200 seeds per mutant.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from dengine.testing import mutants
from dengine.testing.mutant_table import MUTANTS

#: Mutants the default run sends through the simulation, on a small budget (each is caught
#: on one of its first seeds: the persistence contract and the commit rule).
SLICE = ("vote_answer_before_durable", "append_ack_before_durable",
         "defect_heartbeat_answer_before_term_durable", "commit_old_term_by_counting")


def test_there_are_at_least_twenty_mutants_with_unique_names() -> None:
    names = [m.name for m in MUTANTS]
    assert len(names) >= 20 and len(set(names)) == len(names)


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_every_mutant_applies_exactly_once(mutant: mutants.Mutant) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        package = mutants._copy_package(Path(tmp))
        mutants.apply_mutant(package, mutant)
        for rel, _old, new in mutant.edits:
            text = (package / rel).read_text()
            assert new in text


def test_a_mutant_whose_code_moved_fails_loudly() -> None:
    moved = mutants.Mutant("moved", "a rule that is no longer there",
                           (("raft/core.py", "this text is not in the core", "x"),))
    with tempfile.TemporaryDirectory() as tmp:
        package = mutants._copy_package(Path(tmp))
        with pytest.raises(mutants.MutantError, match="occurs 0 times"):
            mutants.apply_mutant(package, moved)


def test_the_gate_slice_catches_its_mutants() -> None:
    chosen = [m for m in MUTANTS if m.name in SLICE]
    outcomes = mutants.run_gate(chosen, seeds=5, jobs=2)
    missed = [o.name for o in outcomes if not o.caught]
    assert not missed, mutants.format_report(outcomes, 5)


def test_the_unmutated_core_passes_the_gate_budget_slice() -> None:
    """The gate's worker on the real core: no seed fails (else every catch means nothing)."""
    result = mutants._worker(0, 3, list(mutants.VARIANTS))
    assert result["seed"] is None, result


@pytest.mark.slow
def test_the_full_gate_catches_every_mutant(request: pytest.FixtureRequest) -> None:
    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("the full gate takes minutes: run it with -m slow")
    outcomes = mutants.run_gate(list(MUTANTS), seeds=200, jobs=None)
    missed = [o.name for o in outcomes if not o.caught]
    assert not missed, mutants.format_report(outcomes, 200)
