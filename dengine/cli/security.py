"""``dengine certs init`` and the TLS flags every client command takes.

``dengine certs init --nodes 3 --out DIR`` writes a development CA, node certificates and a
client certificate (:mod:`dengine.security.certs`). Client commands take ``--cacert``,
``--cert``, ``--key`` (as etcdctl names them) and ``--token``, each also an environment
variable (``DENGINE_CACERT``...); with none given, a local cluster started with
``dengine cluster up --tls`` is reached with the client certificate it recorded.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dengine.local.tls import TLS_DIR, recorded_client_tls

if TYPE_CHECKING:
    from dengine.client.types import ClientTLS

__all__ = ["register", "add_tls_flags", "client_tls", "local_tls_layers", "TLS_DIR",
           "recorded_client_tls"]

_ENV: dict[Literal["cacert", "cert", "key", "token"], str] = {"cacert": "DENGINE_CACERT", "cert": "DENGINE_CERT", "key": "DENGINE_KEY",
        "token": "DENGINE_TOKEN"}


def register(subparsers: Any) -> None:
    """Add ``dengine certs`` (``init``)."""
    certs = subparsers.add_parser("certs", help="make development TLS certificates",
                                  description="Make development TLS certificates.")
    sub = certs.add_subparsers(title="commands", metavar="COMMAND")
    init = sub.add_parser(
        "init", help="write a development CA, node and client certificates",
        description="Write a development CA (ca.pem, ca.key), node-<id>.pem/.key for each "
                    "node (SAN dengine-node-<id>) and a client certificate per --client name. "
                    "An existing CA in --out is reused.")
    init.add_argument("--nodes", type=int, default=3, metavar="N", help="node ids 1..N (3)")
    init.add_argument("--out", required=True, metavar="DIR", help="directory to write to")
    init.add_argument("--host", action="append", default=None, metavar="NAME_OR_IP",
                      help="a host name or IP the nodes are reached at (repeatable; default "
                           "127.0.0.1 and localhost)")
    init.add_argument("--client", action="append", default=None, metavar="NAME",
                      help="a client certificate with this common name (repeatable; default "
                           "'client')")
    init.set_defaults(func=_run_init)
    token = sub.add_parser(
        "token", help="make a bearer token and the users-file entry that admits it",
        description="Print a new random token (give it to the client: --token) and the "
                    "[users.NAME] entry for the users file (auth.users_path), which keeps only "
                    "its SHA-256.")
    token.add_argument("name", help="the identity the token stands for")
    token.add_argument("--role", choices=("read", "readwrite", "admin"), default="read",
                       help="its role (default: read)")
    token.set_defaults(func=_run_token)
    certs.set_defaults(func=lambda _a: certs.print_help() or 2)


def _run_init(args: argparse.Namespace) -> int:
    from dengine.security.certs import DEFAULT_HOSTS, init_certs

    if not 1 <= args.nodes <= 99:
        from dengine.cli.errors import USAGE, CliError

        raise CliError(f"--nodes {args.nodes}: 1 to 99", USAGE)
    out = init_certs(args.out, args.nodes, hosts=args.host or DEFAULT_HOSTS,
                     clients=args.client or ("client",))
    print(f"wrote a CA, {args.nodes} node certificates and "
          f"{len(args.client or ['client'])} client certificate(s) in {out}")
    return 0


def _run_token(args: argparse.Namespace) -> int:
    import secrets

    from dengine.security.auth import hash_token

    token = secrets.token_urlsafe(32)
    print(f"token: {token}")
    print(f'\n[users."{args.name}"]\nrole = "{args.role}"\n'
          f'token_sha256 = "{hash_token(token)}"')
    return 0


def add_tls_flags(group: Any) -> None:
    """``--cacert --cert --key --token`` on a client command's argument group."""
    group.add_argument("--cacert", dest="tls_cacert", default=None, metavar="PEM",
                       help="CA that issued the nodes' certificates (turns TLS on; "
                            "$DENGINE_CACERT)")
    group.add_argument("--cert", dest="tls_cert", default=None, metavar="PEM",
                       help="client certificate ($DENGINE_CERT)")
    group.add_argument("--key", dest="tls_key", default=None, metavar="PEM",
                       help="key of --cert ($DENGINE_KEY)")
    group.add_argument("--token", dest="tls_token", default=None, metavar="TOKEN",
                       help="bearer token naming the caller ($DENGINE_TOKEN)")


def client_tls(args: argparse.Namespace, recorded_root: str | None = None) -> ClientTLS:
    """Keyword arguments for ``Client``/``SyncClient``: the flags, else their environment
    variables, else the client certificate of a ``cluster up --tls`` cluster in
    ``recorded_root``."""
    out: ClientTLS = {}
    for name, env in _ENV.items():
        value = getattr(args, f"tls_{name}", None) or os.environ.get(env)
        if value:
            out[name] = value
    if not out and recorded_root is not None:
        out = recorded_client_tls(recorded_root)
    return out


def local_tls_layers(root: str | os.PathLike[str], n: int) -> dict[str, Any]:
    """Make the certificates of an ``n``-node local cluster under ``root`` and return the
    ``[tls]`` config layer (``{id}`` stands for each node's id)."""
    from dengine.security.certs import init_certs

    d = init_certs(Path(root).resolve() / TLS_DIR, n)
    return {"enabled": True, "cert_path": str(d / "node-{id}.pem"),
            "key_path": str(d / "node-{id}.key"), "ca_path": str(d / "ca.pem")}
