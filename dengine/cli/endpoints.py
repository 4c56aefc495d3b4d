"""Which cluster a client command talks to, and where that came from.

A client command (``put``, ``get``, ``status``, ``bench``...) finds the cluster's endpoints in
this order, and the first that is given wins:

1. ``--endpoints HOST:PORT[,HOST:PORT...]``;
2. the ``DENGINE_ENDPOINTS`` environment variable;
3. the cluster ``dengine cluster up`` recorded in ``--data-dir`` (default ``./data``), in its
   ``cluster.json``;
4. nothing: an error that says how to point at a cluster.

There is deliberately no "most recent cluster" kept anywhere else: a command run in a directory
talks to the cluster of that directory or to the one it is told about, never to a cluster some
other terminal started last. Every error that comes from talking to the cluster names the
endpoints used and their origin (:class:`Endpoints` ``.where``).

Endpoints are ``host:port``; an ``http://`` or ``https://`` prefix, as etcd users type them, and
a trailing ``/`` are accepted and dropped; IPv6 hosts are written ``[::1]:7001``.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass

from dengine.cli.errors import CONFIG, USAGE, CliError
from dengine.local.cluster import DEFAULT_DATA_DIR

__all__ = [
    "ENDPOINTS_ENV",
    "DEFAULT_DATA_DIR",
    "Endpoints",
    "parse_endpoints",
    "resolve",
    "add_endpoint_flags",
    "seconds",
    "positive_int",
    "port_number",
]

ENDPOINTS_ENV = "DENGINE_ENDPOINTS"
_SCHEMES = ("http://", "https://", "grpc://", "grpcs://")


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The endpoints a command uses and where they came from (e.g. ``--endpoints``)."""

    addresses: tuple[str, ...]
    origin: str

    @property
    def where(self) -> str:
        """``127.0.0.1:7001,127.0.0.1:7002 (from --endpoints)``: for error messages."""
        return f"{','.join(self.addresses)} (from {self.origin})"


def parse_endpoints(text: str, origin: str) -> list[str]:
    """``host:port`` list from a comma-separated string; a scheme prefix is dropped."""
    out = []
    for raw in text.split(","):
        e = raw.strip()
        for scheme in _SCHEMES:
            if e.lower().startswith(scheme):
                e = e[len(scheme):]
                break
        e = e.rstrip("/")
        if not e:
            continue
        host, sep, port = e.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        if (not sep or not host or not port.isdigit() or not 0 < int(port) < 65536
                or ("/" in host) or (":" in host and not bracketed)):
            raise CliError(f"{origin}: {raw.strip()!r} is not host:port (e.g. 127.0.0.1:7001)",
                           USAGE)
        out.append(e)
    if not out:
        raise CliError(f"{origin} is empty; give host:port[,host:port...]", USAGE)
    return list(dict.fromkeys(out))


def resolve(endpoints: str | None, data_dir: str | None) -> Endpoints:
    """The endpoints of the cluster to talk to (see the module docstring)."""
    if endpoints:
        return Endpoints(tuple(parse_endpoints(endpoints, "--endpoints")), "--endpoints")
    env = os.environ.get(ENDPOINTS_ENV, "").strip()
    if env:
        return Endpoints(tuple(parse_endpoints(env, ENDPOINTS_ENV)), ENDPOINTS_ENV)
    from dengine.local.cluster import STATE_FILE, LocalCluster

    root = data_dir if data_dir is not None else DEFAULT_DATA_DIR
    if not LocalCluster.exists(root):
        given = "--data-dir " + root if data_dir is not None else f"./{DEFAULT_DATA_DIR}"
        raise CliError(
            f"no cluster to talk to: no --endpoints, no ${ENDPOINTS_ENV}, and no cluster "
            f"recorded in {given} ({STATE_FILE}); pass --endpoints HOST:PORT[,...], set "
            f"{ENDPOINTS_ENV}, run in the directory where `dengine cluster up` was run, or "
            "pass its --data-dir", CONFIG)
    lc = LocalCluster.open(root)
    return Endpoints(tuple(lc.endpoints), str(lc.root / STATE_FILE))


def seconds(text: str) -> float:
    """argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be a positive number of seconds")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value}: a port is 1 to 65535")
    return value


def add_endpoint_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup,
                       timeout: float | None = 5.0) -> None:
    """``--endpoints``, ``--data-dir`` and (unless ``timeout`` is None) ``--timeout``."""
    p.add_argument("--endpoints", metavar="HOST:PORT[,...]", default=None,
                   help=f"members to talk to (default: ${ENDPOINTS_ENV}, else the cluster "
                        "recorded in --data-dir)")
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help=f"use the local cluster `dengine cluster up` recorded in DIR "
                        f"(default: ./{DEFAULT_DATA_DIR})")
    if timeout is not None:
        p.add_argument("--timeout", type=seconds, default=timeout, metavar="SECONDS",
                       help=f"deadline of each request, retries included (default: {timeout:g})")
