"""A local cluster of real ``dengine serve`` processes on loopback, for ``cluster up`` and the demo.

Theory of operation
-------------------
A local cluster lives in one directory::

    DIR/cluster.json            what `dengine cluster up` recorded: cluster id, node ids,
                                addresses, files, and the pids while it runs
    DIR/node-<id>/node.toml     the node's config (written once; edit it freely)
    DIR/node-<id>/node.log      the node's output
    DIR/node-<id>/data/         the node's storage

:meth:`LocalCluster.create` picks the ports, writes the files and validates each node's config
with the same loader ``dengine serve`` uses, so a bad value is refused before any process
starts. :meth:`LocalCluster.open` reads them back: re-running reuses the data, the ports and the
config. Each node is a child process (``python -m dengine serve --config node.toml``) in its own
session, so a Ctrl-C in the terminal reaches only the supervisor, which then stops the nodes in
order: SIGTERM to each, a grace period, SIGKILL to stragglers, every child reaped.

Client commands find the cluster through ``cluster.json`` in their ``--data-dir`` (default
``./data``; see :mod:`dengine.cli.endpoints`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dengine.errors import ConfigError, LocalClusterError
from dengine.local.pids import pid_runs, wait_gone

if TYPE_CHECKING:
    from dengine.client.types import ClientTLS

__all__ = [
    "STATE_FILE",
    "DEFAULT_DATA_DIR",
    "DEFAULT_BASE_PORT",
    "NodeProc",
    "LocalCluster",
    "pick_ports",
    "free_ports",
    "port_is_free",
]

STATE_FILE = "cluster.json"
DEFAULT_DATA_DIR = "data"
DEFAULT_BASE_PORT = 7001
HOST = "127.0.0.1"


# ---------------------------------------------------------------------------------------------
# Ports


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on ``host:port`` (a socket in TIME_WAIT does not count)."""
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports the OS picks, free right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def pick_ports(n: int, base: int | None = None) -> list[int]:
    """``base, base+1, ...`` when given (all must be free); otherwise the default ports
    7001... when they are all free, else ports the OS picks."""
    if base is not None:
        if not 1 <= base or base + n - 1 > 65535:
            raise LocalClusterError(
                f"--base-port {base}: {n} node(s) need ports {base}..{base + n - 1}, but ports "
                f"go from 1 to 65535; choose a base port of at most {65536 - n}",
                LocalClusterError.USAGE)
        ports = list(range(base, base + n))
        busy = [p for p in ports if not port_is_free(p)]
        if busy:
            raise LocalClusterError(
                f"port {busy[0]} is not available; choose another --base-port")
        return ports
    ports = list(range(DEFAULT_BASE_PORT, DEFAULT_BASE_PORT + n))
    if all(port_is_free(p) for p in ports):
        return ports
    return free_ports(n)


