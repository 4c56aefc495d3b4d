"""dengine bench: statistics, the workload loop, the etcd proto, the command end to end."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dengine.bench.compare import ratios, render_report
from dengine.bench.stats import LatencyStats, Summary, percentile
from dengine.bench.workloads import WORKLOADS, make_key, run_workload

REPO = Path(__file__).resolve().parents[2]
FAST_RAFT = {"DENGINE_RAFT__TICK_MS": "10", "DENGINE_RAFT__HEARTBEAT_MS": "50",
             "DENGINE_RAFT__ELECTION_MS": "400", "DENGINE_RAFT__LEASE_MS": "300"}


def test_percentile_nearest_rank() -> None:
    data = list(range(1, 1001))  # 1..1000
    assert percentile(data, 50) == 500
    assert percentile(data, 99) == 990
    assert percentile(data, 99.9) == 999
    assert percentile(data, 100) == 1000
    assert percentile([7], 99.9) == 7
    assert percentile([], 50) == 0


def test_summary_figures() -> None:
    st = LatencyStats()
    for ms in (1, 2, 3, 4):
        st.add(ms * 1_000_000)
    s = st.summary("w", "t", elapsed_s=2.0)
    assert (s.ops, s.throughput, s.avg_ms, s.p50_ms, s.max_ms) == (4, 2.0, 2.5, 2.0, 4.0)
    assert s.row().split() == ["w", "t", "4", "0", "2", "2.50", "2.00", "4.00", "4.00"]


def test_keys_have_the_asked_size() -> None:
    assert make_key(42, 8) == b"00000042"
    assert len(make_key(10**9 + 5, 8)) == 8


class FakeTarget:
    """A dict behind the target interface; fails every ``fail_every``-th put."""

    name = "fake"

    def __init__(self, fail_every: int = 0) -> None:
        self.data: dict[bytes, bytes] = {}
        self.calls = {"put": 0, "get": 0}
        self.fail_every = fail_every
        self.slots: set[int] = set()

    async def open(self, connections: int) -> None: ...

    async def close(self) -> None: ...

    async def put(self, slot: int, key: bytes, value: bytes) -> None:
        self.calls["put"] += 1
        n = self.calls["put"]
        self.slots.add(slot)
        await asyncio.sleep(0)
        if self.fail_every and n % self.fail_every == 0:
            raise ConnectionError("injected")
        self.data[key] = value

    async def get(self, slot: int, key: bytes, consistency: str) -> bool:
        self.calls["get"] += 1
        await asyncio.sleep(0)
        return key in self.data


def test_write_workload_counts_every_op_and_error() -> None:
    t = FakeTarget(fail_every=10)
    spec = WORKLOADS["write-concurrent"].with_(ops=500, warmup_ops=0, key_space=100)
    s = asyncio.run(run_workload(t, spec, progress=False))
    assert s.ops + s.errors == 500 and s.errors == 50
    assert t.calls == {"put": 500, "get": 0}
    assert len(t.slots) == 100  # every client ran
    assert all(len(k) == 8 and len(v) == 256 for k, v in t.data.items())


def test_read_workload_preloads_and_mixed_mixes() -> None:
    t = FakeTarget()
    spec = WORKLOADS["read-linearizable"].with_(ops=300, warmup_ops=0, key_space=50)
    clock = iter([1.0, 1.0 + 300e-6 * 7])  # before, after the timed part: 7 us per op

    def cpu() -> dict[str, float]:
        return {"servers": next(clock)}

    s = asyncio.run(run_workload(t, spec, progress=False, cpu=cpu))
    assert (s.ops, s.misses, t.calls["put"], t.calls["get"]) == (300, 0, 50, 300)
    assert s.extra["cpu_us_per_op"] == {"servers": 7.0}
    t2 = FakeTarget()
    mixed = WORKLOADS["mixed"].with_(ops=2000, warmup_ops=0, key_space=50)
    asyncio.run(run_workload(t2, mixed, progress=False, preload=False))
    writes = t2.calls["put"]
    assert 100 < writes < 300  # about 10% of 2000
    assert t2.calls["get"] == 2000 - writes


def _summary(target: str, wl: str, rnd: int, tput: float, p99: float) -> Summary:
    return Summary(wl, target, 100, 0, 0, 1.0, tput, 1.0, 1.0, p99, p99, p99, {"round": rnd})


def test_report_ratios_are_medians_of_per_round_ratios() -> None:
    runs = [
        _summary("dengine", "w", 1, 300, 1), _summary("etcd", "w", 1, 100, 2),
        _summary("etcd", "w", 2, 100, 2), _summary("dengine", "w", 2, 100, 4),
        _summary("dengine", "w", 3, 200, 2), _summary("etcd", "w", 3, 100, 2),
    ]
    r = ratios(runs)["w"]
    assert r["ratio_throughput"] == 2.0 and r["ratio_p99_ms"] == 1.0
    assert r["dengine_throughput"] == 200 and r["etcd_throughput"] == 100
    text = render_report(runs, {"date": "d", "machine": "m", "cpu": "c", "cores": 2,
                                "memory": "1 GiB", "python": "3", "dengine": "x",
                                "etcd": "3.4", "grpcio": "1", "params": {"ops": 100}})
    assert "| w | 200 | 100 | **2.00** |" in text


def test_goal_lines_say_met_or_missed_and_by_how_much() -> None:
    from dengine.bench.compare import goal_lines

    r = {"write-concurrent": {"ratio_throughput": 1.5, "ratio_p99_ms": 0.5},
         "read-linearizable": {"ratio_throughput": 3.2, "ratio_p99_ms": 1.2},
         "write-single": {"ratio_avg_ms": 0.9, "ratio_p99_ms": 0.8}}
    text = "\n".join(goal_lines(r))
    assert "Goals (dengine/etcd (Python client), medians)" in text
    assert "write-concurrent throughput >= 2x: 1.50x, **missed** (by 1.33x)" in text
    assert "read-linearizable throughput >= 2x: 3.20x, met" in text
    assert "write-single average latency <= etcd (Python client)'s: 0.90x, met" in text
    assert "**missed** on read-linearizable (1.20x)" in text


def test_goals_are_against_etcd_go_when_it_ran() -> None:
    runs = [
        _summary("dengine", "write-concurrent", 1, 300, 1),
        _summary("etcd", "write-concurrent", 1, 100, 2),
        _summary("etcd-go", "write-concurrent", 1, 200, 0.5),
    ]
    r = ratios(runs)["write-concurrent"]
    assert r["ratio_throughput"] == 3.0 and r["ratio_go_throughput"] == 1.5
    assert r["ratio_p99_ms"] == 0.5 and r["ratio_go_p99_ms"] == 2.0
    text = render_report(runs, {"date": "d", "machine": "m", "cpu": "c", "cores": 2,
                                "memory": "1 GiB", "python": "3", "dengine": "x",
                                "etcd": "3.4", "grpcio": "1", "params": {"ops": 100}})
    assert "| write-concurrent | 300 | 100 | **3.00** | 200 | **1.50** |" in text
    assert "Goals (dengine/etcd-go, medians)" in text
    assert "write-concurrent throughput >= 2x: 1.50x, **missed** (by 1.33x)" in text
    assert "p99 below etcd-go's on every workload: **missed** on write-concurrent (2.00x)" \
        in text


def test_unary_rows_compare_dengine_unary_with_etcd() -> None:
    runs = [_summary("dengine-unary", "read-linearizable", 1, 50, 4),
            _summary("etcd", "read-linearizable", 1, 100, 2),
            _summary("dengine", "read-linearizable", 1, 400, 1)]
    r = ratios(runs)["read-linearizable"]
    assert r["ratio_unary_throughput"] == 0.5 and r["ratio_unary_p99_ms"] == 2.0
    text = render_report(runs, {"date": "d", "machine": "m", "cpu": "c", "cores": 2,
                                "memory": "1 GiB", "python": "3", "dengine": "x",
                                "etcd": "3.4", "grpcio": "1", "params": {"ops": 100}})
    assert "| read-linearizable | 50 | 100 | **0.50** | 4.00 | 2.00 | 2.00 |" in text
    assert "same unary client on every workload: **missed** on read-linearizable (0.50x)" \
        in text


def test_etcd_go_unavailable_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dengine.bench import etcd_go

    monkeypatch.setenv("DENGINE_ETCD_GO_SRC", str(tmp_path))
    assert "main.go not found" in (etcd_go.etcd_go_unavailable() or "")
    with pytest.raises(etcd_go.EtcdGoUnavailable, match="main.go not found"):
        etcd_go.EtcdGoTarget(["127.0.0.1:1"])


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DENGINE_") or k == "DENGINE_PURE_PYTHON"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env.update(FAST_RAFT)
    return env


def test_bench_embedded_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "dengine", "bench", "--embedded", "--ops", "40", "--warmup", "0",
         "--key-space", "20", "-w", "write-concurrent,read-lease", "--no-progress",
         "--json", str(out), "--work-dir", str(tmp_path / "c")],
        env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert [(r["workload"], r["target"], r["ops"], r["errors"], r["misses"]) for r in results] \
        == [("write-concurrent", "embedded", 40, 0, 0), ("read-lease", "embedded", 40, 0, 0)]
    assert "p99.9 ms" in proc.stdout


def test_bench_preload_runs_before_and_after_and_the_keys_are_there(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "dengine", "bench", "--embedded", "--ops", "40", "--warmup", "0",
         "--preload", "2500", "-w", "write-concurrent", "--no-progress", "--compare-scan",
         "--settle",
         "--json", str(out), "--work-dir", str(tmp_path / "c")],
        env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert [r["ops"] for r in data["results"]] == [40]
    assert data["preload"]["keys"] == 2500
    # --settle asked every member (3) to compact, then waited until none owed a compaction,
    # and ran the workloads a third time; both rows are printed.
    settle = data["preload"]["settle"]
    assert len(settle["compact_s"]) == 3 and 0 <= data["preload"]["settle_s"] < 300
    assert settle["wait_s"] >= 3.0  # IDLE_S in a row with nothing owed
    for rows in (data["preload"]["results"], data["preload"]["settled_results"]):
        assert [(r["workload"], r["ops"], r["errors"]) for r in rows] \
            == [("write-concurrent", 40, 0)]
    assert "preloaded 2,500 keys" in proc.stdout and "ops/s @2,500" in proc.stdout
    assert "right after the load:" in proc.stdout and "CPU us/op empty" in proc.stdout
    # the cluster's CPU per operation (this process and the node processes it started)
    for rows in (data["results"], data["preload"]["results"]):
        assert rows[0]["extra"]["cpu_us_per_op"]["cluster"] > 0
    assert "steady state after the bulk load (--settle" in proc.stdout
    # dengine scan and the client each saw every key (the preloaded ones and the workload's)
    scan = data["preload"]["scan"]
    assert scan["cli_keys"] == scan["client_keys"] >= 2500 and scan["ratio"] > 0
    assert "CLI/client" in proc.stdout
    # The keys were really written: the leader's state machine holds them.
    from dengine.statemachine import open_kv

    sm = open_kv("rocksdb", str(next((tmp_path / "c").glob("node-1*")) / "data" / "sm"))
    try:
        assert len(sm.prefix(b"p").items) == 2500
    finally:
        sm.close()


def test_settle_is_only_for_the_cluster_the_bench_started() -> None:
    """A cluster the benchmark did not start is not compacted behind its operator's back."""
    from dengine.bench.preload import settle

    class Remote:
        name = "dengine"

    assert asyncio.run(settle(Remote(), ["127.0.0.1:1"])) is None


