"""dengine clients: :class:`Client` (async, grpc.aio) and :class:`SyncClient` (blocking).

Both find the leader from a few endpoints, follow NOT_LEADER redirects, retry with backoff within
a per-call deadline, make retried writes apply once (sessions), and coalesce concurrent KV calls
onto a batch stream per channel. Errors are :mod:`dengine.errors` types. Both, and the in-process
:class:`~dengine.node.embedded.EmbeddedClient`, have the interface :class:`AsyncKv` states.
"""

from dengine.client.api import AsyncKv
from dengine.client.client import RETRYABLE, Client
from dengine.client.lease import Lease, LeaseStatus
from dengine.client.sync import SyncClient
from dengine.client.types import (
    CasResult,
    Consistency,
    Delete,
    KeyValue,
    Member,
    NodeStatus,
    Put,
    ScanPage,
)
from dengine.client.watch import WatchEvent, WatchUpdate

__all__ = [
    "AsyncKv",
    "Lease",
    "LeaseStatus",
    "WatchEvent",
    "WatchUpdate",
    "Client",
    "SyncClient",
    "RETRYABLE",
    "Consistency",
    "KeyValue",
    "ScanPage",
    "CasResult",
    "Member",
    "NodeStatus",
    "Put",
    "Delete",
]
