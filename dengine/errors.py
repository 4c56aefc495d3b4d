"""Every error dengine raises, in one module that imports nothing from dengine.

Each error carries structured fields and a message that says what happened and what to do.
Errors split into local ones (the caller misused an API: bad config, a proposal dropped) and
remote ones (a peer or client sent garbage: :class:`RemoteProtocolError`). Two are fatal:
:class:`Corruption` and :class:`InvariantViolation` stop a node rather than let it serve
wrong data.
"""

from __future__ import annotations

__all__ = [
    "DengineError",
    "ConfigError",
    "OperationTimeout",
    "NotLeader",
    "ProposalDropped",
    "Unavailable",
    "StorageError",
    "Compacted",
    "IndexOutOfRange",
    "Corruption",
    "RemoteProtocolError",
    "InvariantViolation",
    "ConfChangeError",
    "SnapshotError",
    "KernelUnavailable",
    "ClusterMismatch",
    "PayloadTooLarge",
    "DecodeError",
    "InvalidAppend",
    "ForeignDataDir",
    "InvalidArgument",
    "ServerError",
    "DataDirLocked",
    "StorageIOError",
    "Overloaded",
    "OutcomeUnknown",
]


class DengineError(Exception):
    """Base of every dengine error."""


class ConfigError(DengineError, ValueError):
    """A configuration key has a bad value; names the key, the value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"config {key}={value!r} is not valid: allowed {allowed}")


class OperationTimeout(DengineError, TimeoutError):
    """An operation did not finish within its deadline; says which operation."""

    def __init__(self, operation: str, timeout_s: float | None = None) -> None:
        self.operation = operation
        self.timeout_s = timeout_s
        within = f" within {timeout_s:g}s" if timeout_s is not None else ""
        super().__init__(f"{operation} did not finish{within}; retry, or raise the deadline")


class NotLeader(DengineError):
    """This node is not the leader; carries the leader's id and address when known."""

    def __init__(self, leader_id: int | None = None, leader_addr: str | None = None) -> None:
        self.leader_id = leader_id
        self.leader_addr = leader_addr
        if leader_id:
            hint = f"the leader is node {leader_id}" + (f" at {leader_addr}" if leader_addr else "")
        else:
            hint = "no leader is known yet; retry after an election timeout"
        super().__init__(f"not the leader: {hint}")


class ProposalDropped(DengineError):
    """A proposal was not appended to the log (no leader, transfer in progress, stopping...)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"proposal dropped: {reason}")


class Unavailable(DengineError):
    """The cluster or a node cannot serve the request now; retrying later may succeed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"unavailable: {reason}")


class StorageError(DengineError):
    """A storage operation failed."""


class Compacted(StorageError):
    """The requested index was compacted away; the first kept index is ``first_index``."""

    def __init__(self, index: int, first_index: int) -> None:
        self.index = index
        self.first_index = first_index
        super().__init__(
            f"log index {index} is compacted (first kept index is {first_index}); "
            "a snapshot is needed"
        )


class IndexOutOfRange(StorageError):
    """The requested index is past the end of the log (``last_index``)."""

    def __init__(self, index: int, last_index: int) -> None:
        self.index = index
        self.last_index = last_index
        super().__init__(f"log index {index} is past the last index {last_index}")


class Corruption(StorageError):
    """Stored data is damaged (fatal): the node refuses to start rather than serve wrong data."""

    def __init__(self, path: str, offset: int | None, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        at = f" at byte offset {offset}" if offset is not None else ""
        super().__init__(
            f"corrupt data in {path}{at}: {reason}; the node will not start on it "
            "(restore this node from a snapshot or remove its data directory and re-join)"
        )


class RemoteProtocolError(DengineError):
    """A peer or client sent a message that breaks the protocol."""

    def __init__(self, peer: object, reason: str) -> None:
        self.peer = peer
        self.reason = reason
        super().__init__(f"bad message from {peer}: {reason}")


class InvariantViolation(DengineError):
    """An internal invariant broke (fatal): the node stops rather than go on wrong."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invariant violated: {reason}; stopping the node")


class ConfChangeError(DengineError):
    """A membership change was refused (last voter, existing node, change already pending...)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"membership change refused: {reason}")


