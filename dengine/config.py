"""Typed node configuration: a TOML file, environment overrides, CLI flags, validated at load.

Theory of operation
-------------------
A :class:`Config` is a frozen tree of frozen section dataclasses (``cluster``, ``raft``,
``network``, ``storage``, ``statemachine``, ``tls``, ``auth``, ``observability``,
``etcd_api``). Every key has a default that works for a local three-node cluster on one
machine: only ``cluster.node_id`` differs between the three nodes, and the listen address and
data directory follow from it.

Values are layered, later layers winning::

    defaults  <  TOML file  <  DENGINE_<SECTION>__<KEY> environment  <  CLI flags (--raft.heartbeat-ms)

Each layer is a nested ``{section: {key: value}}`` dict. Values from the file are typed already;
values from the environment and the command line are text and are parsed by the key's type. The
merged dict is validated once, in :func:`build_config`: an unknown section or key, a value of the
wrong type, a value out of range, or a contradiction between keys (a heartbeat not well below the
election timeout, a lease not shorter than it, a tick that does not divide them) raises
:class:`~dengine.errors.ConfigError` naming the key, the value and what is allowed.

The Raft core sees none of this: it is given counts of ticks (:meth:`RaftSection.to_ticks`).
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from dengine.errors import ConfigError

__all__ = [
    "Config",
    "ClusterSection",
    "RaftSection",
    "NetworkSection",
    "StorageSection",
    "StateMachineSection",
    "TlsSection",
    "AuthSection",
    "ObservabilitySection",
    "EtcdApiSection",
    "RaftTicks",
    "ENV_PREFIX",
    "load_config",
    "build_config",
    "env_overrides",
    "overrides_from_dotted",
    "add_config_flags",
    "overrides_from_args",
    "load_config_from_args",
    "render_toml",
]

ENV_PREFIX = "DENGINE_"
MiB = 1024 * 1024

_LOCAL_MEMBERS = MappingProxyType({1: "127.0.0.1:7001", 2: "127.0.0.1:7002", 3: "127.0.0.1:7003"})


def _key(default: Any, help: str, **rules: Any) -> Any:
    """A config key: its default, a one-line help and validation rules (min, max, choices)."""
    if isinstance(default, Mapping):
        frozen = MappingProxyType(dict(default))
        return field(default_factory=lambda: frozen, metadata={"help": help, **rules})
    return field(default=default, metadata={"help": help, **rules})


@dataclass(frozen=True, slots=True)
class ClusterSection:
    """Who this node is and whom it starts with. Empty addresses and data_dir are derived."""

    cluster_id: str = _key(
        "dengine-local", "cluster id carried by every peer message", nonempty=True
    )
    node_id: int = _key(1, "this node's id (> 0)", min=1)
    listen_addr: str = _key(
        "", "host:port to listen on; empty = this node's initial_members address"
    )
    advertise_addr: str = _key("", "host:port peers and clients reach; empty = listen_addr")
    initial_members: Mapping[int, str] = _key(
        _LOCAL_MEMBERS, "node id -> host:port of a new cluster's first members (1=h:p,2=h:p)"
    )
    join: str = _key("", "host:port of a member to ask to add this (new, empty) node")
    client_listen_addr: str = _key(
        "", "host:port of a client-only port (with tls.enabled: TLS without client "
        "certificates, callers named by token); empty = clients use listen_addr only"
    )
    data_dir: str = _key("", "data directory; empty = dengine-data/node-<node_id>")


@dataclass(frozen=True, slots=True)
class RaftSection:
    """Raft timing and flow control in milliseconds and bytes; the core sees ticks."""

    tick_ms: int = _key(10, "length of one logical clock tick", min=1, max=10_000)
    heartbeat_ms: int = _key(100, "leader heartbeat interval", min=1)
    election_ms: int = _key(1000, "base election timeout (randomized up to twice this)", min=1)
    lease_ms: int = _key(800, "leader lease for lease reads; shorter than election_ms", min=1)
    max_clock_drift_pct: int = _key(
        5, "how far (percent) any node's clock rate may be off; bounds lease_ms", min=0, max=49
    )
    pre_vote: bool = _key(True, "run a pre-vote before an election (thesis 9.6)")
    check_quorum: bool = _key(True, "a leader steps down when it loses contact with a quorum")
    lazy_commit: bool = _key(
        True, "a new commit index rides on the next append, or goes out at the next tick"
    )
    max_inflight_msgs: int = _key(256, "unacknowledged appends per follower", min=1)
    max_msg_bytes: int = _key(1 * MiB, "entry bytes per append message", min=1)
    max_batch_entries: int = _key(1024, "proposals per batch", min=1)
    max_batch_bytes: int = _key(1 * MiB, "proposal bytes per batch", min=1)
    max_committed_bytes_per_ready: int = _key(
        64 * MiB, "committed entry bytes applied per turn of the drive loop (peers and clients "
        "are served between turns)", min=1,
    )
    snapshot_interval_entries: int = _key(10_000, "applied entries between snapshots", min=1)
    compaction_tail_entries: int = _key(
        1000, "entries kept behind a snapshot for slow followers", min=0
    )
    compaction_tail_bytes: int = _key(
        32 * MiB, "at most this many entry bytes kept behind a snapshot; 0 = no byte bound",
        min=0
    )
    snapshot_interval_bytes: int = _key(
        32 * MiB, "applied entry bytes between snapshots (whichever limit comes first)", min=1
    )
    snapshot_interval_s: int = _key(
        300, "seconds between snapshots while entries are applied; 0 = no time limit", min=0
    )

    def to_ticks(self) -> RaftTicks:
        """The timeouts as counts of ticks, which is all the core knows of time."""
        return RaftTicks(
            election_ticks=self.election_ms // self.tick_ms,
            heartbeat_ticks=self.heartbeat_ms // self.tick_ms,
            lease_ticks=self.lease_ms // self.tick_ms,
        )

    def core_config(self, **extra: Any) -> Any:
        """The core's :class:`dengine.raft.config.RaftConfig` for these settings (in ticks).

        Only keys the core's config declares are passed; ``extra`` sets or overrides others.
        """
        from dengine.raft.config import RaftConfig

        ticks = self.to_ticks()
        values: dict[str, Any] = {
            "election_ticks": ticks.election_ticks,
            "heartbeat_ticks": ticks.heartbeat_ticks,
            "lease_ticks": ticks.lease_ticks,
            "max_inflight_msgs": self.max_inflight_msgs,
            "max_msg_bytes": self.max_msg_bytes,
            "pre_vote": self.pre_vote,
            "check_quorum": self.check_quorum,
            "max_clock_drift": self.max_clock_drift_pct / 100,
            "max_committed_bytes_per_ready": self.max_committed_bytes_per_ready,
            "commit_on_tick": self.lazy_commit,
        }
        known = {f.name for f in fields(RaftConfig)}
        values = {k: v for k, v in values.items() if k in known}
        values.update(extra)
        return RaftConfig(**values)


class RaftTicks(NamedTuple):
    """Raft timeouts counted in ticks."""

    election_ticks: int
    heartbeat_ticks: int
    lease_ticks: int


@dataclass(frozen=True, slots=True)
class NetworkSection:
    """Peer transport limits and reconnection."""

    max_message_bytes: int = _key(16 * MiB, "largest gRPC message sent or received", min=4096)
    snapshot_chunk_bytes: int = _key(1 * MiB, "snapshot bytes per chunk", min=1)
    connect_timeout_ms: int = _key(2000, "time to wait for a peer stream to open", min=1)
    backoff_initial_ms: int = _key(50, "first reconnect delay", min=1)
    backoff_max_ms: int = _key(2000, "largest reconnect delay", min=1)
    fault_injection: bool = _key(False, "allow the test-only fault switch (never in production)")
    max_snapshot_bytes: int = _key(
        8 * 1024 * MiB, "largest snapshot a follower receives (one transfer at a time)", min=1
    )
    stream_max_in_flight: int = _key(
        4096, "requests of one Batch stream handled or answered-but-unsent at once", min=1
    )
    stream_max_queued_bytes: int = _key(
        16 * MiB, "answer bytes one Batch stream may hold before the client reads them", min=4096
    )
    scan_max_bytes: int = _key(
        4 * MiB, "key and value bytes in one scan page (the rest comes with a continuation); "
        "capped to leave one value's room under max_message_bytes", min=1024,
    )
    max_pending_requests: int = _key(
        10_000, "client requests a node holds at once; past it: RESOURCE_EXHAUSTED", min=1
    )
    max_pending_bytes: int = _key(
        64 * MiB, "client request bytes a node holds at once; past it: RESOURCE_EXHAUSTED",
        min=4096,
    )
    max_apply_lag_entries: int = _key(
        10_000, "committed entries the leader may hold unapplied; past it new writes get "
        "RESOURCE_EXHAUSTED; 0 = no limit", min=0,
    )
    max_streams_per_connection: int = _key(
        256, "concurrent calls one client connection may have open (HTTP/2 streams)", min=4
    )
    keepalive_time_ms: int = _key(10_000, "ping an idle connection this often", min=1000)
    keepalive_timeout_ms: int = _key(5000, "close a connection whose ping is not answered",
                                     min=100)
    max_connection_idle_ms: int = _key(
        300_000, "close a client connection with no calls for this long; 0 = never", min=0
    )
    peer_transport: str = _key(
        "grpc", "how Raft messages travel between peers: grpc (a RaftPeer.Stream call) or tcp "
        "(length-prefixed frames on a TCP stream, mutual TLS as gRPC; snapshots stay on gRPC)",
        choices=("grpc", "tcp"),
    )
    peer_stream_port: int = _key(
        0, "peer_transport tcp: the port of the peer stream, on the host of cluster.listen_addr "
        "(0 = any free port; peers ask for it over gRPC)", min=0, max=65535,
    )
    drain_timeout_ms: int = _key(
        5000, "on SIGTERM: time to hand over leadership and answer requests in flight", min=0
    )


@dataclass(frozen=True, slots=True)
class StorageSection:
    """Where and how the Raft log is kept."""

    engine: str = _key("rocksdb", "log store adapter", choices=("rocksdb", "file", "memory"))
    sync: bool = _key(True, "fsync each persisted batch (off loses acknowledged data on a crash)")
    segment_bytes: int = _key(64 * MiB, "file engine WAL segment size", min=4096)
    quota_bytes: int = _key(
        8 * 1024 * MiB, "disk space for the log and state machine; past it writes are refused "
        "and a NOSPACE alarm is raised; 0 = no quota", min=0
    )


@dataclass(frozen=True, slots=True)
class StateMachineSection:
    """Where the replicated state lives."""

    engine: str = _key("rocksdb", "state machine backend", choices=("rocksdb", "memory"))
    history_revisions: int = _key(10_000, "revisions of watch history kept (older: COMPACTED)",
                                  min=1)
    history_bytes: int = _key(32 * MiB, "at most this many bytes of watch history kept (the "
                              "newest revision always stays)", min=1)
    max_sessions: int = _key(
        4096, "client sessions kept for exactly-once writes (the idlest is evicted past it)",
        min=1,
    )
    session_results: int = _key(16, "results kept per client session", min=1)
    session_lifetime_entries: int = _key(
        1_000_000, "log entries a session may stay idle before it expires (0: only evicted "
        "when the table is full); expiry is by log index, the same on every replica", min=0,
    )


@dataclass(frozen=True, slots=True)
class TlsSection:
    """TLS on the node's port: mutual TLS between peers, TLS (client certificates optional)
    for clients. See dengine.security.tls; ``dengine certs init`` makes a development set."""

    enabled: bool = _key(False, "serve and dial peers over TLS only")
    cert_path: str = _key("", "PEM certificate of this node (SAN dengine-node-<id>)")
    key_path: str = _key("", "PEM private key of cert_path")
    ca_path: str = _key("", "PEM cluster CA: peers' certificates must be issued by it")
    client_ca_path: str = _key("", "PEM CA of client certificates; empty = ca_path")
    reload_ms: int = _key(2000, "how often changed certificate files are re-read", min=1)


@dataclass(frozen=True, slots=True)
class AuthSection:
    """Client authorization (dengine.security.auth): identities from a client certificate's
    common name or a bearer token; roles read, readwrite, admin."""

    enabled: bool = _key(False, "check every client request against the users file")
    users_path: str = _key("", "TOML file of users: role and optional token_sha256 each")


@dataclass(frozen=True, slots=True)
class ObservabilitySection:
    """Logs and metrics."""

    log_level: str = _key(
        "info", "log level", choices=("debug", "info", "warning", "error", "critical")
    )
    log_format: str = _key("console", "log rendering", choices=("console", "json"))
    metrics_port: int = _key(0, "Prometheus metrics port; 0 = off", min=0, max=65535)


@dataclass(frozen=True, slots=True)
class EtcdApiSection:
    """etcd's v3 gRPC API on a port of its own (dengine.etcd): etcdctl and etcd clients."""

    listen: str = _key("", "host:port of the etcd API; empty = off")


