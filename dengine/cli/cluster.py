"""``dengine cluster up`` and ``dengine demo``: real node processes on this machine.

``cluster up`` supervises a local cluster (see :mod:`dengine.local.cluster` for its directory):
it starts one ``dengine serve`` process per node, prints where each listens, waits for a
leader, and then watches the nodes until SIGINT (Ctrl-C), SIGTERM or SIGHUP, when it stops them:
SIGTERM to each, a grace period, SIGKILL to stragglers. A second Ctrl-C skips the grace period.
Signals only set a flag; the supervisor's loop notices it, so a stop is never cut short.

``demo`` (:mod:`dengine.cli.demo`) runs a scripted failover on a temporary cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from dengine.cli.cluster_ops import adopt_restarts
from dengine.cli.endpoints import port_number, positive_int, seconds
from dengine.cli.errors import EXIT_CODES_HELP, FAILED, OK, USAGE, CliError, report
from dengine.errors import DengineError
from dengine.local.cluster import DEFAULT_DATA_DIR, STATE_FILE, LocalCluster, pick_ports, read_toml
from dengine.local.pids import find_node_process

__all__ = ["register", "run_cluster_up"]


def register(subparsers: Any) -> None:
    """Add ``cluster up`` and ``demo`` to the ``dengine`` command."""
    fmt = argparse.RawDescriptionHelpFormatter
    cluster = subparsers.add_parser(
        "cluster", help="run a local cluster of node processes",
        description="Run a local cluster of dengine node processes on this machine.",
        epilog=EXIT_CODES_HELP, formatter_class=fmt)
    csub = cluster.add_subparsers(title="commands", metavar="COMMAND")
    cluster.set_defaults(func=lambda _args: _usage(cluster))
    up = csub.add_parser(
        "up", help="start a local cluster; Ctrl-C stops it",
        description=(
            "Start a local cluster of `dengine serve` processes on 127.0.0.1 and keep it running "
            "until Ctrl-C (SIGINT) or SIGTERM, which stop every node cleanly.\n\n"
            "A new cluster gets DIR/node-<id>/node.toml (config), node.log and data/ per node, "
            "and DIR/cluster.json, where client commands (dengine put, get, ...) find its "
            "endpoints. Running it again on the same DIR reuses the data, the ports and the "
            "config files."),
        epilog=EXIT_CODES_HELP, formatter_class=fmt)
    up.add_argument("--nodes", type=positive_int, default=None, metavar="N",
                    help="number of nodes of a new cluster (default: 3)")
    up.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
                    help=f"directory of the cluster (default: ./{DEFAULT_DATA_DIR})")
    up.add_argument("--base-port", type=port_number, default=None, metavar="PORT",
                    help="ports PORT, PORT+1, ... for a new cluster (default: 7001... when "
                         "free, else ports the system picks)")
    up.add_argument("--config", default=None, metavar="PATH",
                    help="TOML file of settings shared by the nodes of a new cluster (e.g. a "
                         "[raft] section); the per-node keys are filled in")
    up.add_argument("--tls", action="store_true",
                    help="a new cluster speaks only TLS: certificates are made in DIR/certs "
                         "(mutual TLS between nodes; client commands use DIR/certs/client.pem)")
    up.add_argument("--etcd-api", action="store_true",
                    help="a new cluster also serves etcd's v3 API, each node on a port of its "
                         "own (etcdctl --endpoints=...); the ports are printed")
    up.add_argument("--stop-timeout", type=seconds, default=10.0, metavar="SECONDS",
                    help="how long a node may take to stop before it is killed (default: 10)")
    up.add_argument("--leader-timeout", type=seconds, default=30.0, metavar="SECONDS",
                    help=argparse.SUPPRESS)
    up.add_argument("--detach", action="store_true",
                    help="start the nodes in the background and return once a leader is "
                         "elected; `dengine cluster down` stops them")
    up.set_defaults(func=run_cluster_up)
    from dengine.cli.cluster_ops import register_ops

    register_ops(csub)

    from dengine.cli.demo import add_demo_parser

    add_demo_parser(subparsers)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return USAGE


def _say(text: str = "") -> None:
    print(text, flush=True)


def _prepare(args: argparse.Namespace) -> LocalCluster:
    """Open the recorded cluster in the data dir, or create a new one; validate it."""
    root = Path(args.data_dir)
    if LocalCluster.exists(root):
        lc = LocalCluster.open(root)
        if args.nodes is not None and args.nodes != len(lc.nodes):
            raise CliError(f"{root} holds a cluster of {len(lc.nodes)} nodes, not {args.nodes}; "
                           "use another --data-dir for a new cluster", USAGE)
        if args.config or args.base_port is not None:
            raise CliError(f"{root} holds a cluster already: --config and --base-port apply "
                           f"to a new one only; edit {root}/node-<id>/node.toml instead", USAGE)
        pid = lc.recorded_supervisor()
        if pid is not None:
            raise CliError(f"the cluster in {lc.root} is already running (dengine cluster up, "
                           f"pid {pid}); stop it with Ctrl-C there, or `dengine cluster down "
                           f"--data-dir {lc.root}`", FAILED)
        live = [n for n in lc.nodes.values() if n.running]
        if live:
            raise CliError(f"the cluster in {lc.root} is already running (node(s) "
                           f"{', '.join(f'{n.node_id} (pid {n.pid})' for n in live)}); see "
                           f"`dengine cluster status --data-dir {lc.root}`, stop it with "
                           f"`dengine cluster down --data-dir {lc.root}`", FAILED)
        lc.validate()
        busy = lc.busy_ports()
        if busy:
            node_id, addr = busy[0]
            pid = find_node_process(lc.nodes[node_id].config_path)
            if pid is not None:
                raise CliError(f"node {node_id} already runs outside `cluster up` (pid {pid}, "
                               f"`dengine serve --config {lc.nodes[node_id].config_path}`); "
                               f"stop it (kill {pid}) and run `dengine cluster up` again; to "
                               "restart one node of a running cluster, use `dengine cluster "
                               f"restart-node {node_id}`", FAILED)
            raise CliError(f"node {node_id}'s address {addr} is in use by another process; "
                           f"stop it, or change the addresses in {lc.root}/{STATE_FILE} and "
                           "the node files", FAILED)
        _say(f"reusing the cluster in {lc.root} ({len(lc.nodes)} nodes, data kept)")
        if getattr(args, "etcd_api", False) and not lc.etcd_endpoints:
            raise CliError(f"--etcd-api applies to a new cluster; set [etcd_api] listen in "
                           f"{lc.root}/node-<id>/node.toml instead", USAGE)
        _say_etcd(lc)
        return lc
    n = 3 if args.nodes is None else args.nodes
    if not 1 <= n <= 99:
        raise CliError(f"--nodes {n}: a cluster has 1 to 99 nodes (3 or 5 are usual)", USAGE)
    base = read_toml(args.config) if args.config else None
    if args.tls:
        from dengine.cli.security import local_tls_layers

        base = dict(base or {})
        base["tls"] = {**base.get("tls", {}), **local_tls_layers(root, n)}
    etcd_api = getattr(args, "etcd_api", False)
    ports = pick_ports(2 * n if etcd_api else n, args.base_port)
    lc = LocalCluster.create(root, n, ports=ports[:n], base=base, base_name=args.config or "",
                             etcd_ports=ports[n:] if etcd_api else None)
    lc.validate()
    _say(f"new cluster of {n} nodes in {lc.root}")
    _say_etcd(lc)
    return lc


def _say_etcd(lc: LocalCluster) -> None:
    eps = lc.etcd_endpoints
    if eps:
        _say(f"etcd API endpoints: {','.join(eps)}")


def run_cluster_up(args: argparse.Namespace) -> int:
    """Start, supervise and stop a local cluster; see the module docstring."""
    if args.detach:
        from dengine.cli.cluster_ops import run_detached

        return run_detached(args, _prepare)
    signals = [0]

    def on_signal(_signum: int, _frame: Any) -> None:
        signals[0] += 1

    old = {s: signal.signal(s, on_signal)
           for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    lc: LocalCluster | None = None
    code = OK
    try:
        lc = _prepare(args)
        lc.start()
        lc.save(supervisor_pid=os.getpid())
        for n in lc.nodes.values():
            _say(f"  node {n.node_id}  {n.address}  pid {n.pid}  log {n.log_path}")
        code = _supervise(lc, args, lambda: signals[0] > 0)
    except (DengineError, OSError) as e:
        code = report(e)
    finally:
        if lc is not None and any(n.proc is not None or n.running for n in lc.nodes.values()):
            code = max(code, _stop(lc, args.stop_timeout, signals))
        for s, h in old.items():
            signal.signal(s, h)
    return code


def _supervise(lc: LocalCluster, args: argparse.Namespace, stopping: Any) -> int:
    """Wait for a leader, then watch the nodes until a stop is asked for."""
    lead = asyncio.run(_leader(lc, args.leader_timeout, stopping))
    if lead is not None:
        _say(f"leader: node {lead.id} at {lead.address} (term {lead.term})")
        _say(f"endpoints: {','.join(lc.endpoints)}")
        flag = _dir_flag(lc)
        _say(f"try: dengine put hello world{flag} && dengine get hello{flag}")
    if not stopping():
        _say("the cluster is running; Ctrl-C stops it")
    code = OK
    reported: set[int] = set()
    intended: set[int] = set()  # stopped by `cluster kill-node` or `restart-node`
    while not stopping():
        time.sleep(0.1)
        for n in lc.nodes.values():
            if n.node_id not in reported and n.pid is not None and not n.running:
                reported.add(n.node_id)
                if n.node_id in adopt_restarts(lc, reported, _say):
                    intended.add(n.node_id)
                    continue
                code = FAILED
                print(f"dengine: node {n.node_id} {n.exit_description()} (log: {n.log_path})",
                      file=sys.stderr, flush=True)
        if reported and int(time.monotonic() * 10) % 5 == 0:
            intended = (intended | adopt_restarts(lc, reported, _say)) & reported
        if len(reported) == len(lc.nodes) and not intended:
            print("dengine: error: every node has exited", file=sys.stderr, flush=True)
            break
    return code


def _dir_flag(lc: LocalCluster) -> str:
    """`` --data-dir DIR`` unless the cluster lives in ``./data``, where commands look."""
    return "" if lc.root == Path(DEFAULT_DATA_DIR).resolve() else f" --data-dir {lc.root}"


async def _leader(lc: LocalCluster, timeout: float, stopping: Any) -> Any:
    from dengine.client import Client

    async with Client(lc.endpoints, timeout=1.0, **lc.client_tls) as client:
        return await lc.wait_leader(client, timeout=timeout, cancelled=stopping)


def _stop(lc: LocalCluster, grace_s: float, signals: list[int]) -> int:
    """Stop every node (SIGTERM, grace, SIGKILL) and say how each ended."""
    running = [n.node_id for n in lc.nodes.values() if n.running]
    if running:
        _say(f"stopping {len(running)} node(s)...")
    asked = signals[0]
    codes = lc.stop(grace_s, hurry=lambda: signals[0] > asked)
    lc.save(supervisor_pid=None)
    code = OK
    for node_id in running:
        rc = codes.get(node_id)
        if rc == 0:
            _say(f"  node {node_id} stopped")
        elif rc == -signal.SIGTERM:  # still loading, before it could handle the signal
            _say(f"  node {node_id} stopped before it had started")
        else:
            how = "was killed (did not stop in time)" if rc == -signal.SIGKILL else \
                f"exited with code {rc}"
            _say(f"  node {node_id} {how}")
            code = FAILED
    _say(f"cluster stopped; its data stays in {lc.root} (run `dengine cluster up "
         f"--data-dir {lc.root}` again to restart it)")
    return code
