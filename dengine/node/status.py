"""A node's status as the Status RPC and ``dengine status`` report it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dengine.node.node import Node

__all__ = ["node_status"]


def node_status(node: Node) -> dict[str, Any]:
    """Role, term, leader, indexes, members and disk use of ``node`` (started)."""
    core = node.core
    lead = node.leader_id
    return {
        "id": node.node_id,
        "role": core.role.name.lower(),
        "term": core.term,
        "leader_id": lead,
        "leader_addr": node.address_of(lead),
        "commit_index": core.commit_index,
        "applied_index": node.state_machine.applied_index(),
        "members": node.members(),
        "cluster_id": node.cluster_id,
        "alarms": node.quota.alarms(),
        "used_bytes": node.quota.used_bytes,
        "quota_bytes": node.quota.quota_bytes,
    }
