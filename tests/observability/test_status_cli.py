"""``dengine serve`` with metrics on, ``dengine status`` (with LAG) and ``status --watch``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DENGINE_") or k == "DENGINE_PURE_PYTHON"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return env


def _dengine(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dengine", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_serve_metrics_and_status_watch(tmp_path: Path) -> None:
    env = _env(tmp_path)
    address = f"127.0.0.1:{_free_port()}"
    mport = _free_port()
    node = subprocess.Popen(
        [sys.executable, "-m", "dengine", "serve", "--cluster.node-id", "1",
         "--cluster.initial-members", f"1={address}", "--cluster.data-dir",
         str(tmp_path / "data"), "--raft.election-ms", "300", "--raft.lease-ms", "200",
         "--raft.heartbeat-ms", "50", "--observability.metrics-port", str(mport)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            put = _dengine("put", "k", "v", "--endpoints", address, env=env)
            if put.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert put.returncode == 0, put.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert 'dengine_client_requests_total{method="put",status="OK"}' in text
        assert 'dengine_role{node_id="1",role="leader"} 1.0' in text

        st = _dengine("status", "--endpoints", address, env=env)
        assert st.returncode == 0, st.stderr
        header, row = [ln.split() for ln in st.stdout.splitlines()[1:3]]
        assert header == ["ID", "ADDRESS", "MEMBER", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG"]
        assert row[0] == "1" and row[3] == "leader" and row[7] == "0"

        watch = subprocess.Popen(
            [sys.executable, "-m", "dengine", "status", "--watch", "0.2", "--endpoints",
             address], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2.5)
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=20)
        assert watch.returncode == 0, err
        assert out.count("LAG") >= 2  # redrawn
        assert "Traceback" not in err
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(20)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
