"""A local etcd cluster of real ``etcd`` processes on loopback, for benchmarks.

etcd fsyncs its WAL on every commit by default (``--unsafe-no-fsync`` is never passed), as
dengine does with ``storage.sync = true``: both sides pay for durability. Each member gets a
client and a peer port, its own data directory and its own log file; :meth:`EtcdCluster.stop`
sends SIGTERM, waits, SIGKILLs stragglers and reaps every process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["EtcdCluster", "etcd_binary", "etcd_version", "INSTALL_HINT"]

INSTALL_HINT = ("etcd was not found on PATH. On Debian or Ubuntu: "
                "`sudo apt-get install -y etcd-server etcd-client` (etcd 3.4); elsewhere, "
                "download a release from https://github.com/etcd-io/etcd/releases and put "
                "`etcd` on PATH (or pass --etcd-bin)")


def etcd_binary(path: str | None = None) -> str | None:
    """The etcd executable: ``path`` if given, else the one on PATH (None if absent)."""
    if path:
        return path if Path(path).exists() else None
    return shutil.which("etcd")


def etcd_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({e})"
    for line in out.stdout.splitlines():
        if line.lower().startswith("etcd version"):
            return line.split(":", 1)[1].strip()
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"


# On Linux each member is started through this launcher: it asks the kernel to SIGTERM the
# member when the benchmark process dies (PR_SET_PDEATHSIG survives exec), so a benchmark that
# is killed outright leaves no etcd behind.
_LAUNCHER = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
os.execv(sys.argv[2], sys.argv[2:])
"""


class EtcdCluster:
    """``n`` etcd members under ``root`` on loopback ports from ``ports`` (2 per member)."""

    def __init__(self, root: str | Path, ports: list[int], *, n: int = 3,
                 binary: str = "etcd", token: str = "dengine-bench",
                 tls_dir: str | Path | None = None) -> None:
        if len(ports) < 2 * n:
            raise ValueError(f"{n} etcd members need {2 * n} ports, got {len(ports)}")
        self.root = Path(root)
        self.binary = shutil.which(binary) or binary
        self.token = token
        self.names = [f"etcd{i + 1}" for i in range(n)]
        self.client_ports = ports[:n]
        self.peer_ports = ports[n:2 * n]
        self.procs: list[subprocess.Popen[bytes]] = []
        #: With a directory of ``dengine certs init``: client and peer TLS, both with
        #: client-certificate auth (member i uses node-<i>.pem).
        self.tls_dir = Path(tls_dir) if tls_dir is not None else None

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.client_ports]

    def _command(self, i: int) -> list[str]:
        name, cport, pport = self.names[i], self.client_ports[i], self.peer_ports[i]
        scheme = "https" if self.tls_dir is not None else "http"
        initial = ",".join(f"{nm}={scheme}://127.0.0.1:{pp}"
                           for nm, pp in zip(self.names, self.peer_ports, strict=True))
        cmd = [
            self.binary, "--name", name, "--data-dir", str(self.root / name),
            "--listen-client-urls", f"{scheme}://127.0.0.1:{cport}",
            "--advertise-client-urls", f"{scheme}://127.0.0.1:{cport}",
            "--listen-peer-urls", f"{scheme}://127.0.0.1:{pport}",
            "--initial-advertise-peer-urls", f"{scheme}://127.0.0.1:{pport}",
            "--initial-cluster", initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", self.token, "--log-level", "warn",
            "--logger", "zap",
        ]
        if self.tls_dir is not None:
            d = self.tls_dir
            cert, key, ca = d / f"node-{i + 1}.pem", d / f"node-{i + 1}.key", d / "ca.pem"
            cmd += ["--cert-file", str(cert), "--key-file", str(key), "--trusted-ca-file",
                    str(ca), "--client-cert-auth", "--peer-cert-file", str(cert),
                    "--peer-key-file", str(key), "--peer-trusted-ca-file", str(ca),
                    "--peer-client-cert-auth"]
        return cmd

    def _launch(self, i: int) -> list[str]:
        cmd = self._command(i)
        if sys.platform.startswith("linux"):
            return [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *cmd]
        return cmd

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(self.names):
            log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
            try:
                self.procs.append(subprocess.Popen(
                    self._launch(i), stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True))
            finally:
                log.close()

    def check_alive(self) -> None:
        for name, p in zip(self.names, self.procs, strict=False):
            if p.poll() is not None:
                tail = (self.root / f"{name}.log").read_text(errors="replace")[-500:]
                raise RuntimeError(f"etcd member {name} exited with code {p.returncode}: {tail}")

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM every member, wait up to ``grace_s``, SIGKILL stragglers, reap all."""
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while any(p.poll() is None for p in self.procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
        self.procs = []
