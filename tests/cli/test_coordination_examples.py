"""examples/lock.py and examples/leader_election.py against ``dengine cluster up``, each with
the cluster's leader killed (SIGKILL) while it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(("name", "expected"), [
    ("lock.py", ["killed the leader", "no update lost", "fencing tokens strictly increased"]),
    ("leader_election.py", ["killed the Raft leader", "observer: the leader is carol",
                            "every candidate led once, in campaign order"]),
])
def test_example_survives_the_leader_kill(tmp_path, env_for, cluster_up, name, expected):
    home = tmp_path / "project"
    home.mkdir()
    cluster_up(home)
    out = subprocess.run([sys.executable, str(EXAMPLES / name), "--data-dir", "data",
                          "--kill-leader"], capture_output=True, text=True, cwd=str(home),
                         env=env_for(), timeout=90)
    assert out.returncode == 0, (out.stdout, out.stderr)
    for text in expected:
        assert text in out.stdout, (text, out.stdout)