def test_preload_regains_the_leadership_after_a_not_leader_and_writes_every_key() -> None:
    """A leader change during the load (the embedded cluster writes through node 1 only) is
    handed to ``regain`` and the refused batch is written again, not lost or fatal."""
    from dengine.bench.preload import preload_keys
    from dengine.errors import NotLeader

    class Flaky:
        name = "dengine"

        def __init__(self) -> None:
            self.keys: set[bytes] = set()
            self.refusals = 2

        async def open(self, n: int) -> None:
            pass

        async def close(self) -> None:
            pass

        async def put_many(self, slot: int, pairs: list) -> None:
            if self.refusals:
                self.refusals -= 1
                raise NotLeader(2, "127.0.0.1:2")
            self.keys.update(k for k, _ in pairs)

    regained = []

    async def regain() -> None:
        regained.append(1)

    t = Flaky()
    asyncio.run(preload_keys(t, 5500, progress=False, regain=regain))
    assert len(t.keys) == 5500 and len(regained) == 2

    always = Flaky()
    always.refusals = 10**6
    with pytest.raises(NotLeader):  # not a loop for ever: five tries per batch
        asyncio.run(preload_keys(always, 1000, progress=False, regain=regain))


def test_bench_preload_refuses_etcd(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dengine", "bench", "--target", "etcd",
                           "--preload", "10", "--endpoints", "127.0.0.1:1"], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--preload" in proc.stderr


