"""Config: layering (file < environment < flags), validation, derived keys, ticks."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from dengine.config import (
    Config,
    RaftTicks,
    add_config_flags,
    build_config,
    env_overrides,
    load_config,
    load_config_from_args,
    overrides_from_args,
    overrides_from_dotted,
    render_toml,
)
from dengine.errors import ConfigError


def _write(tmp_path, text: str):
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_defaults_make_a_local_three_node_cluster():
    nodes = [load_config(environ={"DENGINE_CLUSTER__NODE_ID": str(i)}) for i in (1, 2, 3)]
    listen = {c.cluster.listen_addr for c in nodes}
    data = {c.cluster.data_dir for c in nodes}
    assert len(listen) == 3 and len(data) == 3
    for c in nodes:
        assert c.cluster.listen_addr == c.cluster.initial_members[c.cluster.node_id]
        assert c.cluster.advertise_addr == c.cluster.listen_addr
        assert c.storage.engine == "rocksdb" and c.storage.sync is True
        assert c.network.fault_injection is False and c.tls.enabled is False


def test_config_is_frozen():
    c = load_config(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.raft.tick_ms = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.cluster.initial_members[9] = "x:1"  # type: ignore[index]


def test_toml_file_is_read(tmp_path):
    path = _write(
        tmp_path,
        """
