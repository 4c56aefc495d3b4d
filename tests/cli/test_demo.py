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
