"""What the standard gRPC health service says about a node, per service.

``dengine.v1.Kv`` (and the overall status, service ``""``) is SERVING only while the node can
answer consistent requests without waiting for an election: a leader while it holds its quorum
lease (a quorum acknowledged it within the lease, thesis §6.4.1), a follower or learner while it
heard from the leader of its term within an election timeout. A node cut off from the quorum
turns NOT_SERVING within about an election timeout, so a load balancer stops sending it work.
``dengine.v1.RaftPeer`` stays SERVING while the transport runs (peers must reach a lagging node).
The status is re-evaluated every heartbeat interval and published only when it changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dengine.raft.ready import Role

__all__ = ["KV_SERVICE_NAME", "kv_serving", "watch_health"]

KV_SERVICE_NAME = "dengine.v1.Kv"


def kv_serving(node: Any) -> bool:
    """True while ``node`` knows a live leader of its term (or, leading, holds its lease)."""
    core = node.core_if_built
    if core is None or not node.accepting:
        return False
    if core.role == Role.LEADER:
        if core.cfg.check_quorum and core.cfg.lease_ticks > 0:
            return core.lease_valid()
        return True  # no lease configured: leadership is all there is to know
    return bool(core.leader_id) and core.election_elapsed < core.cfg.election_ticks


async def watch_health(node: Any, *servicers: Any) -> None:
    """Publish ``kv_serving(node)`` for the Kv service and overall, on each of ``servicers``
    (the node's port and the client-only port), until cancelled."""
    from grpc_health.v1 import health_pb2

    status = health_pb2.HealthCheckResponse
    shown: bool | None = None
    interval = node.config.raft.heartbeat_ms / 1000
    while True:
        now = kv_serving(node)
        if now != shown:
            value = status.SERVING if now else status.NOT_SERVING
            for servicer in servicers:
                for service in ("", KV_SERVICE_NAME):
                    await servicer.set(service, value)
            if shown is not None:
                node.logger.info("health changed", kv="SERVING" if now else "NOT_SERVING")
            shown = now
        await asyncio.sleep(interval)