_SECTIONS: dict[str, type] = {
    "cluster": ClusterSection,
    "raft": RaftSection,
    "network": NetworkSection,
    "storage": StorageSection,
    "statemachine": StateMachineSection,
    "tls": TlsSection,
    "auth": AuthSection,
    "observability": ObservabilitySection,
    "etcd_api": EtcdApiSection,
}


@dataclass(frozen=True, slots=True)
class Config:
    """The whole node configuration. Build it with :func:`load_config` or :func:`build_config`."""

    cluster: ClusterSection = field(default_factory=ClusterSection)
    raft: RaftSection = field(default_factory=RaftSection)
    network: NetworkSection = field(default_factory=NetworkSection)
    storage: StorageSection = field(default_factory=StorageSection)
    statemachine: StateMachineSection = field(default_factory=StateMachineSection)
    tls: TlsSection = field(default_factory=TlsSection)
    auth: AuthSection = field(default_factory=AuthSection)
    observability: ObservabilitySection = field(default_factory=ObservabilitySection)
    etcd_api: EtcdApiSection = field(default_factory=EtcdApiSection)

    def to_ticks(self) -> RaftTicks:
        return self.raft.to_ticks()

    def core_config(self, **extra: Any) -> Any:
        """The Raft core's own config, counted in ticks (see :meth:`RaftSection.core_config`)."""
        return self.raft.core_config(**extra)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (members as ``{int: str}``), e.g. for printing the effective config."""
        out: dict[str, dict[str, Any]] = {}
        for name in _SECTIONS:
            section = getattr(self, name)
            out[name] = {
                f.name: (dict(v) if isinstance(v := getattr(section, f.name), Mapping) else v)
                for f in fields(section)
            }
        return out


# ---------------------------------------------------------------------------------------------
# Typing and parsing of single values


def _field_kind(f: Any) -> str:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if kind.startswith("Mapping"):
        return "members"
    return kind  # "int", "bool", "str"


def _parse_text(kind: str, key: str, text: str) -> Any:
    """Parse an environment or command-line string as a value of ``kind``."""
    s = text.strip()
    if kind == "str":
        return text
    if kind == "bool":
        low = s.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(key, text, "a boolean: true/false, yes/no, on/off, 1/0")
    if kind == "int":
        try:
            return int(s.replace("_", ""), 10)
        except ValueError:
            raise ConfigError(key, text, "a whole number") from None
    if kind == "members":
        members: dict[Any, Any] = {}
        for part in filter(None, (p.strip() for p in s.split(","))):
            node, sep, addr = part.partition("=")
            if not sep:
                raise ConfigError(key, text, "comma-separated id=host:port pairs, e.g. 1=h:7001")
            members[node.strip()] = addr.strip()
        return members
    raise AssertionError(f"no parser for {kind}")


def _check_addr(key: str, value: str, *, empty_ok: bool, port_zero_ok: bool = False) -> None:
    if not value and empty_ok:
        return
    host, sep, port = value.rpartition(":")
    low = 0 if port_zero_ok else 1
    if not sep or not host or not port.isdigit() or not low <= int(port) < 65536:
        raise ConfigError(key, value, f"host:port with a port in {low}..65535")


def _coerce(section: str, f: Any, value: Any) -> Any:
    """Type-check one value (parsing text for non-text keys) and apply its range rules."""
    key = f"{section}.{f.name}"
    kind = _field_kind(f)
    if isinstance(value, str) and kind != "str":
        value = _parse_text(kind, key, value)
    if kind == "members":
        return _coerce_members(key, value)
    expected = {"int": int, "bool": bool, "str": str}[kind]
    if type(value) is not expected:  # bool is an int subclass: be exact
        raise ConfigError(key, value, f"a {kind}")
    rules = f.metadata
    if "min" in rules and value < rules["min"]:
        raise ConfigError(
            key, value, f">= {rules['min']}" + (f" and <= {rules['max']}" if "max" in rules else "")
        )
    if "max" in rules and value > rules["max"]:
        raise ConfigError(key, value, f"<= {rules['max']}")
    if "choices" in rules and value not in rules["choices"]:
        raise ConfigError(key, value, "one of " + ", ".join(rules["choices"]))
    if rules.get("nonempty") and isinstance(value, str) and not value.strip():
        raise ConfigError(key, value, "a non-empty string")
    return value


def _coerce_members(key: str, value: Any) -> Mapping[int, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "a table of node id -> host:port")
    out: dict[int, str] = {}
    for node, addr in value.items():
        try:
            node_id = int(node) if not isinstance(node, bool) else -1
        except (TypeError, ValueError):
            node_id = -1
        if node_id < 1:
            raise ConfigError(f"{key}.{node}", addr, "a positive integer node id as the key")
        if not isinstance(addr, str):
            raise ConfigError(f"{key}.{node}", addr, "host:port as a string")
        _check_addr(f"{key}.{node}", addr, empty_ok=False)
        out[node_id] = addr
    return MappingProxyType(out)


# ---------------------------------------------------------------------------------------------
# Layers


def _merge(into: dict[str, dict[str, Any]], layer: Mapping[str, Any], origin: str) -> None:
    for section, values in layer.items():
        if section not in _SECTIONS:
            raise ConfigError(
                section, values, "a section: " + ", ".join(_SECTIONS) + f" ({origin})"
            )
        if not isinstance(values, Mapping):
            raise ConfigError(section, values, f"a table of keys ({origin})")
        into.setdefault(section, {}).update(values)


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``DENGINE_RAFT__HEARTBEAT_MS=50`` -> ``{"raft": {"heartbeat_ms": "50"}}``.

    Only names with a double underscore after the prefix are config keys (others, such as
    ``DENGINE_PURE_PYTHON``, belong to someone else); an unknown one is refused at validation.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX) :]:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition("__")
        out.setdefault(section.lower(), {})[key.lower()] = value
    return out


def overrides_from_dotted(dotted: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"raft.heartbeat_ms": 50}`` -> ``{"raft": {"heartbeat_ms": 50}}`` (dashes allowed)."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in dotted.items():
        section, sep, key = name.partition(".")
        if not sep or not key:
            raise ConfigError(name, value, "a dotted key: <section>.<key>, e.g. raft.heartbeat_ms")
        out.setdefault(section, {})[key.replace("-", "_")] = value
    return out


def build_config(*layers: Mapping[str, Any], origin: str = "overrides") -> Config:
    """Merge nested ``{section: {key: value}}`` layers over the defaults and validate them."""
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        _merge(merged, layer, origin)
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        given = dict(merged.get(name, {}))
        known = {f.name: f for f in fields(cls)}
        for key in given:
            if key not in known:
                raise ConfigError(
                    f"{name}.{key}", given[key], "a key of [" + name + "]: " + ", ".join(known)
                )
        values = {key: _coerce(name, known[key], v) for key, v in given.items()}
        sections[name] = cls(**values)
    config = Config(**sections)
    _check_contradictions(config)
    return _derive(config)


def _check_contradictions(c: Config) -> None:
    """Refuse combinations of keys that cannot work together."""
    r, n = c.raft, c.network
    for key in ("heartbeat_ms", "election_ms", "lease_ms"):
        if getattr(r, key) % r.tick_ms:
            raise ConfigError(
                f"raft.{key}", getattr(r, key), f"a multiple of raft.tick_ms ({r.tick_ms})"
            )
    if r.election_ms < 3 * r.heartbeat_ms:
        raise ConfigError(
            "raft.election_ms",
            r.election_ms,
            f">= 3 * raft.heartbeat_ms ({3 * r.heartbeat_ms}): a heartbeat well below the election timeout",
        )
    if r.heartbeat_ms < r.tick_ms:
        raise ConfigError("raft.heartbeat_ms", r.heartbeat_ms, f">= raft.tick_ms ({r.tick_ms})")
    if r.lease_ms >= r.election_ms:
        raise ConfigError("raft.lease_ms", r.lease_ms, f"< raft.election_ms ({r.election_ms})")
    drift = r.max_clock_drift_pct
    if r.lease_ms * (100 + drift) > (r.election_ms - r.tick_ms) * (100 - drift):
        most = (r.election_ms - r.tick_ms) * (100 - drift) // (100 + drift)
        raise ConfigError(
            "raft.lease_ms", r.lease_ms,
            f"at most {most}: lease_ms * (1 + raft.max_clock_drift_pct/100) <= "
            f"(raft.election_ms - raft.tick_ms) * (1 - raft.max_clock_drift_pct/100), with "
            f"max_clock_drift_pct {drift}",
        )
    if r.compaction_tail_entries > r.snapshot_interval_entries:
        raise ConfigError(
            "raft.compaction_tail_entries",
            r.compaction_tail_entries,
            f"<= raft.snapshot_interval_entries ({r.snapshot_interval_entries})",
        )
    if r.max_msg_bytes + 64 * 1024 > n.max_message_bytes:
        raise ConfigError(
            "raft.max_msg_bytes",
            r.max_msg_bytes,
            f"at least 64 KiB below network.max_message_bytes ({n.max_message_bytes})",
        )
    if n.snapshot_chunk_bytes + 64 * 1024 > n.max_message_bytes:
        raise ConfigError(
            "network.snapshot_chunk_bytes",
            n.snapshot_chunk_bytes,
            f"at least 64 KiB below network.max_message_bytes ({n.max_message_bytes})",
        )
    if n.backoff_initial_ms > n.backoff_max_ms:
        raise ConfigError(
            "network.backoff_initial_ms",
            n.backoff_initial_ms,
            f"<= network.backoff_max_ms ({n.backoff_max_ms})",
        )
    if c.tls.enabled and not (c.tls.cert_path and c.tls.key_path and c.tls.ca_path):
        raise ConfigError("tls.enabled", True, "false, or set tls.cert_path, tls.key_path and "
                          "tls.ca_path (dengine certs init makes them)")
    if c.auth.enabled and not c.auth.users_path:
        raise ConfigError("auth.users_path", "", "a users file when auth.enabled is true")
    _check_addr("etcd_api.listen", c.etcd_api.listen, empty_ok=True, port_zero_ok=True)
    if c.etcd_api.listen and c.auth.enabled:
        raise ConfigError("etcd_api.listen", c.etcd_api.listen,
                          "empty while auth.enabled: the etcd API does not check dengine's roles")
    _check_cluster(c.cluster)


def _check_cluster(cl: ClusterSection) -> None:
    _check_addr("cluster.listen_addr", cl.listen_addr, empty_ok=True, port_zero_ok=True)
    _check_addr("cluster.advertise_addr", cl.advertise_addr, empty_ok=True)
    _check_addr("cluster.join", cl.join, empty_ok=True)
    _check_addr("cluster.client_listen_addr", cl.client_listen_addr, empty_ok=True,
                port_zero_ok=True)
    if cl.join:
        if not cl.listen_addr:
            raise ConfigError(
                "cluster.listen_addr", "", "host:port: a joining node must say where it listens"
            )
        return
    if cl.node_id not in cl.initial_members:
        raise ConfigError(
            "cluster.node_id",
            cl.node_id,
            f"one of cluster.initial_members ({', '.join(map(str, sorted(cl.initial_members)))}), "
            "or set cluster.join to add a new node",
        )


def _derive(c: Config) -> Config:
    """Fill the keys left empty on purpose: listen, advertise address and data directory."""
    cl = c.cluster
    listen = cl.listen_addr or cl.initial_members[cl.node_id]
    cluster = replace(
        cl,
        listen_addr=listen,
        advertise_addr=cl.advertise_addr or listen,
        data_dir=cl.data_dir or str(Path("dengine-data") / f"node-{cl.node_id}"),
    )
    return replace(c, cluster=cluster)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults, then the TOML file at ``path``, then ``environ`` (``os.environ`` when None),
    then ``overrides`` (dotted keys, e.g. from :func:`overrides_from_args`)."""
    layers: list[Mapping[str, Any]] = []
    if path is not None:
        try:
            with open(path, "rb") as fh:
                layers.append(tomllib.load(fh))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("<file>", str(path), f"valid TOML ({e})") from e
        except OSError as e:
            raise ConfigError("<file>", str(path), f"a readable file ({e.strerror})") from e
    layers.append(env_overrides(os.environ if environ is None else environ))
    if overrides:
        layers.append(overrides_from_dotted(overrides))
    return build_config(*layers)


