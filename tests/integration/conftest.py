"""Real ``dengine serve`` processes on loopback ports, for the integration scenarios.

Every node is a child process started as ``sys.executable -m dengine serve --config node.toml``
with its own temporary data directory, a free loopback port, short Raft timeouts (so a scenario
takes seconds, not minutes) and the test-only fault switch allowed. Every process a fixture
started is killed when the test ends, failed or not (SIGKILL, then reaped), and a failing
test's report carries the tail of each node's log.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dengine.client import Client, NodeStatus

REPO = Path(__file__).resolve().parents[2]

#: Raft timing for the tests: elections in a fraction of a second, yet a heartbeat well below.
TIMING = {"tick_ms": 10, "heartbeat_ms": 50, "election_ms": 400, "lease_ms": 300}
ELECTION_S = TIMING["election_ms"] / 1000


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports nobody listens on right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_toml(path: Path, layers: dict[str, dict[str, Any]]) -> None:
    lines = []
    for section, values in layers.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    path.write_text("\n".join(lines))


#: Every process started here, killed at interpreter exit too (a teardown that never ran).
_STARTED: list[subprocess.Popen] = []


@atexit.register
def _kill_leftovers() -> None:
    for proc in _STARTED:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
                proc.wait(5)


class NodeProc:
    """One ``dengine serve`` child process; restartable on the same data directory."""

    def __init__(self, node_id: int, address: str, config_path: Path, log_path: Path) -> None:
        self.id = node_id
        self.address = address
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, *extra: str) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        log.write(f"\n===== start {self.starts + 1} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dengine", "serve", "--config", str(self.config_path), *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(self.config_path.parent),
            start_new_session=True,
        )
        log.close()
        _STARTED.append(self.proc)
        self.starts += 1

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 10) -> int | None:
        """Send ``sig`` (SIGKILL: a crash) and reap the process; returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    @property
    def data_dir(self) -> Path:
        return self.config_path.parent / "data"

    def set_faults(self, drop_to: Any = (), drop_from: Any = ()) -> None:
        """Flip the node's test-only fault switch: drop traffic to / from the given peer ids.

        The node (``network.fault_injection = true``) watches ``<data_dir>/FAULTS``, a JSON
        ``{"drop_to": [...], "drop_from": [...]}``; written atomically (temp file + rename).
        """
        import json

        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.data_dir / "FAULTS.tmp"
        tmp.write_text(json.dumps({"drop_to": sorted(drop_to), "drop_from": sorted(drop_from)}))
        os.replace(tmp, self.data_dir / "FAULTS")

    def heal(self) -> None:
        self.set_faults()

    def log_count(self, text: str) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(text)
        except OSError:
            return 0

    async def wait_log(self, text: str, count: int = 1, timeout: float = 15) -> None:
        """Wait until the node's log holds ``text`` at least ``count`` times."""
        deadline = time.monotonic() + timeout
        while self.log_count(text) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"node {self.id} never logged {text!r}:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])


class LocalCluster:
    """``n`` node processes of one cluster; see the module docstring."""

    def __init__(self, root: Path, n: int = 3, *, cluster_id: str = "it", **sections: dict):
        self.root = root
        self.cluster_id = cluster_id
        self.sections = sections
        ports = free_ports(n)
        self.members = {i + 1: f"127.0.0.1:{p}" for i, p in enumerate(ports)}
        self.nodes: dict[int, NodeProc] = {}
        for node_id, addr in self.members.items():
            self._add(node_id, addr, {"initial_members": dict(self.members)})

    def _add(self, node_id: int, address: str, cluster: dict[str, Any]) -> NodeProc:
        d = self.root / f"node-{node_id}"
        d.mkdir(parents=True, exist_ok=True)
        layers: dict[str, dict[str, Any]] = {
            "cluster": {
                "cluster_id": self.cluster_id,
                "node_id": node_id,
                "listen_addr": address,
                "data_dir": str(d / "data"),
                **cluster,
            },
            "raft": dict(TIMING),
            "network": {"fault_injection": True, "backoff_initial_ms": 20, "backoff_max_ms": 200},
            "observability": {"log_level": "info"},
        }
        for section, values in self.sections.items():
            layers.setdefault(section, {}).update(values)
        cfg = d / "node.toml"
        write_toml(cfg, layers)
        node = self.nodes[node_id] = NodeProc(node_id, address, cfg, d / "node.log")
        return node

    def add_joining_node(self, node_id: int, join: str) -> NodeProc:
        """A new node (not started) that will ask ``join`` to add it as a learner."""
        (port,) = free_ports(1)
        address = f"127.0.0.1:{port}"
        self.members[node_id] = address
        return self._add(node_id, address, {"join": join, "initial_members": {node_id: address}})

    @property
    def endpoints(self) -> list[str]:
        return [n.address for n in self.nodes.values()]

    def start(self) -> None:
        for n in self.nodes.values():
            n.start()

    async def partition(self, *groups: Any) -> None:
        """Cut every link between nodes of different groups (each group a set of ids); returns
        once every running node has applied its cut."""
        side = {i: g for g in map(frozenset, groups) for i in g}
        await self._faults(
            {
                n.id: [i for i in self.nodes if i != n.id and side.get(i) != side.get(n.id)]
                for n in self.nodes.values()
            }
        )

    async def heal(self) -> None:
        await self._faults({n: [] for n in self.nodes})

    async def _faults(self, cuts: dict[int, list[int]]) -> None:
        marker = "test fault switch changed"
        seen = {i: self.nodes[i].log_count(marker) for i in cuts}
        for i, cut in cuts.items():
            self.nodes[i].set_faults(drop_to=cut, drop_from=cut)
        for i in cuts:
            if self.nodes[i].running:
                await self.nodes[i].wait_log(marker, seen[i] + 1)

    def kill_all(self) -> None:
        for n in self.nodes.values():
            n.kill()

    def client(self, **kw: Any) -> Client:
        kw.setdefault("timeout", 10)
        return Client(self.endpoints, **kw)

    def logs(self) -> str:
        return "\n".join(
            f"----- node {n.id} ({n.address}) -----\n{n.log_tail()}" for n in self.nodes.values()
        )

    # --------------------------------------------------------------- waiting for the cluster

    async def statuses(self, c: Client, ids: Any = None) -> dict[int, NodeStatus]:
        """Status of each running node (those that answer)."""
        out: dict[int, NodeStatus] = {}
        for n in self.nodes.values():
            if (ids is not None and n.id not in ids) or not n.running:
                continue
            with contextlib.suppress(Exception):
                out[n.id] = await c.status(n.address, timeout=0.5)
        return out

    async def wait_leader(
        self, c: Client, *, among: Any = None, timeout: float = 15, not_id: int | None = None
    ) -> NodeStatus:
        """Wait until a running node (of ``among``) says it leads and the others agree."""
        deadline = time.monotonic() + timeout
        last: dict[int, NodeStatus] = {}
        while time.monotonic() < deadline:
            self._check_alive()
            last = await self.statuses(c, among)
            leaders = [s for s in last.values() if s.is_leader and s.id != not_id]
            if len(leaders) == 1:
                lead = leaders[0]
                if all(s.leader_id == lead.id for s in last.values() if s.term == lead.term):
                    return lead
            await asyncio.sleep(0.05)
        raise AssertionError(f"no leader within {timeout}s: {last}\n{self.logs()}")

    async def wait_applied(
        self, c: Client, node_id: int, index: int, *, timeout: float = 20
    ) -> NodeStatus:
        """Wait until ``node_id`` has applied ``index``."""
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(Exception):
                st = await c.status(self.nodes[node_id].address, timeout=0.5)
                if st.applied_index >= index:
                    return st
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"node {node_id} did not apply {index} within {timeout}s: {st}\n{self.logs()}"
        )

    def _check_alive(self) -> None:
        for n in self.nodes.values():
            if n.proc is not None and n.proc.returncode is None and n.proc.poll() is not None:
                raise AssertionError(
                    f"node {n.id} exited with {n.proc.returncode}:\n{n.log_tail()}"
                )


