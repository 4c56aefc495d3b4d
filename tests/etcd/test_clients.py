"""etcd's own clients against ``dengine cluster up --etcd-api`` (3 nodes): etcdctl (put, get,
del with prefix, interactive txn from stdin, a background watch, leases, member list, endpoint
status, refused and unsupported calls) and the Python ``etcd3`` package (its lock and lease
helpers), each through a follower as well as the leader."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)


def etcdctl(env, endpoint: str, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which("etcdctl") is None:
        pytest.skip("etcdctl is not installed (Debian: apt-get install etcd-client)")
    out = subprocess.run(["etcdctl", f"--endpoints={endpoint}", "--command-timeout=10s", *args],
                         env=env, input=stdin, capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def follower(cluster) -> str:
    eps, lead, _env = cluster
    return eps[next(i for i in eps if i != lead)]


def test_put_get_del_with_prefix_through_a_follower(cluster):
    eps, lead, env = cluster
    ep = follower(cluster)
    for k, v in (("app/a", "1"), ("app/b", "2"), ("apple", "3"), ("other", "4")):
        assert etcdctl(env, ep, "put", k, v).stdout == "OK\n"
    out = etcdctl(env, eps[lead], "get", "--prefix", "app/").stdout
    assert out.split() == ["app/a", "1", "app/b", "2"]
    got = json.loads(etcdctl(env, ep, "get", "app/a", "-w", "json").stdout)
    kv = got["kvs"][0]
    assert kv["version"] == 1 and kv["create_revision"] == kv["mod_revision"] > 0
    assert got["header"]["revision"] >= kv["mod_revision"]
    assert got["header"]["member_id"] != 0 and got["header"]["raft_term"] > 0
    out = etcdctl(env, ep, "get", "--consistency=s", "--prefix", "app", "--keys-only").stdout
    assert out.split() == ["app/a", "app/b", "apple"]
    assert '"count":3' in etcdctl(env, ep, "get", "--prefix", "app", "--limit=1", "-w",
                                  "json").stdout
    out = etcdctl(env, ep, "get", "--prefix", "app", "--limit=1", "--order=DESCEND").stdout
    assert out.split() == ["apple", "3"]
    # a past revision is answered from the history
    etcdctl(env, ep, "put", "app/a", "changed")
    assert etcdctl(env, ep, "get", "app/a", f"--rev={kv['mod_revision']}").stdout.split() == \
        ["app/a", "1"]
    out = etcdctl(env, ep, "del", "--prefix", "app/", "--prev-kv").stdout.split()
    assert out == ["2", "app/a", "changed", "app/b", "2"]
    assert etcdctl(env, ep, "get", "--prefix", "app/").stdout == ""


def test_interactive_txn_from_stdin(cluster):
    eps, lead, env = cluster
    ep = follower(cluster)
    etcdctl(env, ep, "put", "tx", "old")
    script = 'value("tx") = "old"\n\nput tx new\nget tx\n\nput tx failed\n\n'
    out = etcdctl(env, ep, "txn", "-i", stdin=script).stdout
    assert "SUCCESS" in out and out.rstrip().endswith("tx\nnew"), out
    out = etcdctl(env, ep, "txn", "-i", stdin=script).stdout
    assert "FAILURE" in out, out
    assert etcdctl(env, eps[lead], "get", "tx").stdout.split() == ["tx", "failed"]


def test_background_watch_sees_the_writes(cluster):
    eps, lead, env = cluster
    ep = follower(cluster)
    if shutil.which("etcdctl") is None:
        pytest.skip("etcdctl is not installed (Debian: apt-get install etcd-client)")
    w = subprocess.Popen(["etcdctl", f"--endpoints={ep}", "watch", "--prefix", "w/", "--prev-kv"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        etcdctl(env, eps[lead], "put", "w/1", "a")
        etcdctl(env, eps[lead], "put", "w/1", "b")
        etcdctl(env, eps[lead], "put", "x/not-watched", "c")
        etcdctl(env, eps[lead], "del", "w/1")
        time.sleep(1.5)
    finally:
        w.terminate()
        out, err = w.communicate(timeout=10)
    # --prev-kv: each event prints the previous key and value, then the new ones
    assert out.split() == ["PUT", "w/1", "a", "PUT", "w/1", "a", "w/1", "b",
                           "DELETE", "w/1", "b", "w/1"], out + err


def test_lease_grant_keep_alive_revoke(cluster):
    eps, lead, env = cluster
    ep = follower(cluster)
    out = etcdctl(env, ep, "lease", "grant", "60").stdout
    lease = out.split()[1]
    etcdctl(env, ep, "put", "--lease", lease, "leased", "v")
    out = etcdctl(env, ep, "lease", "timetolive", lease, "--keys").stdout
    assert "granted with TTL(60s)" in out and "[leased]" in out, out
    out = etcdctl(env, ep, "lease", "keep-alive", "--once", lease).stdout
    assert f"lease {lease} keepalived with TTL(60)" in out, out
    assert lease in etcdctl(env, ep, "lease", "list").stdout
    assert "revoked" in etcdctl(env, ep, "lease", "revoke", lease).stdout
    assert etcdctl(env, ep, "get", "leased").stdout == ""
    out = etcdctl(env, ep, "lease", "revoke", lease, check=False)
    assert out.returncode != 0 and "etcdserver: requested lease not found" in out.stderr
    out = etcdctl(env, ep, "put", "--lease", "1234", "k", "v", check=False)
    assert out.returncode != 0 and "etcdserver: requested lease not found" in out.stderr
    assert "already expired" in etcdctl(env, ep, "lease", "timetolive", lease).stdout


def test_member_list_and_endpoint_status(cluster):
    eps, lead, env = cluster
    all_eps = ",".join(eps.values())
    out = etcdctl(env, all_eps, "member", "list", "-w", "json").stdout
    members = json.loads(out)["members"]
    assert sorted(m["ID"] for m in members) == [1, 2, 3]
    assert all(m["peerURLs"] and not m.get("isLearner") for m in members)
    out = json.loads(etcdctl(env, all_eps, "endpoint", "status", "-w", "json").stdout)
    assert len(out) == 3
    assert {s["Status"]["leader"] for s in out} == {lead}
    assert {s["Status"]["header"]["member_id"] for s in out} == {1, 2, 3}
    assert len({s["Status"]["header"]["cluster_id"] for s in out}) == 1


def test_unsupported_rpcs_say_so(cluster):
    eps, _lead, env = cluster
    out = etcdctl(env, eps[1], "user", "list", check=False)
    assert out.returncode != 0 and "Unimplemented" in out.stderr and "auth RPCs" in out.stderr
    out = etcdctl(env, eps[1], "defrag", check=False)
    assert out.returncode != 0 and "only Maintenance.Status" in out.stderr


ETCD3_SCRIPT = r"""
import sys, time, etcd3
host, port = sys.argv[1].split(":")
c = etcd3.client(host=host, port=int(port), timeout=10)
c.put("py/k", "v1")
value, meta = c.get("py/k")
assert value == b"v1" and meta.version == 1, (value, meta.version)
ok, _ = c.transaction(compare=[c.transactions.value("py/k") == "v1"],
                      success=[c.transactions.put("py/k", "v2")], failure=[])