def test_bench_compare_scan_needs_preload(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dengine", "bench", "--embedded",
                           "--compare-scan"], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--preload" in proc.stderr


def test_bench_rejects_unknown_workload(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dengine", "bench", "-w", "nope",
                           "--endpoints", "127.0.0.1:1"], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown workload 'nope'" in proc.stderr


@pytest.mark.skipif(
    not __import__("shutil").which("etcd"), reason="etcd not installed (apt-get install etcd-server)")
def test_etcd_target_against_a_real_member(tmp_path: Path) -> None:
    from dengine.bench.etcd_cluster import EtcdCluster
    from dengine.bench.targets import EtcdTarget
    from dengine.local.cluster import free_ports

    ec = EtcdCluster(tmp_path / "etcd", free_ports(2), n=1)
    ec.start()
    try:
        async def go() -> list[Summary]:
            t = EtcdTarget(ec.endpoints)
            out = []
            for name in ("write-single", "read-serializable", "read-linearizable"):
                spec = WORKLOADS[name].with_(ops=30, warmup_ops=0, key_space=10, clients=5,
                                             connections=2)
                await t.open(spec.connections)
                out.append(await run_workload(t, spec, progress=False))
                await t.close()
            return out

        res = asyncio.run(go())
    finally:
        ec.stop()
    assert [(s.ops, s.errors, s.misses) for s in res] == [(30, 0, 0)] * 3
    assert all(p.poll() is not None for p in ec.procs) and ec.procs == []


