"""Plain values the client returns: key-values, scan pages, node status, members.

They are frozen slotted dataclasses, not protobuf objects, so callers never depend on the wire
format; each has a ``from_proto`` that the client uses at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from dengine.consistency import Consistency
from dengine.v1 import client_pb2

__all__ = [
    "Consistency",
    "KeyValue",
    "ScanPage",
    "CasResult",
    "Member",
    "NodeStatus",
    "Put",
    "Delete",
    "Key",
    "ClientTLS",
]

class ClientTLS(TypedDict, total=False):
    """The ``Client``/``SyncClient`` keyword arguments that reach a cluster speaking TLS."""

    cacert: str
    cert: str
    key: str
    token: str


#: Keys and values may be given as ``bytes`` or ``str`` (encoded as UTF-8); results are bytes.
Key = bytes | str


def to_bytes(value: Key, what: str = "key") -> bytes:
    """``str`` as UTF-8, ``bytes``-like as bytes; anything else is a caller error."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{what} must be bytes or str, not {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class KeyValue:
    """A stored key: its value, the log index that last wrote it, and how often it was written."""

    key: bytes
    value: bytes
    revision: int = 0
    version: int = 0

    @classmethod
    def from_proto(cls, kv: client_pb2.KeyValue) -> KeyValue:
        return cls(kv.key, kv.value, kv.revision, kv.version)


@dataclass(frozen=True, slots=True)
class ScanPage:
    """One page of a scan; ``continuation`` is empty when no keys remain."""

    kvs: tuple[KeyValue, ...]
    continuation: bytes = b""

    @property
    def more(self) -> bool:
        return bool(self.continuation)


@dataclass(frozen=True, slots=True)
class CasResult:
    """Whether a compare-and-set held, the key as it is now (None if absent) and the revision."""

    succeeded: bool
    current: KeyValue | None
    revision: int


@dataclass(frozen=True, slots=True)
class Member:
    """A cluster member: id, address and role (``"voter"`` or ``"learner"``)."""

    id: int
    address: str
    role: str

    @classmethod
    def from_proto(cls, m: client_pb2.Member) -> Member:
        role = {client_pb2.VOTER: "voter", client_pb2.LEARNER: "learner"}.get(m.role, "unknown")
        return cls(m.id, m.address, role)


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What one node says about itself and the cluster."""

    id: int
    role: str
    term: int
    leader_id: int | None
    leader_addr: str | None
    commit_index: int
    applied_index: int
    members: tuple[Member, ...]
    cluster_id: str
    address: str = ""  # the endpoint that answered
    alarms: tuple[str, ...] = ()  # e.g. ("NOSPACE",): the storage quota is used up
    used_bytes: int = 0
    quota_bytes: int = 0  # 0: no quota
    #: This node's RocksDB stores: compaction bytes owed, flushes + compactions running.
    compaction_pending_bytes: int = 0
    compactions_running: int = 0

    @property
    def is_leader(self) -> bool:
        return self.leader_id is not None and self.leader_id == self.id

    @classmethod
    def from_proto(cls, r: client_pb2.StatusResponse, address: str = "") -> NodeStatus:
        return cls(
            id=r.id,
            role=r.role,
            term=r.term,
            leader_id=r.leader_id or None,
            leader_addr=r.leader_addr or None,
            commit_index=r.commit_index,
            applied_index=r.applied_index,
            members=tuple(Member.from_proto(m) for m in r.members),
            cluster_id=r.cluster_id,
            address=address,
            alarms=tuple(r.alarms),
            used_bytes=r.used_bytes,
            quota_bytes=r.quota_bytes,
            compaction_pending_bytes=r.compaction_pending_bytes,
            compactions_running=r.compactions_running,
        )


@dataclass(frozen=True, slots=True)
class Put:
    """A put inside :meth:`Client.write_batch`."""

    key: Key
    value: Key


@dataclass(frozen=True, slots=True)
class Delete:
    """A delete inside :meth:`Client.write_batch`."""

    key: Key
