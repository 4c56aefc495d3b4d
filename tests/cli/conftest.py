"""Run the ``dengine`` command as a user would: a child process, its output and exit code.

Every command runs with ``XDG_STATE_HOME`` inside the test's directory (so the record of the
"most recent local cluster" never leaks between tests or into the user's home) and with short
Raft timeouts through the environment (``DENGINE_RAFT__*``), which ``cluster up`` passes to its
nodes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: Elections in under a second, a heartbeat well below.
FAST_RAFT = {
    "DENGINE_RAFT__TICK_MS": "10",
    "DENGINE_RAFT__HEARTBEAT_MS": "50",
    "DENGINE_RAFT__ELECTION_MS": "400",
    "DENGINE_RAFT__LEASE_MS": "300",
}


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DENGINE_") or k == "DENGINE_PURE_PYTHON"
    }
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(FAST_RAFT)
    env.update(extra)
    return env


def assert_one_error_line(out: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """The command failed with ``code`` and said why in exactly one stderr line."""
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("dengine: error: "), lines[0]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


@pytest.fixture
def dengine(tmp_path) -> Callable[..., subprocess.CompletedProcess]:
    """``dengine(*args, cwd=None, timeout=60, **env)``: run the command, capture its output."""

    def run(
        *args: str, cwd: Path | None = None, timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dengine", *args],
            capture_output=True,
            text=True,
            env=cli_env(tmp_path, **env),
            cwd=str(cwd or tmp_path),
            timeout=timeout,
        )

    return run


@pytest.fixture
def one_error_line() -> Callable[..., str]:
    """``one_error_line(completed, code, *fragments)``: see :func:`assert_one_error_line`."""
    return assert_one_error_line


@pytest.fixture
def env_for(tmp_path) -> Callable[..., dict[str, str]]:
    """``env_for(**extra)``: the environment the ``dengine`` fixture runs commands with."""
    return lambda **extra: cli_env(tmp_path, **extra)


@pytest.fixture
def cli_main(tmp_path, monkeypatch, capfd) -> Callable[..., subprocess.CompletedProcess]:
    """``cli_main(*args)``: the same command run in this process (``dengine.cli.main``), for
    the many quick calls of a scenario; its output and exit code as from ``dengine``."""
    from dengine.cli import main

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("DENGINE_ENDPOINTS", raising=False)

    def run(*args: str) -> subprocess.CompletedProcess:
        capfd.readouterr()
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse: --help, usage errors
            code = e.code if isinstance(e.code, int) else 1
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(["dengine", *args], code, out, err)

    return run


@pytest.fixture(scope="module")
def one_node(tmp_path_factory) -> Callable[..., subprocess.CompletedProcess]:
    """A one-node ``cluster up`` in a directory of its own, kept for the module; returns
    ``run(*args, input=None)``: a ``dengine`` command in that directory (finds ``./data``)."""
    import signal
    import time

    root = tmp_path_factory.mktemp("one-node")
    env = cli_env(root)
    log = open(root / "up.out", "w")  # noqa: SIM115 - handed to the child
    up = subprocess.Popen([sys.executable, "-m", "dengine", "cluster", "up", "--nodes", "1"],
                          stdout=log, stderr=subprocess.STDOUT, cwd=str(root), env=env)
    try:
        deadline = time.monotonic() + 60
        while "the cluster is running" not in (root / "up.out").read_text():
            assert up.poll() is None and time.monotonic() < deadline, (root / "up.out").read_text()
            time.sleep(0.05)

        def run(*args: str, input: bytes | None = None, **extra: str
                ) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "dengine", *args], input=input,
                                  capture_output=True, env=cli_env(root, **extra),
                                  cwd=str(root), timeout=60)

        yield run
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait(10)
        log.close()


class Up:
    """A background ``dengine cluster up``."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.path = cwd / "up.out"
        self.out = open(self.path, "w")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([sys.executable, "-m", "dengine", "cluster", "up",
                                      "--data-dir", "data"], stdout=self.out,
                                     stderr=subprocess.STDOUT, cwd=str(cwd), env=env)

    def wait_running(self) -> str:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            text = self.path.read_text()
            if "the cluster is running" in text:
                return text
            assert self.proc.poll() is None, text
            time.sleep(0.05)
        raise AssertionError(self.path.read_text())

    def pids(self) -> dict[int, int]:
        text = self.path.read_text()
        return {int(i): int(p) for i, p in re.findall(r"node (\d+) .* pid (\d+)", text)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for pid in self.pids().values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.out.close()


@pytest.fixture
def cluster_up(tmp_path, env_for) -> Iterator[Callable[[Path], Up]]:
    """``cluster_up(cwd)``: ``dengine cluster up --data-dir data`` in ``cwd``, running;
    stopped (and every node killed) at teardown."""
    started: list[Up] = []

    def start(cwd: Path) -> Up:
        up = Up(cwd, env_for())
        started.append(up)
        up.wait_running()
        return up

    yield start
    for up in started:
        up.stop()
