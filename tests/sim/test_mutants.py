"""The mutation gate (``python -m dengine.testing.mutants``): rule mutants of the core must be
caught by the random simulation alone.

The default run checks that every mutant's patch still applies exactly once (a refactor of
the core that moves a rule breaks its mutant loudly), and replays every catch of the last full
gate run: each mutant on the one seed and variant where it was first caught (``CATCHES``), and
the unmutated core on those same runs. That checks the catches still hold, not that the
random search would find them: the ``slow`` marker runs the whole gate on the full budget of
200 seeds per mutant (tests/sim/SOAK.md records its runs).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from dengine.testing import mutants
from dengine.testing.mutant_table import MUTANTS

#: Each mutant the last full gate run caught: (first failing seed, variant). Keep in step
#: with tests/sim/SOAK.md's gate table; a change to the core or the simulator that moves a
#: catch fails ``test_every_recorded_catch_still_holds``: run the full gate and update both.
CATCHES: dict[str, tuple[int, str]] = {
    "vote_without_log_check": (0, "snapshots"),
    "vote_twice_in_a_term": (0, "snapshots"),
    "candidate_does_not_vote_for_itself": (0, "default"),
    "stale_vote_answers_counted": (5, "snapshots"),
    "vote_answer_before_durable": (0, "default"),
    "pre_vote_records_a_vote": (0, "default"),
    "append_ack_before_durable": (0, "default"),
    "follower_commit_not_capped": (7, "async"),
    "heartbeat_commit_not_capped": (0, "async"),
    "commit_old_term_by_counting": (0, "snapshots"),
    "truncate_without_conflict_check": (3, "snapshots"),
    "no_noop_on_election": (0, "async"),
    "read_index_without_round": (0, "default"),
    "read_index_counts_old_round_acks": (46, "async"),
    "read_before_first_commit": (0, "snapshots"),
    "lease_never_expires": (0, "async"),
    "no_leader_stickiness": (11, "default"),
    "no_restart_guard": (0, "async"),
    "transfer_keeps_lease": (134, "default"),
    "no_check_quorum": (0, "default"),
    "joint_commit_ignores_outgoing": (1, "snapshots"),
    "joint_vote_ignores_outgoing": (39, "snapshots"),
    "several_voters_without_joint": (2, "snapshots"),
    "two_changes_pending": (0, "snapshots"),
    "install_older_snapshot": (5, "snapshots"),
    "vote_refusals_counted": (0, "snapshots"),
    "campaign_claims_its_term": (0, "snapshots"),
    "new_term_keeps_vote": (0, "snapshots"),
    "leader_counts_itself_before_fsync": (0, "default"),
    "committed_probe_acks_last_index": (7, "async"),
    "fast_forward_without_term_check": (17, "snapshots"),
    "read_index_at_applied": (0, "default"),
    "follower_read_ignores_index": (0, "default"),
    "lease_read_without_lease": (0, "async"),
    "lease_from_unconfirmed_round": (0, "async"),
    "new_leader_no_pending_change": (4, "snapshots"),
    "stale_vote_answer_takes_term": (6, "snapshots"),
    "newer_term_breaks_lease_promise": (53, "default"),
    "defect_fast_forward_acks_last_index": (9, "snapshots"),
    "defect_heartbeat_answer_before_term_durable": (0, "async"),
    "defect_stable_tracking_aba": (13, "async"),
}

#: Mutants the random simulation does not catch within 200 seeds yet (SOAK.md says why).
SURVIVORS: frozenset[str] = frozenset()


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


def test_every_mutant_is_recorded_as_caught_or_as_a_survivor() -> None:
    assert set(CATCHES).isdisjoint(SURVIVORS)
    assert set(CATCHES) | SURVIVORS == {m.name for m in MUTANTS}


def test_every_recorded_catch_still_holds() -> None:
    outcomes = mutants.replay_catches(CATCHES, jobs=2)
    base = [(o.name, o.seed, o.variant) for o in outcomes if o.base_failure]
    assert not base, f"the unmutated core fails these recorded catches too: {base}"
    moved = [o.name for o in outcomes if not o.caught]
    assert not moved, (f"no longer caught at their recorded seed: {moved}; run the full gate "
                       "(python -m dengine.testing.mutants) and update CATCHES and SOAK.md")


def test_a_run_the_unmutated_core_fails_too_is_not_counted_as_a_catch() -> None:
    """The gate replays each first failing run on the real core: a run that fails there as
    well is reported as such (BASE) and fails the gate, instead of catching every mutant."""
    seed, variant = next(iter(CATCHES.values()))
    assert mutants._base_failure(seed, variant) == ""  # the real core passes a recorded catch
    o = mutants.Outcome("m", seed, variant, "liveness: ...", 1, 0.1,
                        base_failure="liveness: no leader")
    assert not o.caught
    report = mutants.format_report([o], 200)
    assert "BASE" in report and "0/1 mutants caught" in report


def test_the_full_gate_catches_every_mutant(request: pytest.FixtureRequest) -> None:
    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("the full gate takes minutes: run it with -m slow")
    outcomes = mutants.run_gate(list(MUTANTS), seeds=200, jobs=None)
    missed = [o.name for o in outcomes if not o.caught]
    assert not missed, mutants.format_report(outcomes, 200)
