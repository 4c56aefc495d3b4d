"""dengine's errors as etcd sends them: etcd's gRPC status code and its exact message.

etcd clients match on these (clientv3's rpctypes, the Python clients' exception tables): e.g.
UNAVAILABLE "etcdserver: no leader" is retried, NOT_FOUND "etcdserver: requested lease not found"
becomes a lease-not-found error.
"""

from __future__ import annotations

import grpc

from dengine.errors import (
    DengineError,
    InvalidArgument,
    LeaseNotFound,
    NotLeader,
    OperationTimeout,
    Overloaded,
    PayloadTooLarge,
    ProposalDropped,
    QuotaExceeded,
    Unavailable,
)
from dengine.etcd.store import EtcdError

__all__ = ["etcd_status", "UNIMPLEMENTED_MESSAGES"]

LEASE_NOT_FOUND = "etcdserver: requested lease not found"
NO_LEADER = "etcdserver: no leader"
NOT_LEADER = "etcdserver: not leader"


def etcd_status(e: BaseException) -> tuple[grpc.StatusCode, str]:
    """The (status code, message) etcd would answer for ``e``."""
    C = grpc.StatusCode
    if isinstance(e, EtcdError):
        return getattr(C, e.code), e.message
    if isinstance(e, LeaseNotFound):
        return C.NOT_FOUND, LEASE_NOT_FOUND
    if isinstance(e, NotLeader):
        return C.UNAVAILABLE, NOT_LEADER if e.leader_id else NO_LEADER
    if isinstance(e, Overloaded):  # etcd's ErrTooManyRequests: clients back off and retry
        return C.RESOURCE_EXHAUSTED, "etcdserver: too many requests"
    if isinstance(e, QuotaExceeded):
        return C.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"
    if isinstance(e, PayloadTooLarge):
        return C.INVALID_ARGUMENT, "etcdserver: request is too large"
    if isinstance(e, OperationTimeout):
        return C.UNAVAILABLE, "etcdserver: request timed out"
    if isinstance(e, ProposalDropped):
        return C.UNAVAILABLE, "etcdserver: request timed out, possibly due to previous " \
            "leader failure"
    if isinstance(e, Unavailable):
        return C.UNAVAILABLE, "etcdserver: server stopped"
    if isinstance(e, InvalidArgument | ValueError | OverflowError):
        text = str(e)
        if "already exists" in text:
            return C.FAILED_PRECONDITION, "etcdserver: lease already exists"
        if "lease ttl" in text:
            return C.OUT_OF_RANGE, "etcdserver: too large lease TTL"
        return C.INVALID_ARGUMENT, text if text.startswith("etcdserver:") else \
            f"etcdserver: {text}"
    if isinstance(e, DengineError):
        return C.UNAVAILABLE, f"etcdserver: {e}"
    return C.UNKNOWN, f"etcdserver: {e}"


#: What an unsupported RPC answers (with UNIMPLEMENTED).
UNIMPLEMENTED_MESSAGES = {
    "Auth": "dengine's etcd API does not implement etcd's auth RPCs (dengine has its own "
            "authorization: see the [auth] config section)",
    "Cluster": "dengine's etcd API does not change membership through etcd's Cluster "
               "service: use dengine's Cluster service (dengine cluster add/promote/remove)",
    "Maintenance": "dengine's etcd API implements only Maintenance.Status of etcd's "
                   "Maintenance service",
}
