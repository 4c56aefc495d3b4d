"""Client commands of ``dengine``: put, get, delete, scan, status, transfer-leader, member.

Each runs one or a few calls through :class:`dengine.client.SyncClient` against the cluster's
endpoints, found as :mod:`dengine.cli.endpoints` says: ``--endpoints``, else
``$DENGINE_ENDPOINTS``, else the cluster recorded in ``--data-dir`` (default ``./data``).

Output is plain text for people (``get`` prints the bare value, so ``$(dengine get k)`` works in
scripts). A failure is one ``dengine: error: ...`` line on stderr and a documented exit code
(:mod:`dengine.cli.errors`); a cluster that cannot serve is diagnosed as either unreachable or
without a leader, naming the endpoints used and where they came from.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from dengine.cli.data import Codec, add_encoding_flags, read_value
from dengine.cli.endpoints import (
    Endpoints,
    add_endpoint_flags,
    parse_endpoints,
    resolve,
    seconds,
)
from dengine.cli.errors import (
    EXIT_CODES_HELP,
    OK,
    UNAVAILABLE,
    USAGE,
    CliError,
    KeyNotFound,
    exit_code,
    report,
)
from dengine.errors import DengineError, OperationTimeout

__all__ = ["register", "resolve_endpoints"]

_FMT = argparse.RawDescriptionHelpFormatter


def _node_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a node id (a whole number > 0)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a node id (a whole number > 0)")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: must be 0 (no limit) or more")
    return value


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    add_endpoint_flags(p.add_argument_group("cluster"))
    from dengine.cli.security import add_tls_flags

    add_tls_flags(p.add_argument_group("TLS"))
    return p


def register(subparsers: Any) -> None:
    """Add the client commands to the ``dengine`` command."""
    common = _common()

    def add(name: str, help: str, func: Callable[[Any, argparse.Namespace], int]) -> Any:
        p = subparsers.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                                  parents=[common], epilog=EXIT_CODES_HELP, formatter_class=_FMT)
        p.set_defaults(func=lambda args: run(args, func))
        return p

    p = add("put", "write a key", _put)
    p.add_argument("key")
    p.add_argument("value", nargs="?", default=None,
                   help="the value; - reads it from stdin (any bytes, any size)")
    p.add_argument("--file", default=None, metavar="PATH", help="read the value from PATH")
    add_encoding_flags(p)
    p.add_argument("--lease", type=lambda t: int(t, 0), default=0, metavar="ID",
                   help="attach the key to a lease (`dengine lease grant`)")
    p = add("get", "read a key (exit code 4 when it does not exist)", _get)
    p.add_argument("key")
    p.add_argument("--consistency", choices=("linearizable", "lease", "serializable"),
                   default="linearizable", help="read consistency (default: linearizable)")
    add_encoding_flags(p)
    p = add("delete", "delete a key", _delete)
    p.add_argument("key")
    add_encoding_flags(p)
    p = add("scan", "list keys and values in key order", _scan)
    p.add_argument("prefix", nargs="?", default="", help="only keys that start with this")
    p.add_argument("--start", default="", help="first key (inclusive)")
    p.add_argument("--end", default="", help="end key (exclusive; default: no end)")
    p.add_argument("--limit", type=_count, default=0, help="at most this many keys (0: all)")
    add_encoding_flags(p)
    p.add_argument("--consistency", choices=("linearizable", "lease", "serializable"),
                   default="linearizable", help="read consistency (default: linearizable)")
    p = add("status", "show every member: role, term, leader, commit and applied index, lag",
            _status)
    p.add_argument("--watch", nargs="?", type=seconds, const=1.0, default=None,
                   metavar="SECONDS", help="redraw every SECONDS (default 1) until Ctrl-C")
    p = add("transfer-leader", "hand leadership to a voter", _transfer)
    p.add_argument("node_id", type=_node_id, metavar="ID")

    member = subparsers.add_parser(
        "member", help="list, add, promote or remove cluster members",
        description="Membership changes: a new node joins as a learner (it replicates but "
                    "does not vote), is promoted to voter once it has caught up, and any "
                    "member can be removed.", epilog=EXIT_CODES_HELP, formatter_class=_FMT)
    member.set_defaults(func=lambda _a: (member.print_help(), USAGE)[1])
    msub = member.add_subparsers(title="commands", metavar="COMMAND")

    def madd(name: str, help: str, func: Any) -> Any:
        p = msub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                            parents=[common], epilog=EXIT_CODES_HELP, formatter_class=_FMT)
        p.set_defaults(func=lambda args: run(args, func))
        return p

    madd("list", "list the members and their roles", _member_list)
    p = madd("add", "add a node as a learner", _member_add)
    p.add_argument("node_id", type=_node_id, metavar="ID")
    p.add_argument("address", metavar="HOST:PORT")
    p = madd("promote", "make a learner a voter", _member_promote)
    p.add_argument("node_id", type=_node_id, metavar="ID")
    p = madd("remove", "remove a member (voter or learner)", _member_remove)
    p.add_argument("node_id", type=_node_id, metavar="ID")


# ---------------------------------------------------------------------------------------------
# Running a command


def resolve_endpoints(args: argparse.Namespace) -> tuple[list[str], str]:
    """The endpoints to use and where they came from (see :mod:`dengine.cli.endpoints`)."""
    found = resolve(args.endpoints, args.data_dir)
    return list(found.addresses), found.origin


def run(args: argparse.Namespace, func: Callable[[Any, argparse.Namespace], int]) -> int:
    """Resolve the endpoints, open a SyncClient, run ``func``; any error becomes one line."""
    found: Endpoints | None = None
    client = None
    try:
        found = resolve(args.endpoints, args.data_dir)
        args.endpoints_from = found.origin
        from dengine.cli.security import client_tls
        from dengine.client import SyncClient

        root = os.path.dirname(found.origin) if found.origin.endswith(".json") else None
        client = SyncClient(list(found.addresses), timeout=args.timeout, fail_fast=True,
                            **client_tls(args, root))
        return int(func(client, args) or OK)
    except (DengineError, OSError, TimeoutError) as e:
        err: BaseException = e
        if client is not None and found is not None and exit_code(e) == UNAVAILABLE:
            err = _diagnose(client, e, found)
        return report(err, found.where if found is not None else None)
    except KeyboardInterrupt as e:
        return report(e)
    finally:
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing must not hide the answer
                pass


def _diagnose(client: Any, exc: BaseException, found: Endpoints) -> BaseException:
    """Tell "nobody answers" from "they answer but have no leader" for an unavailable cluster."""
    try:
        answers = client.statuses(timeout=min(0.5, client.client.timeout))
    except Exception:  # noqa: BLE001
        return exc
    up = [a for a in answers.values() if not isinstance(a, BaseException)]
    op = exc.operation if isinstance(exc, OperationTimeout) else "the request"
    where = found.where
    if not up:
        errs = [a for a in answers.values() if isinstance(a, BaseException)]
        why = f" ({' '.join(str(errs[0]).split())[:160]})" if errs else ""
        return CliError(f"cannot reach the cluster at {where}: no endpoint answered{why}; is it "
                        "running? start one with `dengine cluster up`", UNAVAILABLE)
    if not any(s.leader_id for s in up):
        return CliError(f"no leader at {where}: {len(up)} of {len(answers)} nodes answer but "
                        f"none knows a leader (is a majority of the voters running?); {op} "
                        "gave up",
                        UNAVAILABLE)
    return exc


def _out(text: str = "") -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------------------------------
# Commands


def _put(c: Any, args: argparse.Namespace) -> int:
    codec = Codec(args.encoding)
    key = codec.arg(args.key)
    revision = c.put(key, read_value(args.value, args.file, codec), lease=args.lease)
    _out(f"OK (revision {revision})")
    return OK


def _get(c: Any, args: argparse.Namespace) -> int:
    codec = Codec(args.encoding)
    kv = c.get(codec.arg(args.key), consistency=args.consistency)
    if kv is None:
        raise KeyNotFound(args.key)
    _out(codec.show(kv.value, lines=True))
    codec.note()
    return OK


def _delete(c: Any, args: argparse.Namespace) -> int:
    deleted = c.delete(Codec(args.encoding).arg(args.key))
    _out("deleted" if deleted else "not found (nothing to delete)")
    return OK


def _scan(c: Any, args: argparse.Namespace) -> int:
    codec = Codec(args.encoding)
    n = 0
    page = min(args.limit, 1000) if args.limit else 1000
    show = codec.show
    lines: list[str] = []
    for kv in c.scan_iter(codec.arg(args.start, "--start"), codec.arg(args.end, "--end"),
                          prefix=codec.arg(args.prefix, "prefix"), page_size=page,
                          consistency=args.consistency):
        lines.append(f"{show(kv.key)} = {show(kv.value)}")
        n += 1
        if args.limit and n >= args.limit:
            break
        if len(lines) >= page:  # one write per page: output streams as the pages come
            _out("\n".join(lines))
            lines.clear()
    if lines:
        _out("\n".join(lines))
    if n == 0:
        _out("(no keys)")
    codec.note()
    return OK


def _status(c: Any, args: argparse.Namespace) -> int:
    interval = getattr(args, "watch", None)
    if interval is None:
        return _status_once(c, args)
    if interval <= 0:
        raise CliError(f"--watch {interval:g}: the interval must be positive", USAGE)
    clear = "\033[H\033[2J" if sys.stdout.isatty() else ""
    try:
        while True:
            sys.stdout.write(clear)
            _out(time.strftime("%H:%M:%S") + f"  (every {interval:g}s; Ctrl-C stops)")
            try:
                _status_once(c, args)
            except CliError as e:  # keep watching a cluster that is down or electing
                _out(f"dengine: {e}")
            time.sleep(interval)
    except KeyboardInterrupt:
        return OK


def _status_once(c: Any, args: argparse.Namespace) -> int:
    answers: dict[str, Any] = dict(c.statuses(timeout=min(args.timeout, 1.0)))
    members: dict[int, tuple[str, str]] = {}
    for st in answers.values():
        if not isinstance(st, BaseException):
            members.update({m.id: (m.address, m.role) for m in st.members})
    for addr, _role in members.values():
        if addr and addr not in answers:
            try:
                answers[addr] = c.status(addr, timeout=min(args.timeout, 1.0))
            except DengineError as e:
                answers[addr] = e
    live = {a: s for a, s in answers.items() if not isinstance(s, BaseException)}
    if not live:
        raise CliError(f"cannot reach the cluster at {','.join(answers)} (from "
                       f"{args.endpoints_from}): no endpoint answered; is it running? start one "
                       "with `dengine cluster up`", UNAVAILABLE)
    lead = max(live.values(), key=lambda s: (s.term, bool(s.leader_id)))
    cid = lead.cluster_id
    if lead.leader_id:
        _out(f"cluster {cid}: leader node {lead.leader_id} at {lead.leader_addr} "
             f"(term {lead.term})   endpoints from {args.endpoints_from}")
    else:
        _out(f"cluster {cid}: no leader known (term {lead.term})   endpoints from "
             f"{args.endpoints_from}")
    # LAG: entries committed on the cluster that this node has not applied yet.
    top = max(s.commit_index for s in live.values())
    rows = [("ID", "ADDRESS", "MEMBER", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG")]
    by_addr = {addr: (i, role) for i, (addr, role) in members.items()}
    for addr in sorted(answers, key=lambda a: by_addr.get(a, (1 << 62, ""))[0]):
        st = answers[addr]
        node_id, member = by_addr.get(addr, (None, "not a member"))
        if isinstance(st, BaseException):
            rows.append((str(node_id or "?"), addr, member, "unreachable", "-", "-", "-", "-"))
        else:
            rows.append((str(st.id), addr, member, st.role, str(st.term),
                         str(st.commit_index), str(st.applied_index),
                         str(max(0, top - st.applied_index))))
    _table(rows)
    for st in live.values():
        if st.alarms:
            _out(f"ALARM node {st.id}: {', '.join(st.alarms)} ({st.used_bytes} of "
                 f"{st.quota_bytes} bytes used; writes refused until space is freed and "
                 "`dengine alarm disarm` is run)")
    return OK


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        _out("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def _transfer(c: Any, args: argparse.Namespace) -> int:
    c.transfer_leader(args.node_id)
    st = c.status()
    if st.leader_id == args.node_id:
        _out(f"node {args.node_id} is the leader now (term {st.term})")
    else:
        _out(f"leadership transfer to node {args.node_id} started; the leader is node "
             f"{st.leader_id} for now (term {st.term})")
    return OK


def _members(members: Any) -> None:
    rows = [("ID", "ADDRESS", "ROLE")]
    rows += [(str(m.id), m.address, m.role) for m in sorted(members, key=lambda m: m.id)]
    _table(rows)


def _member_list(c: Any, _args: argparse.Namespace) -> int:
    _members(c.status().members)
    return OK


def _member_add(c: Any, args: argparse.Namespace) -> int:
    parse_endpoints(args.address, "address")
    members = c.add_learner(args.node_id, args.address)
    _out(f"node {args.node_id} added as a learner at {args.address}; promote it with "
         f"`dengine member promote {args.node_id}` once it has caught up")
    _members(members)
    return OK


def _member_promote(c: Any, args: argparse.Namespace) -> int:
    members = c.promote(args.node_id)
    _out(f"node {args.node_id} is a voter now")
    _members(members)
    return OK


def _member_remove(c: Any, args: argparse.Namespace) -> int:
    members = c.remove_member(args.node_id)
    _out(f"node {args.node_id} removed")
    _members(members)
    return OK
