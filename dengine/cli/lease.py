"""``dengine lease``: grant, revoke, keep alive and inspect leases.

``dengine lease grant TTL`` prints the new lease id; attach keys with ``dengine put KEY VALUE
--lease ID``; ``dengine lease keepalive ID`` renews it every third of its TTL until Ctrl-C (or
once with ``--once``); ``dengine lease ttl ID [--keys]`` shows the seconds left by the leader's
clock; ``dengine lease revoke ID`` deletes the lease and its keys. A lease that is gone is exit
code 4.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def _lease_id(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a lease id") from None
    if not 0 < value < 1 << 64:
        raise argparse.ArgumentTypeError(f"{value} is not a lease id (1..2^64-1)")
    return value


def register(subparsers: Any) -> None:
    """Add ``lease`` to the ``dengine`` command."""
    from dengine.cli.client import _common, run
    from dengine.cli.errors import EXIT_CODES_HELP, USAGE

    fmt = argparse.RawDescriptionHelpFormatter
    lease = subparsers.add_parser("lease", help="grant, keep alive, inspect and revoke leases",
                                  description=__doc__.split("\n\n")[1], epilog=EXIT_CODES_HELP,
                                  formatter_class=fmt)
    lease.set_defaults(func=lambda _a: (lease.print_help(), USAGE)[1])
    sub = lease.add_subparsers(title="commands", metavar="COMMAND")
    common = _common()

    def add(name: str, help: str, func: Any) -> Any:
        p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                           parents=[common], epilog=EXIT_CODES_HELP, formatter_class=fmt)
        p.set_defaults(func=lambda args: run(args, _gone_is_not_found(func)))
        return p

    p = add("grant", "grant a lease of TTL seconds; prints its id", _grant)
    p.add_argument("ttl", type=int, metavar="TTL")
    p = add("revoke", "revoke a lease and delete its keys", _revoke)
    p.add_argument("id", type=_lease_id, metavar="ID")
    p = add("keepalive", "renew a lease every third of its TTL until Ctrl-C", _keepalive)
    p.add_argument("id", type=_lease_id, metavar="ID")
    p.add_argument("--once", action="store_true", help="renew once and exit")
    p = add("ttl", "seconds left on a lease (by the leader's clock)", _ttl)
    p.add_argument("id", type=_lease_id, metavar="ID")
    p.add_argument("--keys", action="store_true", help="also list the keys attached to it")


def _gone_is_not_found(func: Any) -> Any:
    """A lease that does not exist is exit code 4 (NOT_FOUND), as a missing key is."""

    def call(c: Any, args: argparse.Namespace) -> int:
        from dengine.cli.errors import NOT_FOUND, CliError
        from dengine.errors import LeaseNotFound

        try:
            return func(c, args)
        except LeaseNotFound as e:
            raise CliError(str(e), NOT_FOUND) from e

    return call


def _grant(c: Any, args: argparse.Namespace) -> int:
    lease = c.grant(args.ttl)
    print(f"lease {lease.id} granted with TTL {lease.ttl}s (revision {lease.revision})")
    return 0


def _revoke(c: Any, args: argparse.Namespace) -> int:
    rev = c.revoke(args.id)
    print(f"lease {args.id} revoked (revision {rev})")
    return 0


def _keepalive(c: Any, args: argparse.Namespace) -> int:
    if args.once:
        print(f"lease {args.id} kept alive with TTL {c.keep_alive_once(args.id)}s")
        return 0
    renewals = c.keep_alive(args.id)
    try:
        for ttl in renewals:
            print(f"lease {args.id} kept alive with TTL {ttl}s", flush=True)
    finally:
        renewals.close()
    return 0


def _ttl(c: Any, args: argparse.Namespace) -> int:
    st = c.time_to_live(args.id, keys=args.keys)
    if st.ttl < 0:
        from dengine.errors import LeaseNotFound

        raise LeaseNotFound(args.id)
    print(f"lease {args.id}: {st.ttl}s left of {st.granted_ttl}s")
    for k in st.keys:
        print(k.decode("utf-8", errors="backslashreplace"))
    return 0
