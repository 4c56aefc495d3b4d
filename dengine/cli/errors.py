"""Exit codes of the ``dengine`` command, and errors rendered as one line.

Every subcommand ends in one of a few documented exit codes (:data:`EXIT_CODES_HELP` is the
``--help`` epilog), so scripts can tell "the key is not there" from "the cluster is down" from
"the cluster said no" without parsing text. A failing command prints exactly one line on stderr,
``dengine: error: ...``, never a traceback: :func:`exit_code` and :func:`one_line` turn any
exception a command lets out into that line and its code.
"""

from __future__ import annotations

import sys
from typing import Any

from dengine.errors import (
    ConfChangeError,
    ConfigError,
    DengineError,
    InvalidArgument,
    LocalClusterError,
    NotLeader,
    OperationTimeout,
    PayloadTooLarge,
    ProposalDropped,
    Unavailable,
)

__all__ = [
    "OK",
    "FAILED",
    "USAGE",
    "CONFIG",
    "NOT_FOUND",
    "UNAVAILABLE",
    "REFUSED",
    "INTERRUPTED",
    "EXIT_CODES_HELP",
    "KeyNotFound",
    "CliError",
    "exit_code",
    "one_line",
    "report",
]

OK = 0
FAILED = 1  # a check failed, a node exited with an error, anything not listed below
USAGE = 2  # bad command-line arguments (argparse uses 2 too)
CONFIG = 3  # a config file or value is invalid
NOT_FOUND = 4  # get: the key does not exist
UNAVAILABLE = 5  # cannot reach the cluster, no leader, or the request timed out
REFUSED = 6  # the cluster refused the request (unknown member id, bad argument, too large)
INTERRUPTED = 130  # Ctrl-C

EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    failure: a demo check failed, a node exited with an error, any other error
  2    usage: bad command-line arguments
  3    config: a config file or value is invalid
  4    not found: the key does not exist (get)
  5    unavailable: cannot reach the cluster, no leader, or the request timed out
  6    refused: the cluster refused the request (unknown member id, invalid argument)
  130  interrupted (Ctrl-C)
"""


#: The exit code of each class of local-cluster failure (``LocalClusterError.kind``).
_LOCAL_CLUSTER_CODES = {LocalClusterError.USAGE: USAGE, LocalClusterError.CONFIG: CONFIG,
                        LocalClusterError.FAILED: FAILED}


class CliError(DengineError):
    """A command-level failure with its exit code, e.g. "no cluster recorded in DIR"."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        self.code = code
        super().__init__(message)


class KeyNotFound(CliError):
    """``dengine get`` of a key that does not exist."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} not found", NOT_FOUND)


def _root(exc: BaseException) -> BaseException:
    """The last error behind a timeout: what the retries kept running into."""
    seen = 0
    while isinstance(exc, OperationTimeout) and exc.__cause__ is not None and seen < 8:
        exc = exc.__cause__
        seen += 1
    return exc


def exit_code(exc: BaseException) -> int:
    """The documented exit code for an error a command let out."""
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, LocalClusterError):
        return _LOCAL_CLUSTER_CODES[exc.kind]
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, ConfigError):
        return CONFIG
    root = _root(exc)
    if isinstance(root, ConfChangeError | InvalidArgument | PayloadTooLarge):
        return REFUSED
    if isinstance(exc, OperationTimeout | Unavailable | NotLeader | ProposalDropped):
        return UNAVAILABLE
    if isinstance(exc, TimeoutError | ConnectionError):
        return UNAVAILABLE
    return FAILED


def one_line(exc: BaseException, endpoints: Any = None) -> str:
    """The error as one line that says what happened and what to do."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    root = _root(exc)
    where = ""
    if endpoints:
        where = " at " + (",".join(endpoints) if not isinstance(endpoints, str) else endpoints)
    if isinstance(exc, OperationTimeout) and root is not exc:
        if isinstance(root, NotLeader) and not root.leader_id:
            return (f"no leader in the cluster{where}: {exc.operation} timed out waiting for "
                    "an election (is a majority of the nodes running?)")
        if isinstance(root, Unavailable):
            return (f"cannot reach the cluster{where}: {exc.operation} timed out ({root.reason});"
                    " is it running? start one with `dengine cluster up`")
        if exit_code(exc) == REFUSED:
            return _flat(str(root))
        return f"{exc} (last error: {_flat(str(root))})" + (f"; endpoints{where}" if where else "")
    if isinstance(exc, Unavailable):
        return (f"cannot reach the cluster{where}: {_flat(exc.reason)}; is it running? "
                "start one with `dengine cluster up`")
    if isinstance(exc, DengineError | OSError):
        return _flat(str(exc))
    return f"{type(exc).__name__}: {_flat(str(exc))}"


def _flat(text: str, limit: int = 400) -> str:
    """One line, at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def report(exc: BaseException, endpoints: Any = None) -> int:
    """Print the one-line error on stderr; return its exit code."""
    print(f"dengine: error: {one_line(exc, endpoints)}", file=sys.stderr, flush=True)
    return exit_code(exc)
