"""The spread-read rows of ``dengine bench`` and ``bench compare``: do three members serve
more reads than one?

Theory of operation
-------------------
A ``-spread`` workload (``read-serializable-spread``, ``read-linearizable-spread``) is its
leader-only workload with the reads sent to every member instead of the leader (see
:mod:`dengine.bench.workloads`). Run in the same round against the same target, the pair gives
one ratio, *spread / leader-only* throughput: above 1, the members together serve more than the
leader alone; below 1, spreading costs more than it brings (on one machine the members share
its cores, and a follower's linearizable read pays a round trip to the leader on top). The
ratio is taken per round and per target, then reduced to its median over the rounds, like
every ratio of the report; server and client CPU per read go beside it.

:func:`spread_ratios` computes them from the runs (the ``spread`` object of the report's JSON);
:func:`report_lines` renders them, :func:`goal_line` says whether dengine met the goal (spread /
leader-only above 1 for both consistencies).
"""

from __future__ import annotations

import statistics
from typing import Any

from dengine.bench.stats import Summary
from dengine.bench.workloads import leader_only_of

__all__ = ["spread_ratios", "report_lines", "goal_line"]

#: The target whose spread rows the goal is about: dengine through its own client.
GOAL_TARGET = "dengine"
#: Targets that run only the spread workloads, and whose leader-only rows are another's:
#: dengine's client with each benchmark client pinned to one member (``compare``).
LEADER_ONLY_TARGET = {"dengine-pinned": "dengine"}


def _cpu(s: Summary) -> float | None:
    c = s.extra.get("cpu_us_per_op")
    return sum(c.values()) if c else None


def _per_message(s: Summary) -> float | None:
    """Requests per Batch stream message in the timed part (dengine's client only)."""
    c = s.extra.get("client_counters") or {}
    return c["stream_requests"] / c["stream_messages"] if c.get("stream_messages") else None


def spread_ratios(runs: list[Summary]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per spread workload and target: the medians over the rounds of the leader-only and the
    spread throughput and p99, and of the per-round ratios spread / leader-only (throughput,
    and CPU per read when measured). A spread run without its leader-only run in the same round
    against the same target gives no ratio."""
    by: dict[tuple[str, str, Any], Summary] = {
        (s.workload, s.target, s.extra.get("round", 1)): s for s in runs}
    acc: dict[str, dict[str, dict[str, list[float]]]] = {}
    for (wl, target, rnd), s in by.items():
        base_name = leader_only_of(wl)
        base = by.get((base_name, LEADER_ONLY_TARGET.get(target, target), rnd)) \
            if base_name else None
        if base is None or not base.throughput:
            continue
        a = acc.setdefault(wl, {}).setdefault(target, {})
        for k, v in (("leader_only_ops_s", base.throughput), ("spread_ops_s", s.throughput),
                     ("ratio", s.throughput / base.throughput),
                     ("leader_only_p99_ms", base.p99_ms), ("spread_p99_ms", s.p99_ms)):
            a.setdefault(k, []).append(v)
        cs, cb = _cpu(s), _cpu(base)
        if cs is not None and cb:
            a.setdefault("cpu_ratio", []).append(cs / cb)
        ms, mb = _per_message(s), _per_message(base)
        if ms is not None and mb is not None:
            a.setdefault("leader_only_requests_per_message", []).append(mb)
            a.setdefault("spread_requests_per_message", []).append(ms)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for wl, targets in acc.items():
        out[wl] = {}
        for target, fields in targets.items():
            row: dict[str, Any] = {"leader_only": leader_only_of(wl),
                                   "rounds": len(fields["ratio"])}
            row.update({k: statistics.median(v) for k, v in fields.items()})
            out[wl][target] = row
    return out


def report_lines(sr: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The spread section of the report (empty when no spread workload ran beside its
    leader-only one)."""
    if not sr:
        return []
    lines = ["", "## Reads spread over every member", "",
             "The `-spread` rows send every read to all three members (connections to each; "
             "a follower answers a serializable read from its own state, a linearizable one "
             "after a ReadIndex round with the leader) instead of to the leader only. "
             "dengine's client spreads with `Client(spread_reads=True)` (by caller: each "
             "benchmark client keeps to one member, given out in turn), the unary and etcd clients with connection *i* to member *i* mod 3; "
             "`dengine-pinned` is dengine's client with benchmark client *i* pinned to member "
             "*i* mod 3 (`get(endpoint=...)`), measured against dengine's leader-only row. "
             "*spread / leader-only* is the throughput ratio per round, then the median: "
             "above 1, three members serve more than one. *Reads per message*: requests per "
             "Batch stream message of dengine's client, leader-only -> spread (how well its "
             "concurrent callers still share messages).", "",
             "| workload | target | leader-only ops/s | spread ops/s | spread / leader-only "
             "| leader-only p99 ms | spread p99 ms | CPU per read, spread / leader-only "
             "| reads per message |",
             "|---|---|" + "---:|" * 7]
    order = ["dengine", "dengine-pinned", "dengine-unary", "dengine-etcd", "etcd", "etcd-go"]
    for wl, targets in sr.items():
        for target, v in sorted(targets.items(), key=lambda tv: (
                order.index(tv[0]) if tv[0] in order else len(order), tv[0])):
            cpu = format(v["cpu_ratio"], ".2f") if "cpu_ratio" in v else "-"
            per = (f"{v['leader_only_requests_per_message']:.1f} -> "
                   f"{v['spread_requests_per_message']:.1f}"
                   if "spread_requests_per_message" in v else "-")
            lines.append(
                f"| {wl} | {target} | {v['leader_only_ops_s']:,.0f} | {v['spread_ops_s']:,.0f} "
                f"| **{v['ratio']:.2f}** | {v['leader_only_p99_ms']:.2f} | "
                f"{v['spread_p99_ms']:.2f} | {cpu} | {per} |")
    return lines


def goal_line(sr: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The goal, when a spread row of dengine ran beside its leader-only row: reads spread
    over all members scale (spread / leader-only above 1 on every spread workload)."""
    got = {wl: t[GOAL_TARGET]["ratio"] for wl, t in sr.items() if GOAL_TARGET in t}
    if not got:
        return []
    shown = ", ".join(f"{wl} {x:.2f}x" for wl, x in got.items())
    worse = [f"{wl} ({x:.2f}x)" for wl, x in got.items() if x <= 1]
    pinned = [f"{wl} {t['dengine-pinned']['ratio']:.2f}x" for wl, t in sr.items()
              if "dengine-pinned" in t]
    return [f"- reads spread over all members scale (3 members serve more than 1; "
            f"spread / leader-only: {shown}): "
            + ("met" if not worse else "**missed** on " + ", ".join(worse))
            + (f" (each benchmark client pinned to one member, dengine-pinned: "
               f"{', '.join(pinned)})" if pinned else "")]