@pytest.fixture
def cluster_factory(tmp_path, request) -> Iterator[Callable[..., LocalCluster]]:
    """``make(n=3, **sections)``: a LocalCluster under tmp_path, killed at teardown."""
    made: list[LocalCluster] = []

    def make(n: int = 3, *, start: bool = True, **kw: Any) -> LocalCluster:
        lc = LocalCluster(tmp_path / f"c{len(made)}", n, **kw)
        made.append(lc)
        if start:
            lc.start()
        return lc

    yield make
    failed = getattr(request.node, "rep_call", None)
    for lc in made:
        lc.kill_all()
        if failed is not None and failed.failed:
            print(lc.logs())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def arun(coro_fn: Callable[[], Awaitable[Any]], timeout: float = 90) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(main())


@pytest.fixture
def run() -> Callable[..., Any]:
    """``run(coro_fn, timeout=90)``: one scenario on a fresh asyncio loop."""
    return arun


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    """One started 3-node cluster for the scenarios of a module that leave it healthy."""
    lc = LocalCluster(tmp_path_factory.mktemp("shared"), 3)
    lc.start()
    try:
        yield lc
    finally:
        lc.kill_all()


class Writer:
    """A background writer: puts ``<prefix><n>`` one after another and records which writes
    were acknowledged (those must never be lost) and which failed (outcome unknown)."""

    def __init__(
        self, client: Client, prefix: str = "w/", timeout: float = 5, concurrency: int = 1
    ) -> None:
        self.client = client
        self.concurrency = concurrency
        self.prefix = prefix
        self.timeout = timeout
        self.acked: dict[bytes, bytes] = {}
        self.failed: list[tuple[bytes, BaseException]] = []
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()

    async def _run(self, lane: int) -> None:
        n = 0
        while not self._stop.is_set():
            key = f"{self.prefix}{lane:03}/{n:06}".encode()
            value = f"value-{lane}-{n}".encode()
            n += 1
            try:
                await self.client.put(key, value, timeout=self.timeout)
            except Exception as e:  # noqa: BLE001 - recorded: the outcome is unknown
                self.failed.append((key, e))
            else:
                self.acked[key] = value

    def start(self) -> Writer:
        self._task = asyncio.ensure_future(
            asyncio.gather(*(self._run(i) for i in range(self.concurrency)))
        )
        return self

    async def wait_acked(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {len(self.acked)} writes acknowledged in {timeout}s; "
                    f"failures: {self.failed[-3:]}"
                )
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def check_all_readable(self, client: Client, **kw: Any) -> None:
        """Every acknowledged write reads back with its value (linearizable reads)."""
        keys = sorted(self.acked)
        for i in range(0, len(keys), 200):
            chunk = keys[i : i + 200]
            got = await client.get_many(chunk, **kw)
            missing = [k for k in chunk if k not in got or got[k].value != self.acked[k]]
            assert not missing, f"acknowledged writes lost: {missing[:5]} (of {len(missing)})"
            # each key is written once: a version above 1 means a retry was applied twice
            twice = [k for k in chunk if got[k].version != 1]
            assert not twice, f"writes applied more than once: {twice[:5]} (of {len(twice)})"


@pytest.fixture
def writer_cls() -> type[Writer]:
    return Writer


@pytest.fixture
def election_s() -> float:
    """The base election timeout of the test clusters, in seconds."""
    return ELECTION_S
