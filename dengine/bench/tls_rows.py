"""The TLS rows of ``dengine bench compare``: what TLS costs dengine, and dengine with TLS
against etcd with TLS.

Theory of operation
-------------------
Beside its plain clusters, ``bench compare`` starts a second 3-node dengine cluster and a
second 3-node etcd cluster with TLS on every link: mutual TLS between members, and the
benchmark client presenting a client certificate to TLS client ports. The certificates come
from :func:`dengine.security.certs.init_certs` (one CA; member ``i`` of either cluster uses
``node-<i>.pem``, the client ``client.pem``), so both sides run the same keys and ciphers.

The TLS workloads (:data:`TLS_WORKLOADS`) run against all four clusters in the same rotation
of the same rounds, so two ratios come from one run, each taken per round and reduced to its
median like every other ratio of the report:

* ``dengine-tls / dengine``: what TLS costs dengine (the goal: under :data:`TLS_MAX_COST` of
  its throughput, i.e. a ratio of at least ``1 - TLS_MAX_COST``);
* ``dengine-tls / etcd-tls``: dengine against etcd, both with TLS;

and, for reference, ``etcd-tls / etcd``, what TLS costs etcd on the same machine.
``--no-tls`` leaves the TLS clusters out; ``--tls`` runs only these rows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TLS_WORKLOADS", "TLS_TARGETS", "TLS_MAX_COST", "PAIRS", "TlsSide", "tls_clusters",
           "report_lines", "goal_line"]

#: The workloads the TLS clusters run (the others run on the plain clusters only).
TLS_WORKLOADS = ("write-concurrent", "read-linearizable")
TLS_TARGETS = ("dengine-tls", "etcd-tls")
#: TLS may cost dengine at most this share of its plain throughput.
TLS_MAX_COST = 0.25
#: (side, baseline, key prefix in ``compare.ratios``).
PAIRS = (("dengine-tls", "etcd-tls", "tls_"), ("dengine-tls", "dengine", "tlscost_"),
         ("etcd-tls", "etcd", "etcdtls_"))


@dataclass
class TlsSide:
    """The running TLS clusters: their targets, their server pids, a liveness check."""

    targets: dict[str, Any]
    pids: dict[str, Callable[[], list[Any]]]
    check_alive: Callable[[], None]


@contextlib.asynccontextmanager
async def tls_clusters(root: Path, binary: str, timeout: float) -> AsyncIterator[TlsSide]:
    """A dengine and an etcd cluster with mutual TLS under ``root``, for the TLS rows."""
    from dengine.bench.etcd_cluster import EtcdCluster
    from dengine.bench.local import dengine_processes
    from dengine.bench.targets import DengineTarget, EtcdTarget
    from dengine.cli.security import local_tls_layers, recorded_client_tls
    from dengine.local.cluster import free_ports

    home = root / "dengine-tls"
    layers = local_tls_layers(home, 3)
    client = recorded_client_tls(home)
    etcd = EtcdCluster(root / "etcd-tls", free_ports(6), binary=binary,
                       tls_dir=Path(client["cacert"]).parent)
    try:
        etcd.start()
        async with dengine_processes(home, base={"tls": layers}) as lc:
            etcd.check_alive()
            d = DengineTarget(lc.endpoints, timeout=timeout, tls=client)
            e = EtcdTarget(etcd.endpoints, timeout=timeout, tls=client)
            d.name, e.name = TLS_TARGETS
            await e.leader_endpoint()

            def alive() -> None:
                lc.check_alive()
                etcd.check_alive()

            yield TlsSide(
                {d.name: d, e.name: e},
                {d.name: lambda: [n.pid for n in lc.nodes.values() if n.pid is not None],
                 e.name: lambda: [p.pid for p in etcd.procs]},
                alive)
    finally:
        await asyncio.to_thread(etcd.stop)


def report_lines(r: dict[str, dict[str, float]]) -> list[str]:
    """The TLS section of the report (empty when no TLS row ran)."""
    rows = [(wl, v) for wl, v in r.items() if "dengine-tls_throughput" in v]
    if not rows:
        return []
    lines = ["", "## TLS", "",
             "dengine and etcd each with TLS on every link (mutual TLS between members, a "
             "client certificate on the client's connections; certificates from `dengine "
             "certs init`), in the same rounds as the plain clusters. *TLS cost* is "
             "dengine-tls/dengine throughput: TLS costs dengine 1 - that ratio.", "",
             "| workload | dengine ops/s | dengine-tls ops/s | TLS cost (ratio) | etcd-tls ops/s "
             "| dengine-tls/etcd-tls | etcd TLS cost (ratio) | dengine-tls p99 ms | "
             "etcd-tls p99 ms | CPU us/op dengine | CPU us/op dengine-tls |",
             "|---|" + "---:|" * 10]
    for wl, v in rows:
        def g(k: str, fmt: str = ".2f", v: dict[str, float] = v) -> str:
            return format(v[k], fmt) if k in v else "-"

        def cpu(side: str, v: dict[str, float] = v) -> str:
            ks = [f"{side}_cpu_servers", f"{side}_cpu_client"]
            return format(sum(v[k] for k in ks), ".0f") if all(k in v for k in ks) else "-"

        lines.append(
            f"| {wl} | {g('dengine_throughput', ',.0f')} | {g('dengine-tls_throughput', ',.0f')}"
            f" | **{g('ratio_tlscost_throughput')}** | {g('etcd-tls_throughput', ',.0f')} | "
            f"**{g('ratio_tls_throughput')}** | {g('ratio_etcdtls_throughput')} | "
            f"{g('dengine-tls_p99_ms')} | {g('etcd-tls_p99_ms')} | {cpu('dengine')} | "
            f"{cpu('dengine-tls')} |")
    return lines


def goal_line(r: dict[str, dict[str, float]]) -> list[str]:
    """The TLS goal, met or missed, when the TLS rows ran: TLS costs under 25% of throughput
    on each TLS workload."""
    ratios = {wl: v["ratio_tlscost_throughput"] for wl, v in r.items()
              if "ratio_tlscost_throughput" in v}
    if not ratios:
        return []
    floor = 1 - TLS_MAX_COST
    worse = [f"{wl} ({1 - x:.0%})" for wl, x in ratios.items() if x < floor]
    shown = ", ".join(f"{wl} {1 - x:.0%}" for wl, x in ratios.items())
    return [f"- TLS costs dengine under {TLS_MAX_COST:.0%} of its throughput ({shown}): "
            + ("met" if not worse else "**missed** on " + ", ".join(worse))]