[cluster]
cluster_id = "prod"
node_id = 5
data_dir = "/var/lib/dengine"
[cluster.initial_members]
5 = "10.0.0.5:7000"
6 = "10.0.0.6:7000"
7 = "10.0.0.7:7000"
[raft]
heartbeat_ms = 50
election_ms = 500
lease_ms = 400
pre_vote = false
[observability]
log_format = "json"
""",
    )
    c = load_config(path, environ={})
    assert c.cluster.cluster_id == "prod"
    assert dict(c.cluster.initial_members) == {
        5: "10.0.0.5:7000",
        6: "10.0.0.6:7000",
        7: "10.0.0.7:7000",
    }
    assert c.cluster.listen_addr == "10.0.0.5:7000"
    assert c.cluster.data_dir == "/var/lib/dengine"
    assert c.raft.heartbeat_ms == 50 and c.raft.pre_vote is False
    assert c.observability.log_format == "json"


def test_layers_env_over_file_and_flags_over_env(tmp_path):
    path = _write(tmp_path, "[raft]\nheartbeat_ms = 50\nelection_ms = 600\nlease_ms = 500\n")
    env = {"DENGINE_RAFT__HEARTBEAT_MS": "60", "DENGINE_RAFT__ELECTION_MS": "700"}
    c = load_config(path, environ=env)
    assert (c.raft.heartbeat_ms, c.raft.election_ms, c.raft.lease_ms) == (60, 700, 500)
    c = load_config(path, environ=env, overrides={"raft.heartbeat-ms": "70"})
    assert (c.raft.heartbeat_ms, c.raft.election_ms) == (70, 700)


def test_the_client_port_is_off_by_default_and_set_by_file_env_or_flag(tmp_path):
    assert load_config().cluster.client_listen_addr == ""
    path = _write(tmp_path, '[cluster]\nclient_listen_addr = "127.0.0.1:7101"\n')
    assert load_config(path).cluster.client_listen_addr == "127.0.0.1:7101"
    env = {"DENGINE_CLUSTER__CLIENT_LISTEN_ADDR": "0.0.0.0:7102"}
    assert load_config(path, environ=env).cluster.client_listen_addr == "0.0.0.0:7102"
    c = load_config(path, environ=env, overrides={"cluster.client-listen-addr": "127.0.0.1:0"})
    assert c.cluster.client_listen_addr == "127.0.0.1:0"


def test_env_parsing_of_each_type():
    env = {
        "DENGINE_RAFT__PRE_VOTE": "off",
        "DENGINE_RAFT__MAX_INFLIGHT_MSGS": "1_000",
        "DENGINE_CLUSTER__INITIAL_MEMBERS": "4=127.0.0.1:9004, 5=127.0.0.1:9005",
        "DENGINE_CLUSTER__NODE_ID": "4",
        "DENGINE_PURE_PYTHON": "1",  # not a config key: no double underscore
    }
    c = load_config(environ=env)
    assert c.raft.pre_vote is False
    assert c.raft.max_inflight_msgs == 1000
    assert dict(c.cluster.initial_members) == {4: "127.0.0.1:9004", 5: "127.0.0.1:9005"}
    assert env_overrides({"OTHER": "1", "DENGINE_X": "1"}) == {}


@pytest.mark.parametrize(
    "env, key",
    [
        ({"DENGINE_RAFT__HEARTBEAT": "5"}, "raft.heartbeat"),
        ({"DENGINE_RAFTS__HEARTBEAT_MS": "5"}, "rafts"),
        ({"DENGINE_RAFT__TICK_MS": "ten"}, "raft.tick_ms"),
        ({"DENGINE_RAFT__PRE_VOTE": "maybe"}, "raft.pre_vote"),
        ({"DENGINE_STORAGE__ENGINE": "sqlite"}, "storage.engine"),
        ({"DENGINE_OBSERVABILITY__METRICS_PORT": "70000"}, "observability.metrics_port"),
        ({"DENGINE_CLUSTER__NODE_ID": "0"}, "cluster.node_id"),
        ({"DENGINE_CLUSTER__NODE_ID": "9"}, "cluster.node_id"),
        ({"DENGINE_CLUSTER__INITIAL_MEMBERS": "1:127.0.0.1:1"}, "cluster.initial_members"),
        ({"DENGINE_CLUSTER__LISTEN_ADDR": "localhost"}, "cluster.listen_addr"),
        ({"DENGINE_CLUSTER__CLUSTER_ID": " "}, "cluster.cluster_id"),
        ({"DENGINE_TLS__ENABLED": "true"}, "tls.enabled"),
        ({"DENGINE_CLUSTER__CLIENT_LISTEN_ADDR": "7100"}, "cluster.client_listen_addr"),
    ],
)
def test_bad_values_name_the_key(env, key):
    with pytest.raises(ConfigError) as info:
        load_config(environ=env)
    assert info.value.key == key
    assert info.value.allowed
    assert key in str(info.value)


def test_bad_types_in_the_file_are_refused(tmp_path):
    for text, key in [
        ("[raft]\npre_vote = 1\n", "raft.pre_vote"),
        ("[raft]\ntick_ms = true\n", "raft.tick_ms"),
        ("[raft]\ntick_ms = 1.5\n", "raft.tick_ms"),
        ("[storage]\nengine = 3\n", "storage.engine"),
        ("raft = 3\n", "raft"),
        ('[cluster.initial_members]\nx = "h:1"\n', "cluster.initial_members.x"),
        ("[cluster.initial_members]\n1 = 7\n", "cluster.initial_members.1"),
    ]:
        with pytest.raises(ConfigError) as info:
            load_config(_write(tmp_path, text), environ={})
        assert info.value.key == key, text


def test_broken_or_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="valid TOML"):
        load_config(_write(tmp_path, "[raft\n"), environ={})
    with pytest.raises(ConfigError, match="readable file"):
        load_config(tmp_path / "nope.toml", environ={})


@pytest.mark.parametrize(
    "raft, key",
    [
        ({"heartbeat_ms": 400, "election_ms": 1000}, "raft.election_ms"),  # not well below
        ({"lease_ms": 1000}, "raft.lease_ms"),  # lease not shorter than election
        ({"lease_ms": 1200}, "raft.lease_ms"),
        ({"tick_ms": 30}, "raft.heartbeat_ms"),  # tick does not divide 100
        ({"tick_ms": 20, "lease_ms": 810}, "raft.lease_ms"),
        ({"compaction_tail_entries": 20_000}, "raft.compaction_tail_entries"),
        ({"max_msg_bytes": 16 * 1024 * 1024}, "raft.max_msg_bytes"),
    ],
)
def test_contradictions_are_refused(raft, key):
    with pytest.raises(ConfigError) as info:
        build_config({"raft": raft})
    assert info.value.key == key


def test_other_contradictions():
    with pytest.raises(ConfigError) as info:
        build_config({"network": {"backoff_initial_ms": 5000}})
    assert info.value.key == "network.backoff_initial_ms"
    with pytest.raises(ConfigError) as info:
        build_config({"cluster": {"node_id": 4, "join": "127.0.0.1:7001"}})
    assert info.value.key == "cluster.listen_addr"
    c = build_config(
        {"cluster": {"node_id": 4, "join": "127.0.0.1:7001", "listen_addr": "127.0.0.1:7004"}}
    )
    assert c.cluster.join == "127.0.0.1:7001" and c.cluster.advertise_addr == "127.0.0.1:7004"


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        build_config({"raft": {"tick_ms": 0}})


def test_to_ticks():
    c = build_config(
        {"raft": {"tick_ms": 20, "heartbeat_ms": 60, "election_ms": 400, "lease_ms": 300}}
    )
    assert c.to_ticks() == RaftTicks(election_ticks=20, heartbeat_ticks=3, lease_ticks=15)
    assert all(type(t) is int for t in c.raft.to_ticks())


def test_overrides_from_dotted():
    assert overrides_from_dotted({"raft.heartbeat-ms": 5, "raft.tick_ms": 1}) == {
        "raft": {"heartbeat_ms": 5, "tick_ms": 1}
    }
    with pytest.raises(ConfigError):
        overrides_from_dotted({"heartbeat_ms": 5})


def test_a_flag_for_every_key():
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    defaults = Config().to_dict()
    flags = {a.dest for a in parser._actions if "." in a.dest}
    assert flags == {f"{s}.{k}" for s, keys in defaults.items() for k in keys}
    args = parser.parse_args(["--raft.heartbeat-ms", "50", "--storage.sync", "false"])
    assert overrides_from_args(args) == {"raft.heartbeat_ms": "50", "storage.sync": "false"}
    c = load_config_from_args(args, environ={"DENGINE_RAFT__HEARTBEAT_MS": "70"})
    assert c.raft.heartbeat_ms == 50 and c.storage.sync is False


def test_config_file_flag(tmp_path):
    path = _write(tmp_path, '[storage]\nengine = "memory"\n')
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(["--config", str(path), "--statemachine.engine", "memory"])
    c = load_config_from_args(args, environ={})
    assert c.storage.engine == "memory" and c.statemachine.engine == "memory"


def test_to_dict_round_trips():
    c = load_config(environ={"DENGINE_CLUSTER__NODE_ID": "3"})
    assert build_config(c.to_dict()) == c


def test_core_config_is_in_ticks():
    from dengine.raft.config import RaftConfig

    c = build_config(
        {"raft": {"tick_ms": 20, "heartbeat_ms": 60, "election_ms": 400, "lease_ms": 300,
                  "pre_vote": False, "max_inflight_msgs": 7}}
    )  # fmt: skip
    core = c.core_config()
    assert isinstance(core, RaftConfig)
    assert (core.election_ticks, core.heartbeat_ticks, core.lease_ticks) == (20, 3, 15)
    assert core.pre_vote is False and core.check_quorum is True
    assert core.max_inflight_msgs == 7 and core.max_msg_bytes == c.raft.max_msg_bytes
    assert c.core_config(max_msg_entries=5).max_msg_entries == 5
    # The defaults satisfy the core's own checks too.
    assert load_config(environ={}).core_config().election_ticks == 100


def test_lazy_commit_is_on_by_default_and_reaches_the_core():
    assert load_config(environ={}).core_config().commit_on_tick is True
    off = load_config(environ={"DENGINE_RAFT__LAZY_COMMIT": "false"})
    assert off.raft.lazy_commit is False and off.core_config().commit_on_tick is False


def test_render_toml_reads_back_the_same(tmp_path):
    c = build_config(
        {
            "cluster": {"cluster_id": 'odd "id" \\ here', "node_id": 2, "data_dir": "/d"},
            "raft": {"pre_vote": False},
            "observability": {"log_format": "json"},
        }
    )
    text = render_toml(c)
    assert "# leader heartbeat interval" in text
    assert load_config(_write(tmp_path, text), environ={}) == c
    assert load_config(_write(tmp_path, render_toml(Config())), environ={}) == load_config(
        environ={}
    )


def test_lease_is_bounded_by_the_election_timeout_minus_the_clock_drift():
    # (1000 - 10) ms * 0.95 / 1.05 = 895.7 ms: 890 passes, 900 is refused naming both keys.
    build_config({"raft": {"lease_ms": 890}})
    with pytest.raises(ConfigError) as info:
        build_config({"raft": {"lease_ms": 900}})
    assert info.value.key == "raft.lease_ms"
    assert "raft.max_clock_drift_pct" in str(info.value) and "at most 895" in str(info.value)
    # no drift allowed: up to election_ms - tick_ms; a larger drift shortens the lease
    build_config({"raft": {"lease_ms": 900, "max_clock_drift_pct": 0}})
    with pytest.raises(ConfigError):
        build_config({"raft": {"lease_ms": 800, "max_clock_drift_pct": 15}})
    assert build_config({}).raft.core_config().max_clock_drift == 0.05
