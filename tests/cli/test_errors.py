"""Error paths: one clear line on stderr, the documented exit code, never a traceback."""

from __future__ import annotations

import socket

import pytest

pytestmark = pytest.mark.timeout(60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_exit_codes_are_documented_in_help(dengine, cli_main):
    out = dengine("--help")
    assert out.returncode == 0
    for line in ("3    config:", "4    not found:", "5    unavailable:", "6    refused:"):
        assert line in out.stdout
    assert "exit codes:" in cli_main("get", "--help").stdout


def test_cluster_up_refuses_a_bad_config_file(dengine, cli_main, tmp_path, one_error_line,
                                              monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_text("[raft]\nelection_ms = 30\n")
    out = dengine("cluster", "up", "--data-dir", "d", "--config", str(bad))
    one_error_line(out, 3, "raft.election_ms=30", "bad.toml")
    assert not (tmp_path / "d").exists()  # refused before anything was written
    broken = tmp_path / "broken.toml"
    broken.write_text("[raft\n")
    monkeypatch.chdir(tmp_path)
    one_error_line(cli_main("cluster", "up", "--data-dir", "d", "--config", str(broken)), 3,
                   "valid TOML")
    one_error_line(cli_main("cluster", "up", "--data-dir", "d", "--config", "missing.toml"), 3,
                   "missing.toml")
    assert not (tmp_path / "d").exists()


def test_serve_refuses_a_bad_config_file(dengine, tmp_path, one_error_line):
    bad = tmp_path / "node.toml"
    bad.write_text('[storage]\nengine = "floppy"\n')
    one_error_line(dengine("serve", "--config", str(bad)), 3, "storage.engine")


def test_cluster_up_refuses_an_edited_node_file_that_is_wrong(dengine, tmp_path, one_error_line):
    from dengine.local.cluster import LocalCluster

    lc = LocalCluster.create(tmp_path / "d", 3, ports=[_free_port() for _ in range(3)])
    with open(lc.nodes[2].config_path, "a") as fh:
        fh.write('\n[statemachine]\nengine = "floppy"\n')
    out = dengine("cluster", "up", "--data-dir", "d", timeout=30)
    one_error_line(out, 3, "node-2/node.toml", "statemachine.engine")


def test_unreachable_endpoint(dengine, cli_main, one_error_line):
    endpoint = f"127.0.0.1:{_free_port()}"
    out = dengine("get", "k", "--endpoints", endpoint, "--timeout", "1")
    one_error_line(out, 5, "cannot reach the cluster", endpoint, "dengine cluster up")
    out = cli_main("status", "--endpoints", endpoint, "--timeout", "1")
    one_error_line(out, 5, "cannot reach the cluster")


def test_no_cluster_to_talk_to_says_how_to_point_at_one(cli_main, one_error_line):
    out = cli_main("put", "k", "v", "--timeout", "1", "--data-dir", "nowhere")
    one_error_line(out, 3, "no cluster to talk to", "--data-dir nowhere", "--endpoints",
                   "DENGINE_ENDPOINTS")
    one_error_line(cli_main("get", "k"), 3, "./data")


def test_bad_endpoint_syntax(cli_main, one_error_line):
    one_error_line(cli_main("get", "k", "--endpoints", "localhost"), 2, "not host:port")


@pytest.mark.parametrize("args, fragment", [
    (["cluster", "up", "--base-port", "70000"], "a port is 1 to 65535"),
    (["cluster", "up", "--base-port", "65535"], "at most 65533"),
    (["cluster", "up", "--nodes", "0"], "at least 1"),
    (["cluster", "up", "--stop-timeout", "-1"], "positive number of seconds"),
    (["demo", "--keys", "x"], "not a whole number"),
    (["scan", "--limit", "-1"], "0 (no limit) or more"),
    (["get", "k", "--timeout", "-1"], "positive number of seconds"),
    (["bench", "--warmup", "-1", "--endpoints", "h:1"], "--warmup must be 0 or more"),
])
def test_numeric_flags_are_validated(dengine, tmp_path, args, fragment):
    out = dengine(*args, "--data-dir", str(tmp_path / "d")) if args[0] == "cluster" else \
        dengine(*args)
    assert out.returncode == 2, out
    assert fragment in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "d").exists()


def test_serve_on_a_busy_port_writes_nothing_and_says_so_in_one_line(dengine, tmp_path,
                                                                     one_error_line):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        addr = f"127.0.0.1:{s.getsockname()[1]}"
        out = dengine("serve", "--cluster.node-id", "1", "--cluster.listen-addr", addr,
                      "--cluster.initial-members", f"1={addr}",
                      "--cluster.data-dir", str(tmp_path / "node"))
    one_error_line(out, 3, "cluster.listen_addr", addr, "in use")
    assert not (tmp_path / "node").exists()
