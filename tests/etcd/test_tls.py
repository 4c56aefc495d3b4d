"""The etcd API of a ``cluster up --tls --etcd-api`` cluster (started with ``--detach``, which
finds the leader over TLS): etcdctl with the cluster's client certificate works through every
member (followers forward over mutual TLS), and a plaintext client gets nothing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)
CLUSTER_TLS = True


def test_etcdctl_over_tls_through_every_member(cluster):
    if shutil.which("etcdctl") is None:
        pytest.skip("etcdctl is not installed (Debian: apt-get install etcd-client)")
    eps, _lead, env = cluster
    certs = Path(env["ETCD_TESTS_DATA_DIR"]) / "certs"
    tls = [f"--cacert={certs / 'ca.pem'}", f"--cert={certs / 'client.pem'}",
           f"--key={certs / 'client.key'}"]

    def ctl(ep: str, *args: str, extra: list[str] = tls) -> subprocess.CompletedProcess:
        return subprocess.run(["etcdctl", f"--endpoints={ep}", "--dial-timeout=3s",
                               "--command-timeout=10s", *extra, *args], env=env,
                              capture_output=True, text=True, timeout=60)

    for i, ep in eps.items():
        out = ctl(ep, "put", f"tls/{i}", "v")
        assert (out.returncode, out.stdout) == (0, "OK\n"), out.stderr
    out = ctl(eps[1], "get", "--prefix", "tls/", "--keys-only")
    assert out.stdout.split() == ["tls/1", "tls/2", "tls/3"], out.stderr
    out = ctl(eps[1], "get", "tls/1", extra=[])
    assert out.returncode != 0
