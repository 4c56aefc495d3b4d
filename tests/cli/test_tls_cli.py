"""``dengine cluster up --tls`` and ``dengine demo --tls``: the secure path is one flag.

A TLS cluster made by ``cluster up --tls`` keeps its certificates in DIR/certs; client commands
find and use its client certificate; plain clients, and the same commands with a CA that did
not issue the nodes' certificates, are refused."""

from __future__ import annotations

import json

import pytest

from dengine.security.certs import init_certs

from .test_cluster_up import Supervisor

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def supervisors():
    started: list[Supervisor] = []
    yield started
    for s in started:
        s.kill()


def test_cluster_up_tls_serves_client_commands_over_mutual_tls(
        tmp_path, dengine, env_for, supervisors):
    home = tmp_path / "project"
    home.mkdir()
    up = Supervisor(home, env_for(), "--data-dir", "data", "--tls")
    supervisors.append(up)
    up.wait_for("the cluster is running")
    certs = home / "data" / "certs"
    assert (certs / "ca.pem").is_file() and (certs / "node-3.pem").is_file()
    assert "enabled = true" in (home / "data" / "node-1" / "node.toml").read_text()

    out = dengine("put", "greeting", "hello", cwd=home)
    assert out.returncode == 0 and out.stdout.startswith("OK (revision"), out
    out = dengine("get", "greeting", "--data-dir", str(home / "data"))
    assert (out.returncode, out.stdout) == (0, "hello\n"), out
    endpoints = ",".join(json.loads((home / "data" / "cluster.json").read_text())["endpoints"])
    out = dengine("get", "greeting", "--endpoints", endpoints, "--cacert", str(certs / "ca.pem"),
                  "--cert", str(certs / "client.pem"), "--key", str(certs / "client.key"))
    assert (out.returncode, out.stdout) == (0, "hello\n"), out
    # Plain (no TLS), and TLS with a CA that did not issue the nodes' certificates: refused.
    out = dengine("get", "greeting", "--endpoints", endpoints, "--timeout", "2")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    other = init_certs(tmp_path / "other", 1)
    out = dengine("get", "greeting", "--endpoints", endpoints, "--timeout", "2",
                  "--cacert", str(other / "ca.pem"), "--cert", str(other / "client.pem"),
                  "--key", str(other / "client.key"))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert up.interrupt() == 0


def test_demo_tls_passes(dengine):
    out = dengine("demo", "--tls", "--keys", "5", timeout=170)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "demo passed" in out.stdout