class SnapshotError(StorageError):
    """A snapshot could not be written, sent, verified or restored."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"snapshot failed: {reason}")


class KernelUnavailable(DengineError, ImportError):
    """The compiled core is missing and the pure-Python references were not asked for."""

    def __init__(self, module: str, cause: str) -> None:
        self.module = module
        super().__init__(
            f"the compiled kernel {module} could not be imported ({cause}); reinstall dengine "
            "with a C compiler and the Python headers (pip install .), or set "
            "DENGINE_PURE_PYTHON=1 to run on the slow pure-Python references"
        )


class ClusterMismatch(DengineError):
    """A message or data directory belongs to another cluster or node."""

    def __init__(self, expected: object, got: object, what: str = "cluster id") -> None:
        self.expected = expected
        self.got = got
        super().__init__(f"{what} mismatch: expected {expected!r}, got {got!r}")


class PayloadTooLarge(DengineError):
    """A request or record is larger than the configured limit."""

    def __init__(self, size: int, limit: int, what: str = "payload") -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"{what} of {size} bytes exceeds the limit of {limit} bytes")


class DecodeError(DengineError, ValueError):
    """Bytes that do not decode as what they claim to be (an entry, a command, a record)."""

    def __init__(self, what: str, reason: str, offset: int | None = None) -> None:
        self.what = what
        self.reason = reason
        self.offset = offset
        at = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"cannot decode {what}{at}: {reason}")


class InvalidAppend(StorageError, ValueError):
    """A batch handed to a log store breaks the log's order (a gap, a reorder, a falling term).

    Nothing of the batch was written; the caller has a bug.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"append refused, nothing written: {reason}")


class ForeignDataDir(StorageError):
    """A directory holds data that is not a dengine store of the expected kind."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"{path} is not a dengine data directory of this kind: {reason}; "
            "point the node at an empty or its own directory"
        )


class InvalidArgument(DengineError, ValueError):
    """A server refused a request as malformed or out of range (gRPC INVALID_ARGUMENT)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid argument: {reason}; fix the request, retrying will not help")


class ServerError(DengineError):
    """A server failed a request with a status that has no more specific type here."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"server error {code}: {reason}")


class SessionExpired(DengineError):
    """A retried request is older than every result the state machine still keeps for its client.

    Whether it was applied is unknown; the client must read the state to find out.
    """

    def __init__(self, client_id: int, seq: int) -> None:
        self.client_id = client_id
        self.seq = seq
        super().__init__(
            f"request {seq} of client {client_id} is older than its kept results: whether it "
            "was applied is unknown; read the state before retrying"
        )


class DataDirLocked(StorageError):
    """Another opener holds the data directory: one process (and one store) owns it at a time.

    Opening it anyway could repair (cut, delete) what the live owner has acknowledged.
    """

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"process {pid}" if pid else "another process"
        super().__init__(
            f"data directory {path} is in use by {holder}; stop that process first "
            "(or use another data directory)"
        )


class StorageIOError(StorageError):
    """A write or fsync failed (ENOSPC, EIO, ...): fatal for the store that saw it.

    The store refuses every later write: after a failed fsync the kernel may have dropped the
    dirty pages, so a retry that "succeeds" would prove nothing (the fsyncgate lesson).
    """

    def __init__(self, path: str, operation: str, error: str, errno: int | None = None) -> None:
        self.path = path
        self.operation = operation
        self.error = error
        self.errno = errno
        super().__init__(
            f"storage {operation} on {path} failed: {error}; the node stops "
            "(free space or fix the disk, then restart it)"
        )


class Overloaded(DengineError):
    """The node refused the request at once, before doing anything with it: it is past one of
    its limits (requests or bytes in flight). Nothing was applied; retry after the hint."""

    def __init__(self, reason: str, retry_after_ms: int = 100) -> None:
        self.reason = reason
        self.retry_after_ms = retry_after_ms
        super().__init__(
            f"overloaded: {reason}; nothing was applied: retry after {retry_after_ms} ms"
        )


class OutcomeUnknown(Unavailable):
    """A write reached a log but its answer was lost on the way (this node stopped, or a new
    leader replaced it here while another node's log may still hold it): it may or may not be
    applied. Retry only with the same session (applied once), or read the state to find out.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"{reason}; the outcome is unknown (it may still commit): retry only with the "
            "same session, or read to find out"
        )
