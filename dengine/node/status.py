"""A node's status as the Status RPC and ``dengine status`` report it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dengine.node.node import Node

__all__ = ["node_status", "storage_compaction_state"]


def storage_compaction_state(node: Node) -> tuple[int, int]:
    """(compaction bytes owed, flushes + compactions running) summed over ``node``'s RocksDB
    stores: the state machine's engine and the log store (others count 0)."""
    owed = running = 0
    engine = getattr(node.state_machine, "engine", None)
    for store in (engine, node.log_store):
        state = getattr(store, "compaction_state", None)
        if state is not None:
            o, r = state()
            owed += o
            running += r
    return owed, running


def node_status(node: Node) -> dict[str, Any]:
    """Role, term, leader, indexes, members, disk use and storage compaction of ``node``
    (started)."""
    core = node.core
    owed, running = storage_compaction_state(node)
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
        "compaction_pending_bytes": owed,
        "compactions_running": running,
    }