assert ok and c.get("py/k")[0] == b"v2"
lease = c.lease(30)
c.put("py/leased", "x", lease=lease)
assert lease.keys == [b"py/leased"] and 0 < lease.remaining_ttl <= 30
lease.refresh()
lease.revoke()
assert c.get("py/leased")[0] is None
lock = c.lock("py-lock", ttl=10)
assert lock.acquire(timeout=5) and lock.is_acquired()
holder, meta = c.get("/locks/py-lock")
assert holder == lock.uuid and meta.lease_id == lock.lease.id
other = c.lock("py-lock", ttl=10)
assert not other.is_acquired()
# (a contended acquire() waits through tenacity, whose wait-callback signature etcd3 0.12
# predates: it fails inside the library with tenacity >= 8, against etcd as well; so the
# second holder takes the lock once the first released it)
lock.release()
assert c.get("/locks/py-lock")[0] is None
assert other.acquire(timeout=5) and other.is_acquired()
with c.lock("other-lock", ttl=5) as held:
    assert held.is_acquired()
other.release()
import grpc
try:
    c.revoke_lease(4242)
    raise SystemExit("revoking a missing lease succeeded")
except grpc.RpcError as e:  # etcd3 passes NOT_FOUND through as gRPC's error
    assert e.code() == grpc.StatusCode.NOT_FOUND, e
    assert e.details() == "etcdserver: requested lease not found", e
