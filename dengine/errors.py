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
    "Unauthenticated",
    "PermissionDenied",
    "DataLost",
    "TermOutOfBounds",
    "QuotaExceeded",
    "WatchCompacted",
    "LeaseNotFound",
    "DataDirLocked",
    "StorageIOError",
    "Overloaded",
    "OutcomeUnknown",
    "LocalClusterError",
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
            "(keep the directory: restore it from a backup, or move it aside and re-join the "
            "node with an empty one; the other members hold the committed data)"
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
    """A membership change was refused (last voter, existing node, joint config...). A change
    asked while another is pending waits for it rather than failing."""

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
    """A message or data directory belongs to another cluster or node.

    ``expected`` None keeps our own id out of the message: a peer that sent the wrong cluster
    id learns which id it used, not the one it should have (that would help a forger).
    """

    def __init__(self, expected: object, got: object, what: str = "cluster id") -> None:
        self.expected = expected
        self.got = got
        if expected is None:
            super().__init__(f"{what} mismatch: got {got!r}, which is not this cluster's; check "
                             "cluster.cluster_id on the sender")
        else:
            super().__init__(f"{what} mismatch: expected {expected!r}, got {got!r}")


class PayloadTooLarge(DengineError):
    """A request or record is larger than the configured limit."""

    def __init__(self, size: int, limit: int, what: str = "payload", setting: str = "") -> None:
        self.size = size
        self.limit = limit
        self.setting = setting  # the config key that sets ``limit``, when known
        raise_it = f"; raise {setting} to allow more" if setting else ""
        super().__init__(f"{what} of {size} bytes exceeds the limit of {limit} bytes{raise_it}")


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
    """The session of a write is not held (never registered, idle too long, pushed out of a
    full table) or the write is older than every result kept for it.

    This attempt was not applied; an earlier attempt of the same write may have been, so its
    outcome is unknown unless this was its only attempt. Register a new session; read the state
    before writing again.
    """

    def __init__(self, client_id: int, seq: int) -> None:
        self.client_id = client_id
        self.seq = seq
        super().__init__(
            f"request {seq} of client {client_id} was refused: the session expired or the "
            "request is older than its kept results; not applied now, but an earlier attempt "
            "may have been, so the outcome is unknown: read the state before writing again"
        )


class Unauthenticated(DengineError):
    """Authorization is on and the request carries no identity the node knows."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"unauthenticated: {reason}; present a client certificate or a token "
                         "listed in the node's users file")


class PermissionDenied(DengineError):
    """The caller is known but its role does not allow the request; names the role needed."""

    def __init__(self, identity: str, role: str, needed: str, what: str) -> None:
        self.identity = identity
        self.role = role
        self.needed = needed
        self.what = what
        super().__init__(f"permission denied: {what} needs role {needed}; {identity!r} has "
                         f"role {role}")


class DataLost(InvariantViolation):
    """This node's log holds less than it once acknowledged: its data directory was wiped or
    lost. It must not vote or serve as the member it was (a lost vote record can elect two
    leaders in one term); it comes back as a new member."""

    def __init__(self, node_id: int, acknowledged: int, held: int) -> None:
        self.node_id = node_id
        self.acknowledged = acknowledged
        self.held = held
        DengineError.__init__(
            self,
            f"node {node_id} lost its data: the leader knows it acknowledged the log up to "
            f"index {acknowledged}, but its log ends at {held} (was the data directory wiped?); "
            f"it refuses to serve as member {node_id}. To bring it back: run "
            f"`dengine member remove {node_id}` against the cluster, empty this node's data "
            "directory, and start it with --join <address of a member>",
        )
        self.reason = str(self)


class TermOutOfBounds(InvariantViolation):
    """This node's storage holds a term at or past 2^62, the bound past which no election
    goes (a forged or corrupt peer message written before such terms were refused): the node
    could never vote or be elected again. Lowering the term in place could let it vote twice
    in one term, so it refuses to start; it comes back as a new member."""

    def __init__(self, node_id: int, where: str, term: int) -> None:
        self.node_id = node_id
        self.where = where
        self.term = term
        DengineError.__init__(
            self,
            f"node {node_id}: the {where} in its storage is {term}, at or past 2^62, where no "
            "election can follow (a forged or corrupt peer message put it there); it refuses "
            f"to start as member {node_id}, since lowering a term in place could let it vote "
            f"twice in one term. To bring it back: run `dengine member remove {node_id}` "
            "against the cluster, empty this node's data directory, and start it with --join "
            "<address of a member>",
        )
        self.reason = str(self)


class QuotaExceeded(DengineError):
    """The disk space quota is used up: writes are refused (reads and deletes go on) until an
    operator frees space and disarms the alarm."""

    def __init__(self, used_bytes: int, quota_bytes: int, node_id: int | None = None) -> None:
        self.used_bytes = used_bytes
        self.quota_bytes = quota_bytes
        self.node_id = node_id
        where = f" on node {node_id}" if node_id else ""
        super().__init__(
            f"NOSPACE alarm{where}: {used_bytes} bytes used of the {quota_bytes}-byte "
            "storage.quota_bytes; writes are refused until space is freed (delete keys, or "
            "raise the quota) and the alarm disarmed with `dengine alarm disarm`"
        )


class WatchCompacted(DengineError):
    """A watch asked for revisions no longer kept in the watch history.

    Re-read the keys (their state is at or after ``compact_revision``) and watch again from
    the read's revision + 1.
    """

    def __init__(self, revision: int, compact_revision: int) -> None:
        self.revision = revision
        self.compact_revision = compact_revision
        super().__init__(
            f"revision {revision} is compacted: the oldest revision kept is {compact_revision}; "
            "re-read the keys and watch again from the read's revision"
        )


class LeaseNotFound(DengineError):
    """The lease does not exist: never granted, revoked, or expired. Grant a new one."""

    def __init__(self, lease_id: int) -> None:
        self.lease_id = lease_id
        super().__init__(f"lease {lease_id} does not exist (revoked or expired); grant a new one")


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


class LocalClusterError(DengineError):
    """A local cluster (``dengine cluster up``, the demo) cannot be made, opened or run.

    ``kind`` is the class of failure, which the command line turns into its exit code:
    ``"usage"`` (an option out of range), ``"config"`` (a config file or the cluster's record
    does not load, or no cluster is recorded there), ``"failed"`` (anything else: a busy port,
    no leader in time, a node that exited).
    """

    USAGE = "usage"
    CONFIG = "config"
    FAILED = "failed"

    def __init__(self, message: str, kind: str = FAILED) -> None:
        if kind not in (self.USAGE, self.CONFIG, self.FAILED):
            raise ValueError(f"LocalClusterError kind {kind!r} is not usage, config or failed")
        self.kind = kind
        super().__init__(message)