# ---------------------------------------------------------------------------------------------
# Config files


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump_toml(layers: Mapping[str, Mapping[str, Any]], header: str = "") -> str:
    """A ``{section: {key: value}}`` dict (values: str, int, bool, or an id -> address table
    such as ``initial_members``) as TOML text."""
    lines = [f"# {h}" for h in header.splitlines()]
    for section, values in layers.items():
        tables = {k: v for k, v in values.items() if isinstance(v, Mapping)}
        lines += ["", f"[{section}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if k not in tables]
        for key, table in tables.items():
            lines += ["", f"[{section}.{key}]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file is a ConfigError naming it."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("<file>", str(path), f"valid TOML ({e})") from e
    except OSError as e:
        raise ConfigError("<file>", str(path), f"a readable file ({e.strerror})") from e


def _validate(path: Path) -> None:
    """Load ``path`` as ``dengine serve`` will (environment included); refuse it if invalid."""
    from dengine.config import load_config

    try:
        load_config(path)
    except ConfigError as e:
        raise LocalClusterError(f"{path}: {e}", LocalClusterError.CONFIG) from e


# ---------------------------------------------------------------------------------------------
# Processes


def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The children import the same dengine as this process, wherever it came from."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


# On Linux a node is started through this launcher: it asks the kernel to send the node SIGTERM
# when its supervisor dies (PR_SET_PDEATHSIG survives exec), then becomes the node. So a
# supervisor that is killed outright (SIGKILL, a closed terminal) leaves no orphaned nodes.
_LAUNCHER = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


def _node_command(config_path: Path, detached: bool = False) -> list[str]:
    cmd = ["-m", "dengine", "serve", "--config", str(config_path)]
    if sys.platform.startswith("linux") and not detached:
        return [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *cmd]
    return [sys.executable, *cmd]


class NodeProc:
    """One ``dengine serve`` child process of a local cluster; restartable."""

    def __init__(self, node_id: int, address: str, config_path: Path, log_path: Path) -> None:
        self.node_id = node_id
        self.address = address
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.recorded_pid: int | None = None  # a node this process did not start (pids.py)
        self.killed_pid: int | None = None  # the pid `dengine cluster kill-node` killed

    def start(self, env: Mapping[str, str] | None = None, detached: bool = False) -> None:
        """Start the node; ``detached``: it outlives this process (no parent-death signal)."""
        if self.running:
            raise RuntimeError(f"node {self.node_id} is already running")
        with open(self.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            log.write(f"\n===== {stamp} start {self.starts + 1} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                _node_command(self.config_path, detached),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=_child_env(env), cwd=str(self.config_path.parent),
                start_new_session=True,  # Ctrl-C reaches the supervisor only
            )
        self.starts += 1
        self.recorded_pid = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else self.recorded_pid

    @property
    def running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return pid_runs(self.recorded_pid, self.config_path)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the process to end (reaped if ours); True if so."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        return self.recorded_pid is None or wait_gone(self.recorded_pid, self.config_path,
                                                      timeout)

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def signal(self, sig: int) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                if self.proc is not None:
                    self.proc.send_signal(sig)
                else:
                    os.kill(self.recorded_pid, sig)  # type: ignore[arg-type]

    def exit_description(self) -> str:
        """How the process ended, e.g. "was killed by SIGKILL" or "exited with code 1: why"."""
        rc = self.returncode
        if rc is None:
            return "is running"
        if rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = f"signal {-rc}"
            return f"was killed by {name}"
        return f"exited with code {rc}" + (f": {self.last_log_line()}" if rc else "")

    def last_log_line(self) -> str:
        """The last meaningful line of the node's log (why it exited, usually)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        lines = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("=====")]
        errors = [ln for ln in lines if ln.startswith("dengine: ") or "error" in ln.lower()]
        return (errors or lines or [""])[-1][:300]


class LocalCluster:
    """The nodes of a local cluster and the directory that records them."""

    def __init__(self, root: Path, nodes: Mapping[int, NodeProc], cluster_id: str) -> None:
        self.root = root
        self.nodes: dict[int, NodeProc] = dict(nodes)
        self.cluster_id = cluster_id
        self.env: dict[str, str] = {}

    # -- files ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        root: str | os.PathLike[str],
        n: int,
        *,
        ports: Iterable[int] | None = None,
        base: Mapping[str, Mapping[str, Any]] | None = None,
        base_name: str = "",
        cluster_id: str = "dengine-local",
        etcd_ports: Iterable[int] | None = None,
    ) -> LocalCluster:
        """Write the files of a new ``n``-node cluster under ``root`` (validated first);
        with ``etcd_ports``, node i serves etcd's API on the i-th (``[etcd_api] listen``)."""
        from dengine.config import build_config

        root = Path(root).resolve()
        ports = list(ports) if ports is not None else pick_ports(n)
        members = {i + 1: f"{HOST}:{p}" for i, p in enumerate(ports[:n])}
        base = {k: dict(v) for k, v in (base or {}).items()}
        cluster_id = str(base.get("cluster", {}).get("cluster_id", cluster_id))
        files: dict[int, dict[str, Any]] = {}
        etcd = list(etcd_ports) if etcd_ports is not None else []
        for node_id, addr in members.items():
            layers = {k: dict(v) for k, v in base.items()}
            if etcd:
                layers["etcd_api"] = {"listen": f"{HOST}:{etcd[node_id - 1]}"}
            cl = layers.setdefault("cluster", {})
            cl.update(cluster_id=cluster_id, node_id=node_id, listen_addr=addr,
                      data_dir=str(root / f"node-{node_id}" / "data"), initial_members=members)
            cl.pop("advertise_addr", None)
            cl.pop("join", None)
            tls = layers.get("tls", {})  # "{id}" in a path: this node's id (cluster up --tls)
            tls.update({k: v.replace("{id}", str(node_id)) for k, v in tls.items()
                        if isinstance(v, str)})
            layers.setdefault("storage", {}).setdefault("engine", "rocksdb")
            try:
                build_config(layers)
            except ConfigError as e:
                raise LocalClusterError(f"{base_name or 'config'}: {e}",
                                        LocalClusterError.CONFIG) from e
            files[node_id] = layers
        nodes = {}
        for node_id, layers in files.items():
            d = root / f"node-{node_id}"
            d.mkdir(parents=True, exist_ok=True)
            cfg = d / "node.toml"
            cfg.write_text(dump_toml(layers, header=(
                f"Node {node_id} of the local cluster in {root}, written by `dengine cluster up`.\n"
                "Edit freely: re-running `dengine cluster up` keeps this file. Keys not here\n"
                "have their defaults (see `dengine serve --help`).")))
            nodes[node_id] = NodeProc(node_id, members[node_id], cfg, d / "node.log")
        lc = cls(root, nodes, cluster_id)
        lc.save()
        return lc

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> LocalCluster:
        """The cluster recorded in ``root`` (LocalClusterError when there is none or it is
        damaged)."""
        root = Path(root).resolve()
        path = root / STATE_FILE
        try:
            state = json.loads(path.read_text())
            nodes = {
                int(n["id"]): NodeProc(int(n["id"]), str(n["address"]), root / n["config"],
                                       root / n["log"])
                for n in state["nodes"]
            }
            for n in state["nodes"]:
                if isinstance(n.get("pid"), int):
                    nodes[int(n["id"])].recorded_pid = n["pid"]
                if isinstance(n.get("killed_pid"), int):
                    nodes[int(n["id"])].killed_pid = n["killed_pid"]
            cluster_id = str(state.get("cluster_id", ""))
        except FileNotFoundError:
            raise LocalClusterError(f"no local cluster recorded in {root} (no {STATE_FILE}); "
                                    "start one with `dengine cluster up`",
                                    LocalClusterError.CONFIG) from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise LocalClusterError(
                f"{path} is damaged ({e}); the nodes' data in {root}/node-*/data is "
                f"not affected and must be kept: restore {STATE_FILE} from a backup "
                "(each node's address is in its node-<id>/node.toml), or point at "
                "the cluster with --endpoints", LocalClusterError.CONFIG) from e
        return cls(root, nodes, cluster_id)

    @staticmethod
    def exists(root: str | os.PathLike[str]) -> bool:
        return (Path(root) / STATE_FILE).is_file()

    def save(self, supervisor_pid: int | None = None) -> None:
        """Record the cluster (and the pids of the nodes running) in ``cluster.json``."""
        state = {
            "cluster_id": self.cluster_id,
            "endpoints": self.endpoints,
            "supervisor_pid": supervisor_pid,
            "nodes": [
                {"id": n.node_id, "address": n.address,
                 "config": str(n.config_path.relative_to(self.root)),
                 "log": str(n.log_path.relative_to(self.root)),
                 "pid": n.pid if n.running else None, "killed_pid": n.killed_pid}
                for n in self.nodes.values()
            ],
        }
        tmp = self.root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.root / STATE_FILE)

    def recorded_supervisor(self) -> int | None:
        """The pid of a ``cluster up`` still running on this directory, if any."""
        try:
            pid = json.loads((self.root / STATE_FILE).read_text()).get("supervisor_pid")
        except (OSError, ValueError):
            return None
        if not isinstance(pid, int) or pid == os.getpid():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        try:  # a pid left by a supervisor that was killed may belong to another program now
            if b"dengine" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return None
        except OSError:
            pass
        return pid

    def validate(self) -> None:
        """Load every node's config as ``dengine serve`` will; refuse a bad one now."""
        for n in self.nodes.values():
            _validate(n.config_path)

    @property
    def endpoints(self) -> list[str]:
        return [n.address for n in self.nodes.values()]

    @property
    def etcd_endpoints(self) -> list[str]:
        """The nodes' etcd API addresses (``[etcd_api] listen`` in their files; none: off)."""
        out = []
        for n in self.nodes.values():
            listen = read_toml(n.config_path).get("etcd_api", {}).get("listen", "")
            if listen:
                out.append(listen)
        return out

    @property
    def client_tls(self) -> ClientTLS:
        """``Client`` keyword arguments for this cluster (empty unless made with --tls)."""
        from dengine.local.tls import recorded_client_tls

        return recorded_client_tls(self.root)

    # -- processes --------------------------------------------------------------------------
    def busy_ports(self) -> list[tuple[int, str]]:
        """Nodes whose port something else listens on now."""
        out = []
        for n in self.nodes.values():
            host, _, port = n.address.rpartition(":")
            if not n.running and not port_is_free(int(port), host or HOST):
                out.append((n.node_id, n.address))
        return out

    def start(self, ids: Iterable[int] | None = None, detached: bool = False) -> None:
        for node_id in ids if ids is not None else self.nodes:
            self.nodes[node_id].start(self.env, detached)

    def kill(self, node_id: int, sig: int = signal.SIGKILL, timeout: float = 10) -> int | None:
        """Send ``sig`` to one node and reap it; returns its exit code."""
        n = self.nodes[node_id]
        n.signal(sig)
        if not n.wait(timeout):
            n.signal(signal.SIGKILL)
            n.wait(5)
        return n.returncode

    def stop(self, grace_s: float = 10.0, hurry: Any = None) -> dict[int, int]:
        """SIGTERM to every running node, wait up to ``grace_s`` (or until ``hurry()`` is
        true), SIGKILL the stragglers, reap all. Returns each started node's exit code."""
        running = [n for n in self.nodes.values() if n.running]
        for n in running:
            n.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while any(n.running for n in running):
            if time.monotonic() >= deadline or (hurry is not None and hurry()):
                break
            time.sleep(0.05)
        killed = {n.node_id for n in running if n.running}
        for n in running:
            if n.node_id in killed:
                n.signal(signal.SIGKILL)
        for n in running:
            n.wait(10)
        codes = {n.node_id: n.returncode for n in self.nodes.values() if n.proc is not None}
        for n in running:  # not our children: all we know is whether it needed SIGKILL
            if n.proc is None:
                codes[n.node_id] = -signal.SIGKILL if n.node_id in killed else 0
        return codes  # type: ignore[return-value]

    # -- waiting on the cluster -------------------------------------------------------------
    async def statuses(self, client: Any, ids: Iterable[int] | None = None,
                       timeout: float = 0.5) -> dict[int, Any]:
        """NodeStatus of each running node (of ``ids``) that answers, asked at once."""
        nodes = [self.nodes[i] for i in (ids if ids is not None else self.nodes)]
        nodes = [n for n in nodes if n.running]

        async def one(n: NodeProc) -> Any:
            try:
                return await client.status(n.address, timeout=timeout)
            except Exception as e:  # noqa: BLE001 - a node that does not answer is just absent
                return e

        answers = await asyncio.gather(*(one(n) for n in nodes))
        return {n.node_id: a for n, a in zip(nodes, answers, strict=True)
                if not isinstance(a, BaseException)}

    async def wait_leader(self, client: Any, *, among: Iterable[int] | None = None,
                          not_id: int | None = None, timeout: float = 30,
                          cancelled: Callable[[], bool] | None = None) -> Any:
        """The leader's NodeStatus once one running node leads and every other that answers
        agrees (``not_id``: a leader other than that node). None if ``cancelled()``."""
        among = list(among) if among is not None else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cancelled is not None and cancelled():
                return None
            self.check_alive()
            st = await self.statuses(client, among)
            leaders = [s for s in st.values() if s.is_leader and s.id != not_id]
            if len(leaders) == 1:
                lead = leaders[0]
                if all(s.leader_id == lead.id for s in st.values()):
                    return lead
            await asyncio.sleep(0.05)
        raise LocalClusterError(
            f"no leader was elected within {timeout:g}s; see the logs in {self.root}")

    async def wait_applied(self, client: Any, node_id: int, index: int,
                           timeout: float = 30) -> Any:
        """NodeStatus of ``node_id`` once it has applied ``index``."""
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(Exception):
                st = await client.status(self.nodes[node_id].address, timeout=0.5)
                if st.applied_index >= index:
                    return st
            await asyncio.sleep(0.05)
        raise LocalClusterError(
            f"node {node_id} did not apply index {index} within {timeout:g}s "
            f"(last status: {st})")

    def check_alive(self) -> None:
        """Raise when a node that was started has exited on its own."""
        for n in self.nodes.values():
            rc = n.returncode
            if n.proc is not None and rc is not None and rc != -signal.SIGKILL:
                raise LocalClusterError(
                    f"node {n.node_id} {n.exit_description()} (log: {n.log_path})")