@pytest.mark.skipif(
    not __import__("shutil").which("etcd"), reason="etcd not installed (apt-get install etcd-server)")
def test_etcd_go_target_against_a_real_member(tmp_path: Path) -> None:
    from dengine.bench import etcd_go
    from dengine.bench.etcd_cluster import EtcdCluster
    from dengine.local.cluster import free_ports

    why = etcd_go.etcd_go_unavailable()
    if why is not None:
        pytest.skip(why)
    ec = EtcdCluster(tmp_path / "etcd", free_ports(2), n=1)
    ec.start()
    try:
        async def go() -> list[Summary]:
            t = etcd_go.EtcdGoTarget(ec.endpoints)
            out = []
            for name in ("write-single", "read-serializable", "mixed"):
                spec = WORKLOADS[name].with_(ops=30, warmup_ops=5, key_space=10, clients=5,
                                             connections=2)
                out.append(await t.run_spec(spec, cpu=lambda: {"servers": 0.0}))
            return out

        res = asyncio.run(go())
    finally:
        ec.stop()
    assert [(s.target, s.ops, s.errors, s.misses) for s in res] == [("etcd-go", 30, 0, 0)] * 3
    assert all(s.throughput > 0 and s.p50_ms <= s.p99_ms <= s.max_ms for s in res)
    assert all("client" in s.extra["cpu_us_per_op"] for s in res)


@pytest.mark.skipif(
    not __import__("shutil").which("etcd"), reason="etcd not installed (apt-get install etcd-server)")
def test_etcd_target_over_tls_with_client_certificates(tmp_path: Path) -> None:
    """The TLS row of `bench compare --tls`: an etcd member with client and peer TLS, reached
    with a client certificate of `dengine certs init` (and refused without one)."""
    from dengine.bench.etcd_cluster import EtcdCluster
    from dengine.bench.targets import EtcdTarget
    from dengine.local.cluster import free_ports
    from dengine.security.certs import init_certs

    certs = init_certs(tmp_path / "certs", 1)
    tls = {"cacert": str(certs / "ca.pem"), "cert": str(certs / "client.pem"),
           "key": str(certs / "client.key")}
    ec = EtcdCluster(tmp_path / "etcd", free_ports(2), n=1, tls_dir=certs)
    assert "--client-cert-auth" in ec._command(0) and ec.endpoints[0].startswith("127.0.0.1")
    ec.start()
    try:
        async def go() -> tuple[Summary, Exception | None]:
            t = EtcdTarget(ec.endpoints, tls=tls, timeout=20)
            spec = WORKLOADS["write-single"].with_(ops=20, warmup_ops=0, key_space=10,
                                                   clients=2, connections=1)
            await t.open(spec.connections)
            s = await run_workload(t, spec, progress=False)
            await t.close()
            plain = EtcdTarget(ec.endpoints, timeout=1)
            try:
                await plain.leader_endpoint()
            except Exception as e:  # noqa: BLE001 - what a client without TLS gets
                return s, e
            return s, None

        s, refused = asyncio.run(go())
    finally:
        ec.stop()
    assert (s.ops, s.errors) == (20, 0)
    assert refused is not None


