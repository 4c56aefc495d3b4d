"""``dengine demo`` as the README runs it: every check holds and the leader changes."""

from __future__ import annotations

import re
import time

import pytest

pytestmark = pytest.mark.timeout(120)


def test_demo_survives_the_leader_crash(dengine, tmp_path):
    t0 = time.monotonic()
    out = dengine("demo", timeout=110, TMPDIR=str(tmp_path))
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    change = re.search(r"^leader change: node (\d) -> node (\d)$", out.stdout, re.M)
    assert change is not None, out.stdout
    assert change.group(1) != change.group(2)
    assert re.search(r"^demo passed: all \d+ checks held", out.stdout, re.M), out.stdout
    assert "FAILED" not in out.stdout
    # It cleans up after itself: nothing left in the temporary directory it was given.
    assert not list(tmp_path.glob("dengine-demo-*")), list(tmp_path.iterdir())
    print(f"dengine demo took {elapsed:.1f}s from start to exit")


def test_demo_that_cannot_run_fails_plainly(dengine, tmp_path):
    out = dengine("demo", TMPDIR=str(tmp_path), DENGINE_STATEMACHINE__ENGINE="floppy")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert "the demo could not go on" in out.stdout and "statemachine.engine" in out.stdout
    assert re.search(r"^demo FAILED: 1 of 1 checks failed", out.stdout, re.M), out.stdout
    assert "configs, logs and data are kept in" in out.stdout