print("members", len(list(c.members)))
print("ok")
"""


def test_python_etcd3_client_lock_and_lease(cluster, tmp_path):
    if importlib.util.find_spec("etcd3") is None:  # not imported here: see below
        pytest.skip("the etcd3 package (test extra) is not installed")
    eps, _lead, env = cluster
    script = tmp_path / "etcd3_client.py"
    script.write_text(ETCD3_SCRIPT)
    # etcd3's generated modules predate protobuf 4's C descriptors; the pure-Python runtime
    # loads them (and a separate process keeps their etcdserverpb apart from ours).
    env = {**env, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    out = subprocess.run([sys.executable, str(script), follower(cluster)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.endswith("ok\n"), out.stdout + out.stderr
    assert "members 3" in out.stdout


def test_bench_etcd_targets_run_unchanged_against_the_etcd_port(cluster, tmp_path):
    eps, _lead, env = cluster
    out_json = tmp_path / "r.json"
    targets = ["etcd"]
    from dengine.bench.etcd_go import etcd_go_unavailable

    if etcd_go_unavailable() is None:
        targets.append("etcd-go")
    for target in targets:
        proc = subprocess.run(
            [sys.executable, "-m", "dengine", "bench", "--target", target, "--endpoints",
             ",".join(eps.values()), "--ops", "40", "--warmup", "0", "--key-space", "20",
             "-w", "write-concurrent,read-linearizable", "--no-progress", "--json",
             str(out_json)], env=env, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        results = json.loads(out_json.read_text())["results"]
        assert [(r["workload"], r["ops"], r["errors"], r["misses"]) for r in results] == \
            [("write-concurrent", 40, 0, 0), ("read-linearizable", 40, 0, 0)], target


def test_go_clientv3_mutex_and_election(cluster, tmp_path):
    """etcd's Go client with its concurrency package (Mutex, Election), built from Debian's
    etcd sources in GOPATH mode, as the bench's etcd-go target is."""
    gopath = os.environ.get("DENGINE_ETCD_GOPATH", "/usr/share/gocode")
    if shutil.which("go") is None or \
            not Path(gopath, "src/go.etcd.io/etcd/clientv3/concurrency").is_dir():
        pytest.skip("go or etcd's Go sources are missing (Debian: golang-etcd-server-dev)")
    eps, _lead, env = cluster
    exe = tmp_path / "go_mutex"
    build = subprocess.run(["go", "build", "-o", str(exe), "."],
                           cwd=Path(__file__).parent / "go_mutex",
                           env={**os.environ, "GO111MODULE": "off", "GOFLAGS": "",
                                "GOPATH": gopath}, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    out = subprocess.run([str(exe), ",".join(eps.values())], capture_output=True, text=True,
                         timeout=120)
    # 4 sessions x 5 rounds of get-then-put under the lock: exact only with mutual exclusion
    assert (out.returncode, out.stdout) == (0, "ok 20\n"), out.stdout + out.stderr


def test_keep_alive_stream_through_a_follower_outlives_the_ttl(cluster):
    """The follower pipes the keep-alive stream to the leader (whose clock keeps the lease):
    a 2 s lease kept alive for 4 s lives; once the stream stops it expires."""
    eps, _lead, env = cluster
    ep = follower(cluster)
    lease = etcdctl(env, ep, "lease", "grant", "2").stdout.split()[1]
    etcdctl(env, ep, "put", "--lease", lease, "kept", "v")
    ka = subprocess.Popen(["etcdctl", f"--endpoints={ep}", "lease", "keep-alive", lease],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4.0)
        assert etcdctl(env, ep, "get", "kept").stdout.split() == ["kept", "v"]
    finally:
        ka.terminate()
        out, _err = ka.communicate(timeout=10)
    assert out.count("keepalived with TTL(2)") >= 2, out
    deadline = time.monotonic() + 10
    while etcdctl(env, ep, "get", "kept").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    assert etcdctl(env, ep, "get", "kept").stdout == ""
