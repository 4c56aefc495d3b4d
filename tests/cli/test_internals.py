"""The parts of the command that need no cluster: exit codes, error lines, finding endpoints,
the local cluster's files, and stopping processes that will not stop."""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tomllib

import pytest

from dengine.cli.errors import CliError, KeyNotFound, exit_code, one_line
from dengine.config import build_config
from dengine.errors import (
    ConfChangeError,
    ConfigError,
    DengineError,
    InvalidArgument,
    LocalClusterError,
    NotLeader,
    OperationTimeout,
    ProposalDropped,
    Unavailable,
)
from dengine.local.cluster import (
    LocalCluster,
    NodeProc,
    dump_toml,
    pick_ports,
    port_is_free,
)


def _timeout_from(cause: BaseException) -> OperationTimeout:
    try:
        raise OperationTimeout("put", 2.0) from cause
    except OperationTimeout as e:
        return e


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ConfigError("raft.election_ms", 3, ">= 300"), 3),
        (KeyNotFound("k"), 4),
        (Unavailable("node down"), 5),
        (NotLeader(), 5),
        (_timeout_from(NotLeader()), 5),
        (_timeout_from(Unavailable("x")), 5),
        (_timeout_from(ConfChangeError("node 9 is not a member")), 6),
        (ConfChangeError("node 9 is not a member"), 6),
        (InvalidArgument("node 9 is not a voter"), 6),
        (DengineError("something else"), 1),
        (CliError("usage", 2), 2),
        (LocalClusterError("--base-port 0: ...", LocalClusterError.USAGE), 2),
        (LocalClusterError("no local cluster recorded", LocalClusterError.CONFIG), 3),
        (LocalClusterError("no leader was elected within 5s"), 1),
        (KeyboardInterrupt(), 130),
    ],
)
def test_exit_codes(exc, code):
    assert exit_code(exc) == code
    line = one_line(exc, ["127.0.0.1:1"])
    assert line and "\n" not in line


def test_timeout_without_a_leader_reads_as_no_leader():
    line = one_line(_timeout_from(NotLeader()), ["h:1", "h:2"])
    assert line.startswith("no leader in the cluster at h:1,h:2")


def test_advice_of_an_error_from_the_wire_is_said_once():
    from dengine.transport import status

    sent = InvalidArgument("empty key")
    back = status.from_proto(status.to_proto(sent))
    assert one_line(back) == str(sent)
    assert one_line(_timeout_from(back)) == str(sent)


def test_dump_toml_loads_back_as_a_valid_config():
    layers = {
        "cluster": {"node_id": 2, "listen_addr": "127.0.0.1:7002", "data_dir": 'a "b"\\c',
                    "initial_members": {1: "127.0.0.1:7001", 2: "127.0.0.1:7002"}},
        "raft": {"pre_vote": False, "election_ms": 500, "heartbeat_ms": 50, "lease_ms": 400},
    }
    text = dump_toml(layers, header="two\nlines")
    assert text.startswith("# two\n# lines\n")
    loaded = tomllib.loads(text)
    assert loaded["cluster"]["data_dir"] == 'a "b"\\c'
    cfg = build_config(loaded)
    assert cfg.cluster.initial_members == {1: "127.0.0.1:7001", 2: "127.0.0.1:7002"}
    assert cfg.raft.pre_vote is False


def test_create_then_open_round_trip(tmp_path):
    lc = LocalCluster.create(tmp_path / "c", 3, ports=[7101, 7102, 7103],
                             base={"raft": {"heartbeat_ms": 50, "election_ms": 500,
                                            "lease_ms": 400}})
    lc.validate()
    again = LocalCluster.open(tmp_path / "c")
    assert again.endpoints == ["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"]
    assert again.nodes[2].config_path == tmp_path / "c" / "node-2" / "node.toml"
    cfg = tomllib.loads(again.nodes[2].config_path.read_text())
    assert cfg["raft"]["election_ms"] == 500 and cfg["storage"]["engine"] == "rocksdb"
    assert cfg["cluster"]["data_dir"] == str(tmp_path / "c" / "node-2" / "data")
    assert json.loads((tmp_path / "c" / "cluster.json").read_text())["supervisor_pid"] is None


def test_create_refuses_a_bad_base_before_writing(tmp_path):
    with pytest.raises(LocalClusterError) as e:
        LocalCluster.create(tmp_path / "c", 3, ports=[1, 2, 3],
                            base={"raft": {"lease_ms": 5000}}, base_name="base.toml")
    assert exit_code(e.value) == 3 and "base.toml" in str(e.value)
    assert not (tmp_path / "c").exists()


def test_open_names_what_is_missing_or_damaged(tmp_path):
    with pytest.raises(LocalClusterError) as e:
        LocalCluster.open(tmp_path)
    assert exit_code(e.value) == 3 and "dengine cluster up" in str(e.value)
    (tmp_path / "cluster.json").write_text("{not json")
    with pytest.raises(LocalClusterError) as e:
        LocalCluster.open(tmp_path)
    assert exit_code(e.value) == 3 and "damaged" in str(e.value)


