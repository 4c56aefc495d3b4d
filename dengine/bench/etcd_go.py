"""The ``etcd-go`` benchmark target: etcd driven by its own Go client, at its best.

Theory of operation
-------------------
Python's grpc.aio costs more per call than Go's gRPC, so etcd driven from Python is not etcd at
its best. This target hands a whole workload to a small Go program of this repo
(``benches/etcd-go/main.go``, on etcd's ``clientv3``) that runs it the way
:func:`dengine.bench.workloads.run_workload` does (preload, warm-up, ``clients`` callers over
``connections`` connections to the leader, one shared operation counter) and prints its
figures as JSON (a ``-spread`` workload: connection ``i`` to endpoint ``i mod n`` instead of
all to the leader, as the etcd target does). The program prints ``start`` and ``end`` around its timed part, so the
servers' CPU is read around exactly that part, as for the Python targets; the client's CPU is
the Go process's own, measured by itself.

The program is built on first use with Debian's ``golang-go`` and ``golang-etcd-server-dev``
(GOPATH mode, nothing downloaded) and cached under ``~/.cache/dengine`` by the hash of its
source. Where it cannot be built, :func:`etcd_go_unavailable` says why and the benchmark skips
the target with that message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dengine.bench.stats import Summary

__all__ = ["EtcdGoTarget", "EtcdGoUnavailable", "etcd_go_binary", "etcd_go_unavailable",
           "GO_SOURCE"]

#: The Go program's source, in a checkout of this repo (not shipped in the wheel).
GO_SOURCE = Path(__file__).resolve().parents[2] / "benches" / "etcd-go"
#: Where Debian's golang-etcd-server-dev puts etcd's Go sources (GOPATH layout).
DEBIAN_GOPATH = "/usr/share/gocode"
INSTALL_HINT = ("the etcd-go target needs Go and etcd's Go client: on Debian/Ubuntu "
                "`apt-get install golang-go golang-etcd-server-dev`")


class EtcdGoUnavailable(RuntimeError):
    """The Go load generator cannot be built or run here; the message says why."""


def _source_dir() -> Path:
    return Path(os.environ.get("DENGINE_ETCD_GO_SRC", GO_SOURCE))


def etcd_go_unavailable() -> str | None:
    """Why the Go load generator cannot be built here, or None when it can."""
    src = _source_dir() / "main.go"
    if not src.is_file():
        return f"{src} not found (the etcd-go target runs from a checkout of dengine)"
    if shutil.which("go") is None:
        return INSTALL_HINT
    gopath = os.environ.get("DENGINE_ETCD_GOPATH", DEBIAN_GOPATH)
    if not (Path(gopath) / "src" / "go.etcd.io" / "etcd" / "clientv3").is_dir():
        return f"etcd's clientv3 is not under {gopath}/src: {INSTALL_HINT}"
    return None


def etcd_go_binary() -> Path:
    """Build the Go program if its cached build is missing or stale; return its path.
    Raises EtcdGoUnavailable naming why it cannot be built."""
    why = etcd_go_unavailable()
    if why is not None:
        raise EtcdGoUnavailable(why)
    src = _source_dir()
    digest = hashlib.sha256((src / "main.go").read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dengine"
    out = cache / f"etcd-go-bench-{digest}"
    if out.is_file():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GO111MODULE": "off", "GOFLAGS": "",
           "GOPATH": os.environ.get("DENGINE_ETCD_GOPATH", DEBIAN_GOPATH),
           "GOCACHE": str(cache / "go-build")}
    tmp = out.with_suffix(".tmp")
    proc = subprocess.run(["go", "build", "-o", str(tmp), "."], cwd=src, env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise EtcdGoUnavailable(f"building {src} failed: {proc.stderr.strip()[-2000:]}")
    tmp.replace(out)
    return out


class EtcdGoTarget:
    """etcd through its Go client: runs whole workloads (``run_spec``) in a Go process."""

    name = "etcd-go"
    spreads_reads = True

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 10.0) -> None:
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.binary = etcd_go_binary()

    async def open(self, connections: int, spread: bool = False) -> None:
        return None  # the Go program opens its own connections (run_spec: spec.spread)

    async def close(self) -> None:
        return None

    async def run_spec(self, spec: Any, *, preload: bool = True,
                       cpu: Callable[[], dict[str, float]] | None = None) -> Summary:
        """Run ``spec`` in the Go program; the same fields as a Python target's summary."""
        args = [str(self.binary), "-endpoints", ",".join(self.endpoints),
                "-ops", str(spec.ops), "-clients", str(spec.clients),
                "-conns", str(spec.connections), "-read-ratio", str(spec.read_ratio),
                "-consistency", "serializable" if spec.consistency == "serializable"
                else "linearizable",
                "-key-bytes", str(spec.key_bytes), "-value-bytes", str(spec.value_bytes),
                "-key-space", str(spec.key_space), "-warmup", str(spec.warmup_ops),
                "-seed", str(spec.seed), f"-preload={'true' if preload else 'false'}",
                f"-spread={'true' if spec.spread else 'false'}",
                "-timeout", f"{self.timeout}s"]
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        cpu0: dict[str, float] = {}
        cpu1: dict[str, float] = {}
        result: dict[str, Any] | None = None
        try:
            async for raw in proc.stdout:
                line = raw.decode().strip()
                if line == "start":
                    cpu0 = cpu() if cpu is not None else {}
                elif line == "end":
                    cpu1 = cpu() if cpu is not None else {}
                elif line.startswith("{"):
                    result = json.loads(line)
            err = (await proc.stderr.read()).decode() if proc.stderr else ""
            code = await proc.wait()
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if code != 0 or result is None:
            raise RuntimeError(f"etcd-go-bench exited {code}: {err.strip()[-1000:]}")
        done = max(1, result["ops"] + result["errors"])
        extra: dict[str, Any] = {
            "connections": spec.connections, "clients": spec.clients,
            "consistency": spec.consistency if spec.read_ratio else None,
            "read_ratio": spec.read_ratio, "key_bytes": spec.key_bytes,
            "value_bytes": spec.value_bytes, **({"spread": True} if spec.spread else {})}
        if cpu is not None:
            per_op = {k: round(1e6 * (v - cpu0.get(k, 0.0)) / done, 1)
                      for k, v in cpu1.items() if k != "client"}
            per_op["client"] = round(1e6 * result.get("cpu_s", 0.0) / done, 1)
            extra["cpu_us_per_op"] = per_op
        if result.get("first_error"):
            extra["first_error"] = result["first_error"]
        elapsed = float(result["elapsed_s"])
        return Summary(workload=spec.name, target=self.name, ops=int(result["ops"]),
                       errors=int(result["errors"]), misses=int(result["misses"]),
                       elapsed_s=elapsed,
                       throughput=result["ops"] / elapsed if elapsed > 0 else 0.0,
                       avg_ms=result["avg_ms"], p50_ms=result["p50_ms"],
                       p99_ms=result["p99_ms"], p999_ms=result["p999_ms"],
                       max_ms=result["max_ms"], extra=extra)
