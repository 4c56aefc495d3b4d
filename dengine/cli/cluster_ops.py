"""Operating a local cluster from any terminal: ``cluster up --detach``, ``cluster status``,
``cluster down``, ``cluster restart-node N``, ``cluster kill-node N``.

Each works on the cluster recorded in ``--data-dir`` (default ``./data``), through the pids
``cluster.json`` keeps for its running nodes, whether a ``cluster up`` in another terminal
supervises them or they were started with ``--detach``. A node that ``kill-node`` or
``restart-node`` stopped is marked in the record (``killed_pid``), so a supervising
``cluster up`` reports it as intended rather than as a crash, and adopts the restarted process
(:func:`adopt_restarts`), stopping it with the rest on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dengine.cli.endpoints import DEFAULT_DATA_DIR, positive_int, seconds
from dengine.cli.errors import EXIT_CODES_HELP, FAILED, OK, USAGE, CliError, report
from dengine.errors import DengineError, LocalClusterError
from dengine.local.cluster import LocalCluster

__all__ = ["register_ops", "run_detached", "adopt_restarts"]

_FMT = argparse.RawDescriptionHelpFormatter


def register_ops(csub: Any) -> None:
    """Add ``status``, ``down``, ``restart-node`` and ``kill-node`` under ``cluster``."""

    def add(name: str, help: str, func: Callable[[LocalCluster, argparse.Namespace], int]
            ) -> argparse.ArgumentParser:
        p = csub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                            epilog=EXIT_CODES_HELP, formatter_class=_FMT)
        p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
                       help=f"directory of the cluster (default: ./{DEFAULT_DATA_DIR})")
        p.set_defaults(func=lambda args: _run(args, func))
        return p

    add("status", "show each node of the local cluster: process, role, term, applied index",
        _status)
    p = add("down", "stop every node of the local cluster (SIGTERM, then SIGKILL after "
                    "--stop-timeout)", _down)
    p.add_argument("--stop-timeout", type=seconds, default=10.0, metavar="SECONDS",
                   help="how long a node may take to stop before it is killed (default: 10)")
    p = add("restart-node", "stop one node (if running) and start it again on its data", _restart)
    p.add_argument("node_id", type=positive_int, metavar="N")
    p.add_argument("--stop-timeout", type=seconds, default=10.0, metavar="SECONDS",
                   help="how long the node may take to stop before it is killed (default: 10)")
    p.add_argument("--wait", type=seconds, default=30.0, metavar="SECONDS",
                   help="how long to wait for the restarted node to answer (default: 30)")
    p = add("kill-node", "kill one node with SIGKILL (to try a failover)", _kill)
    p.add_argument("node_id", type=positive_int, metavar="N")


def _say(text: str = "") -> None:
    print(text, flush=True)


def _run(args: argparse.Namespace, func: Callable[[LocalCluster, argparse.Namespace], int]
         ) -> int:
    try:
        return func(LocalCluster.open(args.data_dir), args)
    except (DengineError, OSError) as e:
        return report(e)


def _node(lc: LocalCluster, node_id: int) -> Any:
    if node_id not in lc.nodes:
        raise CliError(f"the cluster in {lc.root} has no node {node_id} (nodes: "
                       f"{', '.join(map(str, sorted(lc.nodes)))})", USAGE)
    return lc.nodes[node_id]


def _save(lc: LocalCluster) -> None:
    lc.save(supervisor_pid=lc.recorded_supervisor())


# ---------------------------------------------------------------------------------------------
# cluster up --detach


def run_detached(args: argparse.Namespace, prepare: Callable[[argparse.Namespace], Any]) -> int:
    """Start the nodes in the background, wait for a leader, record the pids, return."""
    lc = None
    try:
        lc = prepare(args)
        lc.start(detached=True)
        _save(lc)
        for n in lc.nodes.values():
            _say(f"  node {n.node_id}  {n.address}  pid {n.pid}  log {n.log_path}")
        lead = asyncio.run(_leader(lc, args.leader_timeout))
    except (DengineError, OSError) as e:
        if lc is not None and any(n.running for n in lc.nodes.values()):
            lc.stop(args.stop_timeout)
            _save(lc)
            _say("stopped the nodes it had started")
        return report(e)
    except KeyboardInterrupt:
        if lc is not None:
            lc.stop(args.stop_timeout)
            _save(lc)
        return 130
    flag = "" if lc.root == Path(DEFAULT_DATA_DIR).resolve() else f" --data-dir {lc.root}"
    _say(f"leader: node {lead.id} at {lead.address} (term {lead.term})")
    _say(f"endpoints: {','.join(lc.endpoints)}")
    _say(f"the cluster runs in the background: `dengine cluster status{flag}`, "
         f"`dengine cluster down{flag}`")
    return OK


async def _leader(lc: LocalCluster, timeout: float) -> Any:
    from dengine.client import Client

    async with Client(lc.endpoints, timeout=1.0, **lc.client_tls) as client:
        return await lc.wait_leader(client, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# status, down, restart-node, kill-node


def _status(lc: LocalCluster, _args: argparse.Namespace) -> int:
    sup = lc.recorded_supervisor()
    how = f"supervised by `dengine cluster up` (pid {sup})" if sup else "detached"
    running = [n.node_id for n in lc.nodes.values() if n.running]
    if not running:
        _say(f"cluster {lc.cluster_id} in {lc.root}: not running (`dengine cluster up` "
             "starts it)")
        how = ""
    else:
        _say(f"cluster {lc.cluster_id} in {lc.root}: {len(running)} of {len(lc.nodes)} "
             f"nodes running, {how}")
    answers = asyncio.run(_statuses(lc)) if running else {}
    rows = [("ID", "ADDRESS", "PID", "PROCESS", "ROLE", "TERM", "LEADER", "APPLIED")]
    for n in lc.nodes.values():
        st = answers.get(n.node_id)
        proc = "running" if n.running else "stopped"
        if st is None:
            role = "-" if not n.running else "not answering"
            rows.append((str(n.node_id), n.address, str(n.pid or "-"), proc, role, "-", "-",
                         "-"))
        else:
            rows.append((str(n.node_id), n.address, str(n.pid or "-"), proc, st.role,
                         str(st.term), str(st.leader_id or "-"), str(st.applied_index)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        _say("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return OK


async def _statuses(lc: LocalCluster) -> dict[int, Any]:
    from dengine.client import Client

    async with Client(lc.endpoints, timeout=1.0, fail_fast=True) as client:
        return await lc.statuses(client, timeout=1.0)


def _down(lc: LocalCluster, args: argparse.Namespace) -> int:
    sup = lc.recorded_supervisor()
    if sup is not None:  # it stops its nodes, and says how each ended, in its terminal
        _say(f"asking `dengine cluster up` (pid {sup}) to stop the cluster...")
        os.kill(sup, signal.SIGTERM)
        deadline = time.monotonic() + args.stop_timeout + 15
        while lc.recorded_supervisor() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if lc.recorded_supervisor() is not None:
            raise CliError(f"`dengine cluster up` (pid {sup}) did not stop in time", FAILED)
        lc = LocalCluster.open(lc.root)
    running = [n.node_id for n in lc.nodes.values() if n.running]
    if not running and sup is None:
        _say(f"the cluster in {lc.root} is not running")
        return OK
    codes = lc.stop(args.stop_timeout)
    _save(lc)
    code = OK
    for node_id in running:
        if codes.get(node_id) == -signal.SIGKILL:
            _say(f"  node {node_id} was killed (did not stop in time)")
            code = FAILED
        else:
            _say(f"  node {node_id} stopped")
    _say(f"cluster stopped; its data stays in {lc.root}")
    return code


def _kill(lc: LocalCluster, args: argparse.Namespace) -> int:
    n = _node(lc, args.node_id)
    if not n.running:
        raise CliError(f"node {n.node_id} is not running (`dengine cluster restart-node "
                       f"{n.node_id}` starts it)", FAILED)
    pid = n.pid
    n.killed_pid = pid
    _save(lc)  # first: a supervising `cluster up` then knows the exit is intended
    n.signal(signal.SIGKILL)
    n.wait(10)
    _save(lc)
    _say(f"node {n.node_id} (pid {pid}) killed with SIGKILL; `dengine cluster restart-node "
         f"{n.node_id}` starts it again")
    return OK


def _restart(lc: LocalCluster, args: argparse.Namespace) -> int:
    n = _node(lc, args.node_id)
    if n.running:
        n.killed_pid = n.pid
        _save(lc)
        n.signal(signal.SIGTERM)
        if not n.wait(args.stop_timeout):
            n.signal(signal.SIGKILL)
            n.wait(10)
        _say(f"node {n.node_id} (pid {n.killed_pid}) stopped")
    busy = lc.busy_ports()
    if any(i == n.node_id for i, _ in busy):
        raise CliError(f"node {n.node_id}'s address {n.address} is in use by another process "
                       "(a `dengine serve` of that node?); stop it first", FAILED)
    n.start(lc.env, detached=True)
    _save(lc)
    st = asyncio.run(_answer(lc, n, args.wait))
    _say(f"node {n.node_id} restarted (pid {n.pid}): {st.role}, term {st.term}, applied "
         f"index {st.applied_index}")
    return OK


async def _answer(lc: LocalCluster, n: Any, timeout: float) -> Any:
    from dengine.client import Client

    deadline = time.monotonic() + timeout
    async with Client([n.address], timeout=1.0) as client:
        while True:
            if not n.running:
                raise CliError(f"node {n.node_id} {n.exit_description()} after the restart "
                               f"(log: {n.log_path})", FAILED)
            try:
                return await client.status(n.address, timeout=0.5)
            except DengineError:
                if time.monotonic() > deadline:
                    raise CliError(f"node {n.node_id} did not answer within {timeout:g}s "
                                   f"(log: {n.log_path})", FAILED) from None
                await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# A supervising `cluster up` and the commands above


def adopt_restarts(lc: LocalCluster, reported: set[int], say: Callable[[str], None]
                   ) -> set[int]:
    """Of the nodes whose exit the supervisor has seen (``reported``), those stopped on
    purpose by ``kill-node``/``restart-node`` (said once) and those running again under a new
    pid (adopted, so the supervisor watches and stops them). Returns the ids explained."""
    try:
        record = LocalCluster.open(lc.root)
    except LocalClusterError:
        return set()
    explained = set()
    for node_id in sorted(reported):
        mine, theirs = lc.nodes[node_id], record.nodes.get(node_id)
        if theirs is None:
            continue
        if theirs.killed_pid is not None and theirs.killed_pid == mine.pid:
            explained.add(node_id)
            if mine.killed_pid != theirs.killed_pid:
                mine.killed_pid = theirs.killed_pid
                say(f"node {node_id} was stopped by `dengine cluster kill-node/restart-node`")
        if theirs.recorded_pid and theirs.recorded_pid != mine.pid and theirs.running:
            mine.proc, mine.recorded_pid = None, theirs.recorded_pid
            reported.discard(node_id)
            explained.add(node_id)
            say(f"node {node_id} is running again (pid {mine.pid})")
    return explained
