"""Fault injection on real processes and real file systems.

Tests marked ``slow`` run only when asked for (``pytest -m slow tests/faults``; ``.ci/run``
does); the rest run with the default suite.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dengine.testing.kv_history import KvHistoryWorkload


def _integration_conftest():
    """tests/integration/conftest.py, for its process clusters (one definition of them)."""
    path = Path(__file__).resolve().parents[1] / "integration" / "conftest.py"
    spec = importlib.util.spec_from_file_location("dengine_faults_cluster", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_it = _integration_conftest()
# Real ``dengine serve`` clusters (killed at teardown), the scenario runner and the writer.
cluster_factory = _it.cluster_factory
run = _it.run
writer_cls = _it.writer_cls
pytest_runtest_makereport = _it.pytest_runtest_makereport


@pytest.fixture
def history_cls() -> type[KvHistoryWorkload]:
    return KvHistoryWorkload


def pytest_collection_modifyitems(config, items):
    if "slow" in (config.option.markexpr or ""):
        return
    # The hook sees the whole session's items: skip only this directory's slow tests (the
    # simulation's slow gate, say, says its own reason).
    here = Path(__file__).resolve().parent
    skip = pytest.mark.skip(reason="slow fault test: run with -m slow")
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@contextlib.contextmanager
def small_tmpfs(parent, size: str):
    """A tmpfs of ``size`` mounted under ``parent`` (root only; skips the test otherwise)."""
    path = os.path.join(str(parent), f"tmpfs-{uuid.uuid4().hex[:8]}")
    os.makedirs(path)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    """Factory: ``with tmpfs("1m") as path`` gives a tiny file system that fills up."""
    return lambda size: small_tmpfs(tmp_path, size)


@pytest.fixture
def proc_env() -> dict[str, str]:
    """The environment for a ``python -m dengine`` child: this tree, no stray DENGINE_ vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DENGINE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProc:
    """One ``dengine serve`` child on a free loopback port; killed when the test ends."""

    def __init__(self, data_dir: str, env: dict[str, str], *flags: str) -> None:
        self.data_dir = data_dir
        self.address = f"127.0.0.1:{free_port()}"
        cmd = [sys.executable, "-m", "dengine", "serve", "--cluster.node-id", "1",
               "--cluster.initial-members", f"1={self.address}", "--cluster.data-dir", data_dir,
               "--raft.election-ms", "300", "--raft.lease-ms", "200",
               "--raft.heartbeat-ms", "50", *flags]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def kill(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        out, _ = self.proc.communicate()
        return out or ""


@pytest.fixture
def serve(tmp_path, proc_env):
    """Factory: ``serve(*flags)`` starts a one-node ``dengine serve``."""
    started: list[ServeProc] = []

    def start(*flags: str) -> ServeProc:
        p = ServeProc(str(tmp_path / f"data{len(started)}"), proc_env, *flags)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()