def test_tls_rows_give_the_cost_of_tls_and_the_goal_from_the_same_rounds() -> None:
    """The TLS rows: dengine-tls/dengine (what TLS costs) and dengine-tls/etcd-tls, taken per
    round and reduced to their median; the 25% goal met or missed on each TLS workload."""
    from dengine.bench.tls_rows import goal_line

    runs = []
    for rnd, (plain, tls) in enumerate([(1000, 900), (1000, 600), (800, 760)], start=1):
        runs += [_summary("dengine", "write-concurrent", rnd, plain, 2),
                 _summary("dengine-tls", "write-concurrent", rnd, tls, 3),
                 _summary("etcd", "write-concurrent", rnd, 400, 4),
                 _summary("etcd-tls", "write-concurrent", rnd, 300, 5)]
    runs += [_summary("dengine", "read-linearizable", 1, 1000, 1),
             _summary("dengine-tls", "read-linearizable", 1, 700, 1),
             _summary("etcd-tls", "read-linearizable", 1, 350, 1)]
    r = ratios(runs)
    assert r["write-concurrent"]["ratio_tlscost_throughput"] == 0.9  # median of .9 .6 .95
    assert r["write-concurrent"]["ratio_tls_throughput"] == 760 / 300
    assert r["write-concurrent"]["ratio_etcdtls_throughput"] == 0.75
    assert r["read-linearizable"]["ratio_tlscost_throughput"] == 0.7
    assert goal_line(r) == ["- TLS costs dengine under 25% of its throughput "
                            "(write-concurrent 10%, read-linearizable 30%): **missed** on "
                            "read-linearizable (30%)"]
    text = render_report(runs, {"date": "d", "machine": "m", "cpu": "c", "cores": 2,
                                "memory": "1 GiB", "python": "3", "dengine": "x",
                                "etcd": "3.4", "grpcio": "1", "params": {"ops": 100},
                                "tls": "only"})
    assert "| write-concurrent | 1,000 | 760 | **0.90** | 300 | **2.53** | 0.75 |" in text
    assert "| read-linearizable | 1,000 | 700 | **0.70** | 350 | **2.00** | - |" in text
    assert goal_line(r)[0] in text
    assert "Reproduce: `dengine bench compare --tls`" in text
    # Without TLS rows: no section, no goal line.
    plain = [s for s in runs if not s.target.endswith("-tls")]
    assert goal_line(ratios(plain)) == []
    assert "## TLS" not in render_report(plain, {"date": "d", "machine": "m", "cpu": "c",
                                                 "cores": 2, "memory": "1", "python": "3",
                                                 "dengine": "x", "etcd": "3.4", "grpcio": "1",
                                                 "params": {"ops": 100}})
    r["write-concurrent"]["ratio_tlscost_throughput"] = 1.05  # faster with TLS: noise, met
    r["read-linearizable"]["ratio_tlscost_throughput"] = 0.76
    assert goal_line(r)[0].endswith("(write-concurrent -5%, read-linearizable 24%): met")


@pytest.mark.skipif(
    not __import__("shutil").which("etcd"), reason="etcd not installed (apt-get install etcd-server)")
def test_compare_tls_runs_the_tls_rows_against_real_tls_clusters(tmp_path: Path) -> None:
    """`bench compare --tls`: dengine and etcd each plain and with mutual TLS (certificates
    from `dengine certs init`), in one run; the report has the TLS cost and its goal."""
    out = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "dengine", "bench", "compare", "--tls", "--rounds", "1",
         "--ops", "60", "--warmup", "0", "--key-space", "30", "--no-progress",
         "--out", str(out), "--work-dir", str(tmp_path / "w")],
        env=_env(tmp_path), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(next(out.glob("*.json")).read_text())
    got = sorted((r["workload"], r["target"], r["ops"], r["errors"]) for r in data["runs"])
    assert got == sorted((w, t, 60, 0) for w in ("write-concurrent", "read-linearizable")
                         for t in ("dengine", "dengine-tls", "etcd", "etcd-tls"))
    text = next(out.glob("*.md")).read_text()
    assert "## TLS" in text and "- TLS costs dengine under 25% of its throughput" in text
    # The TLS clusters really ran TLS: their certificates and etcd's TLS flags.
    certs = tmp_path / "w" / "dengine-tls" / "certs"
    assert (certs / "node-3.pem").is_file() and (certs / "client.pem").is_file()
    toml = (tmp_path / "w" / "dengine-tls" / "node-1" / "node.toml").read_text()
    assert "[tls]" in toml and "enabled = true" in toml.split("[tls]")[1]