def render_toml(config: Config) -> str:
    """The config as a commented TOML file that :func:`load_config` reads back to the same
    config (``dengine serve --print-config``, or a starting point for a node's file)."""
    lines: list[str] = []
    for name, cls in _SECTIONS.items():
        section = getattr(config, name)
        lines.append(f"[{name}]")
        members = None
        for f in fields(cls):
            value = getattr(section, f.name)
            if isinstance(value, Mapping):
                members = (f, value)
                continue
            lines.append(f"# {f.metadata['help']}")
            lines.append(f"{f.name} = {_toml_value(value)}")
        if members is not None:
            f, value = members
            lines.append(f"\n[{name}.{f.name}]  # {f.metadata['help']}")
            lines += [f"{k} = {_toml_value(v)}" for k, v in sorted(value.items())]
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------------------------
# Command line


def add_config_flags(parser: argparse.ArgumentParser, *, config_file_flag: bool = True) -> None:
    """Add ``--config PATH`` and one ``--<section>.<key-with-dashes> VALUE`` flag per key."""
    if config_file_flag:
        parser.add_argument("--config", metavar="PATH", default=None, help="TOML config file")
    for section, cls in _SECTIONS.items():
        group = parser.add_argument_group(f"[{section}]")
        for f in fields(cls):
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            shown = (
                ",".join(f"{k}={v}" for k, v in default.items())
                if isinstance(default, Mapping)
                else default
            )
            group.add_argument(
                f"--{section}.{f.name.replace('_', '-')}",
                dest=f"{section}.{f.name}",
                metavar=_field_kind(f).upper(),
                default=argparse.SUPPRESS,
                help=f"{f.metadata['help']} (default: {shown!s})",
            )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The dotted keys whose flags were given on the command line."""
    return {k: v for k, v in vars(args).items() if "." in k and k.split(".", 1)[0] in _SECTIONS}


def load_config_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Config:
    """:func:`load_config` with the file from ``--config`` and the flags as overrides."""
    return load_config(
        getattr(args, "config", None), environ=environ, overrides=overrides_from_args(args)
    )
