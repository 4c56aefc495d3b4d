"""`dengine bench compare` rows for dengine through its etcd API, against etcd."""

from __future__ import annotations

from dengine.bench.compare import ratios, render_report
from dengine.bench.stats import Summary


def _summary(target: str, wl: str, tput: float, p99: float) -> Summary:
    return Summary(wl, target, 100, 0, 0, 1.0, tput, 1.0, 1.0, p99, p99, p99, {"round": 1})


def test_etcd_api_rows_compare_dengine_through_its_etcd_port_with_etcd() -> None:
    runs = [_summary("dengine-etcd", "mixed", 150, 3), _summary("etcd", "mixed", 100, 2),
            _summary("dengine", "mixed", 400, 1)]
    r = ratios(runs)["mixed"]
    assert r["ratio_etcdapi_throughput"] == 1.5 and r["ratio_etcdapi_p99_ms"] == 1.5
    text = render_report(runs, {"date": "d", "machine": "m", "cpu": "c", "cores": 2,
                                "memory": "1 GiB", "python": "3", "dengine": "x",
                                "etcd": "3.4", "grpcio": "1", "params": {"ops": 100}})
    assert "against dengine's etcd API" in text
    assert "| mixed | 150 | 100 | **1.50** | 3.00 | 2.00 | 1.50 |" in text