def test_ports_in_use_are_not_picked():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert not port_is_free(busy)
        with pytest.raises(LocalClusterError, match=f"port {busy} is not available") as e:
            pick_ports(2, busy)
        assert exit_code(e.value) == 1
        with pytest.raises(LocalClusterError, match="--base-port 65535") as e:
            pick_ports(2, 65535)
        assert exit_code(e.value) == 2
        ports = pick_ports(3)
        assert len(set(ports)) == 3 and busy not in ports


def _endpoints(args: list[str]) -> tuple[list[str], str]:
    from dengine.cli.client import resolve_endpoints

    p = argparse.ArgumentParser()
    p.add_argument("--endpoints")
    p.add_argument("--data-dir")
    return resolve_endpoints(p.parse_args(args))


def test_endpoints_are_found_in_the_documented_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DENGINE_ENDPOINTS", raising=False)
    with pytest.raises(CliError, match="no cluster to talk to.*--endpoints") as e:
        _endpoints([])  # no default address: a cluster elsewhere is never guessed
    assert e.value.code == 3

    LocalCluster.create(tmp_path / "data", 1, ports=[7201])  # ./data, as the README uses
    found = _endpoints([])
    assert found[0] == ["127.0.0.1:7201"] and found[1].endswith("data/cluster.json")
    LocalCluster.create(tmp_path / "other", 2, ports=[7401, 7402])
    assert _endpoints(["--data-dir", "other"])[0] == ["127.0.0.1:7401", "127.0.0.1:7402"]
    monkeypatch.setenv("DENGINE_ENDPOINTS", "h:1,h:2")
    assert _endpoints(["--data-dir", "other"]) == (["h:1", "h:2"], "DENGINE_ENDPOINTS")
    assert _endpoints(["--endpoints", "a:9"]) == (["a:9"], "--endpoints")
    assert _endpoints(["--endpoints", "http://a:9, https://b:8/,grpc://[::1]:7"]) == (
        ["a:9", "b:8", "[::1]:7"], "--endpoints")
    for bad in ("a:b", "a", "a:0", "a:65536", "http://", "::1:7", "a/b:1"):
        with pytest.raises(CliError) as e:
            _endpoints(["--endpoints", bad])
        assert e.value.code == 2, bad


def _stubborn(tmp_path, ignore_term: bool) -> NodeProc:
    """A NodeProc around a stand-in process, ready once it has printed."""
    code = ("import signal, sys, time\n"
            + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
            + "print('ready', flush=True)\ntime.sleep(60)\n")
    n = NodeProc(1, "127.0.0.1:1", tmp_path / "node.toml", tmp_path / "node.log")
    n.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert n.proc.stdout.readline() == b"ready\n"
    return n


def test_stop_terminates_then_kills_stragglers(tmp_path):
    polite, stubborn = _stubborn(tmp_path, False), _stubborn(tmp_path, True)
    stubborn.node_id = 2
    lc = LocalCluster(tmp_path, {1: polite, 2: stubborn}, "c")
    codes = lc.stop(grace_s=1.0)
    assert codes == {1: -signal.SIGTERM, 2: -signal.SIGKILL}
    assert not polite.running and not stubborn.running
    assert stubborn.exit_description() == "was killed by SIGKILL"


@pytest.mark.timeout(30)
def test_a_second_interrupt_skips_the_grace_period(tmp_path):
    stubborn = _stubborn(tmp_path, True)
    lc = LocalCluster(tmp_path, {1: stubborn}, "c")
    codes = lc.stop(grace_s=600, hurry=lambda: True)
    assert codes == {1: -signal.SIGKILL}


def test_damaged_data_is_never_advised_away():
    from dengine.errors import Corruption

    text = str(Corruption("/d/wal/0001.log", 12, "bad checksum"))
    assert "remove" not in text and "delete" not in text and "keep the directory" in text


def test_a_timeout_names_the_endpoints_and_their_origin():
    line = one_line(_timeout_from(ProposalDropped("leader changed")), "h:1 (from --endpoints)")
    assert line.endswith("; endpoints at h:1 (from --endpoints)"), line


def test_the_local_cluster_library_does_not_import_the_command_line():
    """dengine.local is a library (the demo, benchmarks and tests use it): it raises its own
    typed error and the command line maps that to an exit code, never the other way round."""
    import ast
    import pathlib

    import dengine.local

    found = []
    for f in pathlib.Path(dengine.local.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{f.name}: {n}" for n in names
                      if n == "dengine.cli" or n.startswith("dengine.cli.")]
    assert found == []


def test_a_local_cluster_error_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="usage, config or failed"):
        LocalClusterError("x", "fatal")
