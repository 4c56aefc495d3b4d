"""A running 3-node ``dengine cluster up --etcd-api`` for the etcd API tests (one per module)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAST_RAFT = {"DENGINE_RAFT__TICK_MS": "10", "DENGINE_RAFT__HEARTBEAT_MS": "50",
             "DENGINE_RAFT__ELECTION_MS": "400", "DENGINE_RAFT__LEASE_MS": "300"}


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DENGINE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["XDG_STATE_HOME"] = str(tmp / "state")
    env["ETCDCTL_API"] = "3"
    env.update(FAST_RAFT)
    return env


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    """(etcd endpoints by node id, the leader's id, env) of a running 3-node cluster; a test
    module's ``CLUSTER_CONFIG`` (TOML text) is given to ``cluster up --config``, its
    ``CLUSTER_TLS`` makes it ``--tls`` (certificates in ``<data>/certs``)."""
    tmp = tmp_path_factory.mktemp("etcd-cluster")
    env = _env(tmp)
    data = str(tmp / "data")
    extra: list[str] = []
    config = getattr(request.module, "CLUSTER_CONFIG", None)
    if config:
        (tmp / "shared.toml").write_text(config)
        extra = ["--config", str(tmp / "shared.toml")]
    if getattr(request.module, "CLUSTER_TLS", False):
        extra.append("--tls")
    env["ETCD_TESTS_DATA_DIR"] = data
    up = subprocess.run([sys.executable, "-m", "dengine", "cluster", "up", "--etcd-api",
                         "--detach", "--data-dir", data, *extra], env=env, capture_output=True,
                        text=True, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    line = next(ln for ln in up.stdout.splitlines() if ln.startswith("etcd API endpoints: "))
    eps = line.split(": ", 1)[1].split(",")
    lead = int(next(ln for ln in up.stdout.splitlines() if ln.startswith("leader: node "))
               .split()[2])
    try:
        yield {i + 1: ep for i, ep in enumerate(eps)}, lead, env
    finally:
        subprocess.run([sys.executable, "-m", "dengine", "cluster", "down", "--data-dir", data],
                       env=env, capture_output=True, timeout=120)
