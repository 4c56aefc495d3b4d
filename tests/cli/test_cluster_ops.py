"""Operating a local cluster from another terminal, with the real commands: ``cluster up
--detach``, ``cluster status``, ``cluster kill-node``, ``cluster restart-node``, ``cluster down``,
detached and under a supervising ``cluster up``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.timeout(180)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def _rows(status_out: str) -> dict[int, list[str]]:
    return {int(r[0]): r for r in (ln.split() for ln in status_out.splitlines())
            if r and r[0].isdigit()}


def _ok(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    return out.stdout


def test_a_detached_cluster_is_operated_node_by_node(dengine, tmp_path, one_error_line):
    out = _ok(dengine("cluster", "up", "--detach", "--base-port", "7611"))
    pids = [int(p) for p in re.findall(r"pid (\d+)", out)]
    assert len(pids) == 3 and all(_alive(p) for p in pids), out
    try:
        rows = _rows(_ok(dengine("cluster", "status")))
        assert sorted(r[4] for r in rows.values()) == ["follower", "follower", "leader"], rows
        leader = next(i for i, r in rows.items() if r[4] == "leader")
        _ok(dengine("put", "k", "v1"))

        # kill the leader: the other two elect a new one and still serve
        _ok(dengine("cluster", "kill-node", str(leader)))
        assert not _alive(pids[leader - 1])
        rows = _rows(_ok(dengine("cluster", "status")))
        assert rows[leader][3] == "stopped", rows
        assert _ok(dengine("get", "k", "--timeout", "10")) == "v1\n"
        _ok(dengine("put", "k", "v2", "--timeout", "10"))
        one_error_line(dengine("cluster", "kill-node", str(leader)), 1, "not running")
        one_error_line(dengine("cluster", "kill-node", "9"), 2, "no node 9")

        # restart it: it catches up on its own data
        out = _ok(dengine("cluster", "restart-node", str(leader)))
        assert f"node {leader} restarted" in out, out
        rows = _rows(_ok(dengine("cluster", "status")))
        assert all(r[3] == "running" for r in rows.values()), rows
        node = next(a for a in re.findall(r"(127\.0\.0\.1:\d+)", _ok(dengine("cluster", "status")))
                    if a.endswith(str(7611 + leader - 1)))
        deadline = time.monotonic() + 20
        while True:
            out = dengine("get", "k", "--endpoints", node, "--consistency", "serializable")
            if out.stdout == "v2\n" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert out.stdout == "v2\n", out

        # a running cluster is not started twice; restart-node of a running node works too
        one_error_line(dengine("cluster", "up"), 1, "already running", "cluster down")
        _ok(dengine("cluster", "restart-node", "1"))
        new_pids = [int(r[2]) for r in _rows(_ok(dengine("cluster", "status"))).values()]
    finally:
        down = dengine("cluster", "down")
    assert down.returncode == 0 and down.stdout.count("stopped") >= 3, down
    assert not [p for p in pids + new_pids if _alive(p)]
    assert "not running" in _ok(dengine("cluster", "status"))
    assert "not running" in _ok(dengine("cluster", "down"))
    logs = "".join((tmp_path / "data" / f"node-{i}" / "node.log").read_text() for i in (1, 2, 3))
    assert "sync is off" not in logs  # writes are fsynced by default: no false warning


def test_a_supervised_cluster_adopts_a_restarted_node(dengine, tmp_path, env_for):
    log = tmp_path / "up.out"
    with open(log, "w") as fh:
        up = subprocess.Popen([sys.executable, "-m", "dengine", "cluster", "up", "--nodes", "1"],
                              stdout=fh, stderr=subprocess.STDOUT, cwd=str(tmp_path),
                              env=env_for())
    first = second = 0
    try:
        deadline = time.monotonic() + 60
        while "the cluster is running" not in log.read_text():
            assert up.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        first = int(re.search(r"pid (\d+)", log.read_text()).group(1))
        _ok(dengine("cluster", "kill-node", "1"))
        out = _ok(dengine("cluster", "restart-node", "1"))
        second = int(re.search(r"\(pid (\d+)\)", out).group(1))
        deadline = time.monotonic() + 20
        while "running again" not in log.read_text():
            assert up.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        _ok(dengine("put", "k", "v"))
        out = _ok(dengine("cluster", "down"))  # asks the supervisor, which stops its nodes
        assert "asking `dengine cluster up`" in out, out
        assert up.wait(40) == 0, log.read_text()  # the stop was intended: not a failure
    finally:
        if up.poll() is None:
            up.kill()
        leaked = [pid for pid in (first, second) if pid and _alive(pid)]
        for pid in leaked:  # a restarted node is no child of `up`: never leave it running
            os.kill(pid, signal.SIGKILL)
    assert not leaked, log.read_text()
    assert "cluster stopped" in log.read_text()


def test_a_node_served_by_hand_is_named_when_cluster_up_cannot_start(dengine, tmp_path, env_for,
                                                                     one_error_line):
    from dengine.local.cluster import LocalCluster

    lc = LocalCluster.create(tmp_path / "data", 1, ports=[7671])
    config = lc.nodes[1].config_path
    serve = subprocess.Popen([sys.executable, "-m", "dengine", "serve", "--config", str(config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=env_for(), cwd=str(tmp_path))
    try:
        deadline = time.monotonic() + 30
        while dengine("status", "--endpoints", "127.0.0.1:7671", "--timeout", "1").returncode:
            assert serve.poll() is None and time.monotonic() < deadline
        one_error_line(dengine("cluster", "up", "--detach"), 1,
                       f"node 1 already runs outside `cluster up` (pid {serve.pid}",
                       "restart-node 1")
    finally:
        serve.terminate()
        serve.wait(20)
