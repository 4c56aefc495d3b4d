"""``dengine demo``: a local three-node cluster loses its leader and keeps every acknowledged key.

The script, with real processes on loopback ports in a temporary directory:

1. start three ``dengine serve`` processes (RocksDB storage, short election timeouts);
2. wait for a leader;
3. write keys through the network client, remembering each acknowledged one;
4. SIGKILL the leader's process; wait for a new leader among the other two; read every
   acknowledged key back (linearizable) and write more with one node down;
5. restart the killed node on its data directory; wait until it has applied the last write and
   read every key from it alone (serializable: its own state machine);
6. stop the cluster (SIGTERM) and check each node exited cleanly.

Each check prints ``ok`` or ``FAILED``; the exit code is 0 only if every check held. On a failure
the directory (with each node's log) is kept and named.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import tempfile
import time
from typing import Any

from dengine.cli.endpoints import positive_int
from dengine.cli.errors import EXIT_CODES_HELP, FAILED, INTERRUPTED, OK, one_line
from dengine.errors import DengineError
from dengine.local.cluster import LocalCluster, free_ports

__all__ = ["add_demo_parser", "run_demo"]


def add_demo_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo", help="watch a 3-node cluster survive the crash of its leader",
        description=(
            "Start a local 3-node cluster in a temporary directory, write keys, kill the "
            "leader's process (SIGKILL), show the new leader and that every acknowledged key "
            "is still there, restart the killed node and show it catch up, then stop. "
            "Exits 0 only if every check held."),
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tls", action="store_true",
                   help="run the cluster with mutual TLS (certificates made for the demo)")
    p.add_argument("--keys", type=positive_int, default=20, metavar="N",
                   help="keys to write before the crash (default: 20)")
    p.add_argument("--election-ms", type=positive_int, default=500, metavar="MS",
                   help="base election timeout of the demo's nodes (default: 500)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary directory (configs, logs, data) afterwards")
    p.set_defaults(func=run_demo)
    return p


class _Script:
    """Prints the demo's lines and keeps the score."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.checks: list[tuple[str, bool]] = []
        self.notes: list[str] = []

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def check(self, ok: bool, text: str) -> bool:
        self.checks.append((text, ok))
        print(f"   {text:<70} {'ok' if ok else 'FAILED'}", flush=True)
        return ok

    def since(self, t: float) -> str:
        return f"{time.monotonic() - t:.1f}s"

    @property
    def failed(self) -> list[str]:
        return [text for text, ok in self.checks if not ok]


