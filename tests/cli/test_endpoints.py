"""Which cluster a command talks to, said in every failure; refused connections fail at once;
``--timeout`` is validated and kept. Every test runs the real command."""

from __future__ import annotations

import json
import socket
import time

import pytest

pytestmark = pytest.mark.timeout(60)


def _refusing_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_everywhere_fails_at_once_and_names_the_endpoints(dengine, one_error_line):
    a, b = f"127.0.0.1:{_refusing_port()}", f"127.0.0.1:{_refusing_port()}"
    t0 = time.monotonic()
    out = dengine("get", "k", "--endpoints", f"{a},http://{b}", "--timeout", "30")
    elapsed = time.monotonic() - t0
    one_error_line(out, 5, "cannot reach the cluster", a, b, "(from --endpoints)",
                   "Connection refused")
    assert elapsed < 15, elapsed  # not the 30 s deadline: nobody listens, so nothing to wait for


def test_every_source_of_endpoints_is_named_in_the_error(dengine, tmp_path, one_error_line):
    port = _refusing_port()
    out = dengine("status", DENGINE_ENDPOINTS=f"127.0.0.1:{port}")
    one_error_line(out, 5, f"127.0.0.1:{port}", "(from DENGINE_ENDPOINTS)")
    d = tmp_path / "data"
    d.mkdir()
    (d / "cluster.json").write_text(json.dumps(
        {"cluster_id": "c", "nodes": [{"id": 1, "address": f"127.0.0.1:{port}",
                                       "config": "node-1/node.toml", "log": "node-1/node.log"}]}))
    out = dengine("put", "k", "v")
    one_error_line(out, 5, f"127.0.0.1:{port}", f"(from {d / 'cluster.json'})")
    # --endpoints wins over both
    other = _refusing_port()
    out = dengine("put", "k", "v", "--endpoints", f"127.0.0.1:{other}",
                  DENGINE_ENDPOINTS=f"127.0.0.1:{port}")
    one_error_line(out, 5, f"127.0.0.1:{other} (from --endpoints)")


def test_damaged_cluster_file_keeps_the_data(dengine, tmp_path, one_error_line):
    d = tmp_path / "data"
    d.mkdir()
    (d / "cluster.json").write_text("{not json")
    line = one_error_line(dengine("get", "k"), 3, "cluster.json")
    assert "remove" not in line and "delete" not in line, line


@pytest.mark.parametrize("bad", ["-1", "0", "nan", "inf", "soon"])
def test_timeout_is_validated(dengine, bad):
    out = dengine("get", "k", "--endpoints", "127.0.0.1:1", "--timeout", bad)
    assert out.returncode == 2 and "--timeout" in out.stderr, out
    assert "Traceback" not in out.stderr


def test_timeout_is_kept_when_nothing_answers(dengine, one_error_line):
    """A listener that never speaks gRPC: the command gives up at its deadline, not later."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        addr = f"127.0.0.1:{s.getsockname()[1]}"
        t0 = time.monotonic()
        out = dengine("get", "k", "--endpoints", addr, "--timeout", "1")
        elapsed = time.monotonic() - t0
    one_error_line(out, 5, addr)
    assert elapsed < 5, elapsed  # 1 s deadline; the rest is interpreter start-up


def test_bench_uses_the_same_endpoints(dengine, one_error_line):
    out = dengine("bench", "-w", "write-concurrent", "--no-progress")
    one_error_line(out, 3, "no cluster to talk to")
    port = _refusing_port()
    out = dengine("bench", "-w", "write-concurrent", "--no-progress", "--ops", "10",
                  "--endpoints", f"127.0.0.1:{port}", "--timeout", "2")
    assert out.returncode == 5, out
    assert f"127.0.0.1:{port} (from --endpoints)" in out.stderr, out


def test_refused_everywhere_fails_at_once_for_serializable_reads_too(dengine, one_error_line):
    a = f"127.0.0.1:{_refusing_port()}"
    t0 = time.monotonic()
    out = dengine("get", "k", "--consistency", "serializable", "--endpoints", a,
                  "--timeout", "30")
    one_error_line(out, 5, a)
    assert time.monotonic() - t0 < 15
