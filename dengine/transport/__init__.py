"""Peer transport: the ``Transport`` seam, gRPC in production, in-memory in tests.

See :mod:`dengine.transport.base` for the contract, :mod:`dengine.transport.grpc_transport` for
the gRPC implementation, :mod:`dengine.transport.tcp_transport` for the same with Raft messages on a plain TCP stream
(``network.peer_transport = "tcp"``), :mod:`dengine.transport.memory` for the test one, and
:mod:`dengine.transport.status` for the mapping between dengine errors and gRPC statuses.
"""

from dengine.transport.base import (
    FaultSwitch,
    IncomingSnapshot,
    SnapshotResult,
    Transport,
    TransportStats,
)
from dengine.transport.grpc_transport import GrpcTransport
from dengine.transport.memory import MemoryNetwork, MemoryTransport
from dengine.transport.tcp_transport import TcpTransport

__all__ = [
    "Transport",
    "GrpcTransport",
    "TcpTransport",
    "MemoryNetwork",
    "MemoryTransport",
    "FaultSwitch",
    "IncomingSnapshot",
    "SnapshotResult",
    "TransportStats",
]