def run_demo(args: argparse.Namespace) -> int:
    election = max(100, args.election_ms - args.election_ms % 10)
    raft = {"tick_ms": 10, "heartbeat_ms": min(100, election // 5), "election_ms": election,
            "lease_ms": election * 4 // 5 // 10 * 10}
    root = tempfile.mkdtemp(prefix="dengine-demo-")
    out = _Script()
    lc = None
    code = OK
    ctrl_c = _CtrlC()
    try:
        with ctrl_c:
            base: dict[str, Any] = {"raft": raft}
            if getattr(args, "tls", False):
                from dengine.cli.security import local_tls_layers

                base["tls"] = local_tls_layers(root, 3)
            lc = LocalCluster.create(root, 3, ports=free_ports(3), base=base,
                                     cluster_id="dengine-demo")
            lc.validate()
            asyncio.run(_demo(lc, max(1, args.keys), out, ctrl_c))
    except (KeyboardInterrupt, asyncio.CancelledError):
        ctrl_c.pressed = True
    except (DengineError, OSError) as e:
        if not ctrl_c.pressed:  # an error caused by the interruption is the interruption
            out.check(False, f"the demo could not go on: {one_line(e)}")
    finally:
        with ctrl_c.hurrying():
            if lc is not None:
                _stop(lc, out, quiet=ctrl_c.pressed, hurry=lambda: ctrl_c.presses > 1,
                      interrupted=lambda: ctrl_c.pressed)
    lines = [f"demo passed: all {len(out.checks)} checks held in {out.since(out.t0)}"]
    if ctrl_c.pressed:
        code = INTERRUPTED
        lines = ["demo interrupted: every node it started was stopped"]
        if args.keep:
            lines.append(f"configs, logs and data are kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    elif out.failed:
        code = FAILED
        lines = [f"demo FAILED: {len(out.failed)} of {len(out.checks)} checks failed"
                 + (f" ({out.failed[0]})" if out.failed else ""),
                 f"configs, logs and data are kept in {root}"]
    elif args.keep:
        lines.append(f"configs, logs and data are kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    out.say()
    for line in (out.notes if not ctrl_c.pressed else []) + lines:
        out.say(line)
    return code


class _CtrlC:
    """Ctrl-C (SIGINT) during the demo: the first interrupts it (KeyboardInterrupt outside the
    event loop, cancelling the script inside it); while the nodes are being stopped, presses
    are only counted (a second one skips the grace period) so the cleanup always finishes."""

    def __init__(self) -> None:
        self.pressed = False
        self.presses = 0
        self._old: Any = None

    def _raise(self, _signum: int, _frame: Any) -> None:
        self.presses += 1
        if not self.pressed:
            self.pressed = True
            raise KeyboardInterrupt

    def _count(self, _signum: int, _frame: Any) -> None:
        self.presses += 1
        self.pressed = True

    def __enter__(self) -> _CtrlC:
        self._old = signal.signal(signal.SIGINT, self._raise)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._old)

    def on_loop(self, task: asyncio.Task) -> None:
        """Inside the event loop: Ctrl-C cancels the script's task."""

        def cancel() -> None:
            self.presses += 1
            self.pressed = True
            task.cancel()

        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, cancel)

    @contextlib.contextmanager
    def hurrying(self) -> Any:
        old = signal.signal(signal.SIGINT, self._count)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, old)


async def _demo(lc: LocalCluster, n_keys: int, out: _Script, ctrl_c: _CtrlC) -> None:
    from dengine.client import Client

    ctrl_c.on_loop(asyncio.current_task())  # type: ignore[arg-type]

    out.say("dengine demo: a 3-node Raft cluster loses its leader and keeps every "
            "acknowledged write")
    out.say()
    out.say(f"1. start 3 node processes (RocksDB storage) in {lc.root}")
    t = time.monotonic()
    lc.start()
    for n in lc.nodes.values():
        out.say(f"   node {n.node_id} at {n.address} (pid {n.pid})")
    async with Client(lc.endpoints, timeout=10, **lc.client_tls) as c:
        lead = await lc.wait_leader(c, timeout=60)
        out.say()
        out.say(f"2. node {lead.id} is the leader (term {lead.term}), elected {out.since(t)} "
                "after the start")

        acked: dict[str, str] = {}
        last = await _write(c, acked, range(n_keys))
        out.say()
        out.say(f"3. write {n_keys} keys through the client (demo/key-00 ...)")
        out.check(len(acked) == n_keys, f"{len(acked)} of {n_keys} writes acknowledged")

        out.say()
        old = lc.nodes[lead.id]
        out.say(f"4. kill the leader, node {old.node_id} (pid {old.pid}), with SIGKILL")
        t = time.monotonic()
        lc.kill(old.node_id)
        others = [i for i in lc.nodes if i != old.node_id]
        new = await lc.wait_leader(c, among=others, not_id=old.node_id, timeout=60)
        out.say(f"   node {new.id} is the new leader (term {new.term}), elected {out.since(t)} "
                "after the kill")
        out.check(new.id != old.node_id and new.term > lead.term,
                  f"leader changed: node {old.node_id} -> node {new.id}")
        await _read_back(c, acked, out, "on the new leader")
        more = range(n_keys, n_keys + max(1, n_keys // 2))
        before = len(acked)
        last = await _write(c, acked, more)
        out.check(len(acked) - before == len(more),
                  f"{len(acked) - before} more writes acknowledged with node {old.node_id} down")

        out.say()
        out.say(f"5. restart node {old.node_id} on its data directory")
        t = time.monotonic()
        lc.start([old.node_id])
        st = await lc.wait_applied(c, old.node_id, last, timeout=60)
        out.say(f"   node {old.node_id} is a {st.role} again and has applied index "
                f"{st.applied_index} (the last write), {out.since(t)} after the restart")
        await _read_back(c, acked, out, f"on node {old.node_id} alone (serializable)",
                         endpoint=old.address)
    out.notes.append(f"leader change: node {old.node_id} -> node {new.id}")


async def _write(c: Any, acked: dict[str, str], numbers: range) -> int:
    """Write ``demo/key-<i>`` for each number; remember each acknowledged one. Returns the
    revision (log index) of the last write."""
    last = 0
    for i in numbers:
        key, value = f"demo/key-{i:02d}", f"value-{i}"
        last = await c.put(key, value)
        acked[key] = value
    return last


async def _read_back(c: Any, acked: dict[str, str], out: _Script, where: str,
                     endpoint: str | None = None) -> None:
    kw: dict[str, Any] = {"consistency": "serializable", "endpoint": endpoint} if endpoint else {}
    got = await c.get_many(list(acked), **kw)
    same = sum(1 for k, v in acked.items() if k.encode() in got and
               got[k.encode()].value == v.encode())
    out.check(same == len(acked), f"{same} of {len(acked)} acknowledged keys read back {where}")


def _stop(lc: LocalCluster, out: _Script, quiet: bool = False, hurry: Any = None,
          interrupted: Any = None) -> None:
    running = [n.node_id for n in lc.nodes.values() if n.running]
    if not running:
        return
    if quiet:  # interrupted: stop, and say nothing of checks
        lc.stop(10.0, hurry=hurry)
        return
    out.say()
    out.say("6. stop the cluster (SIGTERM to each node)")
    codes = lc.stop(10.0, hurry=hurry)
    if interrupted is not None and interrupted():
        return  # Ctrl-C while stopping: the nodes were stopped; no verdict on how
    bad = {i: codes.get(i) for i in running if codes.get(i) != 0}
    out.check(not bad, "every node stopped cleanly" if not bad else
              "nodes that did not stop cleanly: " + ", ".join(
                  f"node {i} (exit code {rc})" for i, rc in bad.items()))
