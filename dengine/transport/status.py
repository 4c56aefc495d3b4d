"""dengine errors <-> gRPC status codes and the client.proto ``Error`` message, both ways.

Theory of operation
-------------------
A server answers a failed request in one of two ways, and both carry the same information:

* in the ``Batch`` stream, in the response body, as a ``dengine.v1.Error`` (code, message, leader
  hint), so one failed request in a batch fails only itself;
* on every unary call (Kv and Cluster), as a gRPC status (code + details) with trailing
  metadata: the same ``Error`` serialized under :data:`ERROR_METADATA_KEY`, a
  ``google.rpc.Status`` with an ``ErrorInfo`` detail under ``grpc-status-details-bin``, and for
  NOT_LEADER the leader's id and address as text (:data:`LEADER_ID_KEY`,
  :data:`LEADER_ADDR_KEY`). So a generic gRPC client, which checks status codes, never takes a
  refused request for a success, and a dengine client recovers the exact error.

:func:`to_proto` / :func:`from_proto` convert an exception to and from the ``Error`` message;
:func:`grpc_status` gives the status code, details and trailing metadata for an exception;
:func:`from_rpc_error` turns a ``grpc.RpcError`` back into a dengine error, using the trailing
``Error`` when present and the bare status code otherwise. Unknown exceptions map to INTERNAL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import grpc

from dengine import errors as E
from dengine.v1 import client_pb2

__all__ = [
    "ERROR_METADATA_KEY",
    "ErrorCode",
    "error_code",
    "to_proto",
    "from_proto",
    "grpc_code",
    "grpc_status",
    "status_of_error",
    "LEADER_ID_KEY",
    "LEADER_ADDR_KEY",
    "RICH_STATUS_KEY",
    "ERROR_DOMAIN",
    "from_rpc_error",
    "abort",
]

#: Trailing-metadata key holding a serialized ``dengine.v1.Error`` (binary: ends in ``-bin``).
ERROR_METADATA_KEY = "dengine-error-bin"
#: Trailing-metadata keys of a NOT_LEADER status: the leader's node id and address, as text.
LEADER_ID_KEY = "dengine-leader-id"
LEADER_ADDR_KEY = "dengine-leader-addr"
#: The standard key of a serialized ``google.rpc.Status`` (gRPC's "richer error model").
RICH_STATUS_KEY = "grpc-status-details-bin"
#: ``google.rpc.ErrorInfo.domain`` of dengine's errors; ``reason`` is the ``ErrorCode`` name.
ERROR_DOMAIN = "dengine.v1"

ErrorCode = client_pb2.ErrorCode

# Most specific first: the first isinstance match wins.
_TO_CODE: tuple[tuple[type[BaseException], int], ...] = (
    (E.NotLeader, client_pb2.NOT_LEADER),
    (E.Overloaded, client_pb2.RESOURCE_EXHAUSTED),
    (E.Unavailable, client_pb2.UNAVAILABLE),
    (E.OperationTimeout, client_pb2.TIMEOUT),
    (E.PayloadTooLarge, client_pb2.PAYLOAD_TOO_LARGE),
    (E.ClusterMismatch, client_pb2.CLUSTER_MISMATCH),
    (E.ConfChangeError, client_pb2.CONF_CHANGE_REFUSED),
    (E.ProposalDropped, client_pb2.PROPOSAL_DROPPED),
    (E.SessionExpired, client_pb2.SESSION_EXPIRED),
    (E.Unauthenticated, client_pb2.UNAUTHENTICATED),
    (E.PermissionDenied, client_pb2.PERMISSION_DENIED),
    (E.QuotaExceeded, client_pb2.NO_SPACE),
    (E.LeaseNotFound, client_pb2.NOT_FOUND),
    (E.ConfigError, client_pb2.INVALID_ARGUMENT),
    (E.DecodeError, client_pb2.INVALID_ARGUMENT),
    (E.InvalidArgument, client_pb2.INVALID_ARGUMENT),
    (E.RemoteProtocolError, client_pb2.INVALID_ARGUMENT),
    (TimeoutError, client_pb2.TIMEOUT),
)

_GRPC_OF: dict[int, grpc.StatusCode] = {
    client_pb2.OK: grpc.StatusCode.OK,
    client_pb2.NOT_LEADER: grpc.StatusCode.FAILED_PRECONDITION,
    client_pb2.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    client_pb2.TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    client_pb2.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    client_pb2.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    client_pb2.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    client_pb2.COMPARE_FAILED: grpc.StatusCode.FAILED_PRECONDITION,
    client_pb2.CONF_CHANGE_REFUSED: grpc.StatusCode.FAILED_PRECONDITION,
    client_pb2.CLUSTER_MISMATCH: grpc.StatusCode.PERMISSION_DENIED,
    client_pb2.PROPOSAL_DROPPED: grpc.StatusCode.ABORTED,
    client_pb2.INTERNAL: grpc.StatusCode.INTERNAL,
    client_pb2.SESSION_EXPIRED: grpc.StatusCode.FAILED_PRECONDITION,
    client_pb2.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    client_pb2.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    client_pb2.NO_SPACE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    client_pb2.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
}

# A bare status (no trailing Error, e.g. raised by gRPC itself) back to an ErrorCode.
_CODE_OF_GRPC: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.UNAVAILABLE: client_pb2.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: client_pb2.TIMEOUT,
    grpc.StatusCode.CANCELLED: client_pb2.UNAVAILABLE,
    grpc.StatusCode.INVALID_ARGUMENT: client_pb2.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE: client_pb2.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED: client_pb2.PAYLOAD_TOO_LARGE,
    grpc.StatusCode.PERMISSION_DENIED: client_pb2.CLUSTER_MISMATCH,
    grpc.StatusCode.ABORTED: client_pb2.PROPOSAL_DROPPED,
    grpc.StatusCode.NOT_FOUND: client_pb2.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED: client_pb2.UNAUTHENTICATED,
}

_TOO_LARGE = re.compile(
    r"(\d+) bytes exceeds the limit of (\d+)|larger than max \((\d+) vs\. (\d+)\)"
)
_MISMATCH = re.compile(r"^(.*?) mismatch: expected (.*), got (.*)$")
_MISMATCH_HIDDEN = re.compile(r"^(.*?) mismatch: got (.*), which is not this cluster's; ")
_SESSION = re.compile(r"request (\d+) of client (\d+) ")
_DENIED = re.compile(r"^permission denied: (.*) needs role (\S+); '(.*)' has role (\S+)$", re.S)
_UNAUTH = re.compile(r"^unauthenticated: (.*); present a client certificate", re.S)
_OUR_TOO_LARGE = re.compile(
    r"^(.*) of (\d+) bytes exceeds the limit of (\d+) bytes(?:; raise (\S+) to allow more)?$", re.S
)
_TIMEOUT = re.compile(r"^(.*) did not finish(?: within (\S+)s)?; retry, or raise the deadline$", re.S)
_NOSPACE = re.compile(r"NOSPACE alarm(?: on node (\d+))?: (\d+) bytes used of the (\d+)-byte")
_LEASE = re.compile(r"^lease (\d+) does not exist")
_SERVER = re.compile(r"^server error ([A-Z0-9_]+): (.*)$", re.S)


def error_code(exc: BaseException) -> int:
    """The ``ErrorCode`` number for an exception (INTERNAL when nothing more specific fits)."""
    for cls, code in _TO_CODE:
        if isinstance(exc, cls):
            return code
    return client_pb2.INTERNAL


def to_proto(exc: BaseException) -> client_pb2.Error:
    """The ``Error`` message a response carries for ``exc``; NotLeader keeps its leader hint."""
    err = client_pb2.Error(code=error_code(exc), message=str(exc))  # type: ignore[arg-type]  # protobuf takes any int; its stubs only the enum class
    if isinstance(exc, E.NotLeader):
        err.leader_id = exc.leader_id or 0
        err.leader_addr = exc.leader_addr or ""
    if isinstance(exc, E.Overloaded):
        err.retry_after_ms = exc.retry_after_ms
    return err


def from_proto(err: client_pb2.Error) -> E.DengineError | None:
    """The dengine error an ``Error`` message stands for; None for code OK."""
    code, msg = err.code, err.message
    if code == client_pb2.OK:
        return None
    if code == client_pb2.NOT_LEADER:
        return E.NotLeader(err.leader_id or None, err.leader_addr or None)
    if code == client_pb2.RESOURCE_EXHAUSTED:
        wait = err.retry_after_ms or 100
        return E.Overloaded(_reason(msg, lambda r: E.Overloaded(r, wait)), wait)
    return _from_code(code, msg)


def _from_code(code: int, msg: str) -> E.DengineError:
    """The error for ``code``; built from the fields ``msg`` was made of, so that the decoded
    error's message is the original's (its advice said once, however many round trips)."""
    if code == client_pb2.NOT_LEADER:
        return E.NotLeader(None, None)
    if code == client_pb2.UNAVAILABLE:
        unknown = _reason(msg, E.OutcomeUnknown)
        if unknown != msg:  # "outcome unknown" rides on UNAVAILABLE; keep the distinction
            return E.OutcomeUnknown(unknown)
        return E.Unavailable(_reason(msg, E.Unavailable))
    if code == client_pb2.TIMEOUT:
        return _timeout(msg)
    if code == client_pb2.INVALID_ARGUMENT:
        return E.InvalidArgument(_reason(msg, E.InvalidArgument))
    if code == client_pb2.PAYLOAD_TOO_LARGE:
        m = _OUR_TOO_LARGE.match(msg)
        if m:
            return E.PayloadTooLarge(int(m[2]), int(m[3]), m[1], m[4] or "")
        m = _TOO_LARGE.search(msg)
        nums = [int(g) for g in m.groups() if g is not None] if m else [0, 0]
        # gRPC's own message-size check: the server's network.max_message_bytes
        return E.PayloadTooLarge(nums[0], nums[1], "request", "network.max_message_bytes")
    if code == client_pb2.CLUSTER_MISMATCH:
        m = _MISMATCH.match(msg)
        if m:
            return E.ClusterMismatch(_unquote(m[2]), _unquote(m[3]), m[1])
        m = _MISMATCH_HIDDEN.match(msg)
        if m:
            return E.ClusterMismatch(None, _unquote(m[2]), m[1])
        return E.ClusterMismatch("?", "?", msg or "cluster id")
    if code == client_pb2.CONF_CHANGE_REFUSED:
        return E.ConfChangeError(_reason(msg, E.ConfChangeError))
    if code == client_pb2.PROPOSAL_DROPPED:
        return E.ProposalDropped(_reason(msg, E.ProposalDropped))
    if code == client_pb2.UNAUTHENTICATED:
        m = _UNAUTH.match(msg)
        return E.Unauthenticated(m[1] if m else msg)
    if code == client_pb2.PERMISSION_DENIED:
        m = _DENIED.match(msg)
        return E.PermissionDenied(m[3], m[4], m[2], m[1]) if m else \
            E.PermissionDenied("?", "?", "?", msg)
    if code == client_pb2.RESOURCE_EXHAUSTED:
        return E.Overloaded(_reason(msg, E.Overloaded))
    if code == client_pb2.SESSION_EXPIRED:
        m = _SESSION.match(msg)
        return E.SessionExpired(int(m[2]), int(m[1])) if m else E.SessionExpired(0, 0)
    if code == client_pb2.NO_SPACE:
        m = _NOSPACE.search(msg)
        return E.QuotaExceeded(int(m[2]), int(m[3]), int(m[1]) if m[1] else None) if m \
            else E.QuotaExceeded(0, 0)
    m = _LEASE.match(msg)
    if code == client_pb2.NOT_FOUND and m:
        return E.LeaseNotFound(int(m[1]))
    m = _SERVER.match(msg)
    if m:  # already a ServerError's message: keep its code and reason
        return E.ServerError(m[1], m[2])
    name = client_pb2.ErrorCode.Name(code) if code in client_pb2.ErrorCode.values() else str(code)
    return E.ServerError(name, msg)


def _reason(msg: str, make: Callable[[str], BaseException]) -> str:
    """The reason ``make(reason)`` was built from when ``msg`` is the message of such an error
    (its fixed prefix and advice removed); ``msg`` itself otherwise (e.g. gRPC's own details)."""
    head, _, tail = str(make("\x00")).partition("\x00")
    if len(msg) >= len(head) + len(tail) and msg.startswith(head) and msg.endswith(tail):
        return msg[len(head) : len(msg) - len(tail)]
    return msg


def _timeout(msg: str) -> E.OperationTimeout:
    m = _TIMEOUT.match(msg)
    if m is None:
        return E.OperationTimeout(msg or "the request")
    try:
        timeout_s = float(m[2]) if m[2] is not None else None
    except ValueError:
        return E.OperationTimeout(msg)
    return E.OperationTimeout(m[1], timeout_s)


def _unquote(s: str) -> str:
    return s[1:-1] if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"" else s


def grpc_code(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code for an exception."""
    return _GRPC_OF[error_code(exc)]


def grpc_status(
    exc: BaseException,
) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str | bytes], ...]]:
    """Status code, details and trailing metadata (with the serialized Error) for ``exc``."""
    return status_of_error(to_proto(exc))


def status_of_error(
    err: client_pb2.Error,
) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str | bytes], ...]]:
    """Status code, details and trailing metadata for an ``Error`` message: the serialized
    ``Error`` (:data:`ERROR_METADATA_KEY`), a ``google.rpc.Status`` with an ``ErrorInfo``
    detail (``grpc-status-details-bin``, what gRPC's rich-error helpers read in every language),
    and for NOT_LEADER the hint as plain text keys :data:`LEADER_ID_KEY` / :data:`LEADER_ADDR_KEY`.
    """
    code = _GRPC_OF.get(err.code, grpc.StatusCode.INTERNAL)
    trailing: list[tuple[str, str | bytes]] = [(ERROR_METADATA_KEY, err.SerializeToString())]
    if err.code == client_pb2.NOT_LEADER:
        if err.leader_id:
            trailing.append((LEADER_ID_KEY, str(err.leader_id)))
        if err.leader_addr:
            trailing.append((LEADER_ADDR_KEY, err.leader_addr))
    rich = _rich_status(code, err)
    if rich is not None:
        trailing.append((RICH_STATUS_KEY, rich))
    return code, err.message, tuple(trailing)


def _rich_status(code: grpc.StatusCode, err: client_pb2.Error) -> bytes | None:
    """A serialized ``google.rpc.Status`` with one ``google.rpc.ErrorInfo`` detail."""
    try:
        from google.protobuf import any_pb2
        from google.rpc import error_details_pb2, status_pb2
    except ImportError:  # pragma: no cover - googleapis-common-protos is a dependency
        return None
    name = client_pb2.ErrorCode.Name(err.code) if err.code in client_pb2.ErrorCode.values() \
        else str(err.code)
    info = error_details_pb2.ErrorInfo(reason=name, domain=ERROR_DOMAIN)
    if err.leader_id:
        info.metadata["leader_id"] = str(err.leader_id)
    if err.leader_addr:
        info.metadata["leader_addr"] = err.leader_addr
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(code=code.value[0], message=err.message,
                             details=[detail]).SerializeToString()


def _error_from_rich(trailing: Sequence) -> client_pb2.Error | None:
    """The ``Error`` a ``google.rpc.Status`` detail stands for (a server that sends only that)."""
    for key, value in trailing:
        if key != RICH_STATUS_KEY or not isinstance(value, bytes):
            continue
        try:
            from google.rpc import error_details_pb2, status_pb2

            st = status_pb2.Status.FromString(value)
            for detail in st.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                    code = client_pb2.ErrorCode.Value(info.reason)
                    leader = info.metadata.get("leader_id", "0")
                    return client_pb2.Error(
                        code=code, message=st.message,
                        leader_id=int(leader) if leader.isdigit() else 0,
                        leader_addr=info.metadata.get("leader_addr", ""))
        except Exception:  # noqa: BLE001 - a garbled detail falls back to the status code
            return None
    return None


def from_rpc_error(exc: grpc.RpcError) -> E.DengineError:
    """A failed call's status as a dengine error (the trailing Error when the server sent one)."""
    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if callable(getattr(exc, "details", None)) else None) or ""
    trailing: Sequence = ()
    if callable(getattr(exc, "trailing_metadata", None)):
        trailing = exc.trailing_metadata() or ()
    for key, value in trailing:
        if key == ERROR_METADATA_KEY and isinstance(value, bytes):
            err = client_pb2.Error()
            try:
                err.ParseFromString(value)
            except Exception:  # noqa: BLE001 - a garbled hint falls back to the status code
                break
            found = from_proto(err)
            if found is not None:
                return found
    rich = _error_from_rich(trailing)
    if rich is not None and rich.code != client_pb2.OK:
        return from_proto(rich)  # type: ignore[return-value]
    mapped = _CODE_OF_GRPC.get(code)
    if mapped is None:
        return E.ServerError(code.name if code else "UNKNOWN", details)
    return _from_code(mapped, details)


async def abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    """End an aio RPC with the status for ``exc`` (raises, as ``context.abort`` does)."""
    code, details, trailing = grpc_status(exc)
    await context.abort(code, details, trailing_metadata=trailing)
