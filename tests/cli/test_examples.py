"""Each example runs as written (``python examples/x.py``) and exits 0 with its story told."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "single_node.py",
            ["leads its one-node cluster", "after the restart: greeting=hello, raft"],
        ),
        (
            "three_node_cluster.py",
            [
                "refused a write: not the leader",
                "is the new leader",
                "restarted and caught up",
                "all nodes stopped",
            ],
        ),
        (
            "custom_state_machine.py",
            [
                "refused (they would have overdrawn an account)",
                "every replica holds the same balances",
            ],
        ),
    ],
)
def test_example_runs_as_written(name, expected, env_for, tmp_path):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        env=env_for(TMPDIR=str(tmp_path)),
        cwd=str(tmp_path),
        timeout=80,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    for text in expected:
        assert text in out.stdout, (text, out.stdout)


def test_every_example_is_tested():
    tested = {"single_node.py", "three_node_cluster.py", "custom_state_machine.py"}
    tested |= {"lock.py", "leader_election.py"}  # on cluster up: test_coordination_examples.py
    assert {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")} == tested
