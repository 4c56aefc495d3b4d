"""Opening a node's storage: identity checks, a new cluster's first entry, restart state.

Theory of operation. A data directory holds ``NODE`` (the cluster id and node id, as text so a
person can read it), ``log/`` (the LogStore), ``sm/`` (the state machine), ``snapshots/`` and
``members.json`` (see :mod:`dengine.node.members`). Opening a directory written for another
cluster or node is :class:`~dengine.errors.ClusterMismatch`, before anything is written.

A new cluster (empty log, no join address) starts as etcd's ``Bootstrap`` does: every initial
member writes the same first entry, a membership change at index 1, term 1, adding every
initial member as a voter (their addresses in its context), and the hard state (term 1, commit
1). The entry is byte-identical on every member that was given the same ``initial_members``,
so their logs agree; a node that joins later replicates it like any other entry and so learns
the initial membership from the log. A restarted node never reads ``initial_members``: its
membership comes from its log, its snapshot and ``members.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from dengine.errors import ClusterMismatch, Compacted, Corruption, TermOutOfBounds
from dengine.raft.confchange import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    encode_conf_change,
)
from dengine.raft.types import ConfState, Entry, EntryKind, HardState, SnapshotMeta
from dengine.storage.base import LogStore

__all__ = [
    "NODE_FILE",
    "RestartState",
    "bootstrap_log",
    "check_node_file",
    "check_term_bound",
    "cluster_number",
    "is_fresh",
    "restart_state",
]

NODE_FILE = "NODE"


def cluster_number(cluster_id: str) -> int:
    """A stable 63-bit number for a cluster id string (what the LogStore identity holds)."""
    return int.from_bytes(hashlib.blake2b(cluster_id.encode(), digest_size=8).digest(), "big") >> 1


def check_node_file(data_dir: str, cluster_id: str, node_id: int) -> bool:
    """Refuse a data directory of another cluster or node; write ``NODE`` when new.

    Returns True when the directory had no ``NODE`` record yet.
    """
    path = os.path.join(data_dir, NODE_FILE)
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                held = json.load(f)
            held_cluster, held_node = str(held["cluster_id"]), int(held["node_id"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise Corruption(path, None, f"unreadable node identity record: {e}") from e
        if held_cluster != cluster_id:
            raise ClusterMismatch(held_cluster, cluster_id,
                                  f"cluster id of the data directory {data_dir} (it belongs "
                                  "to another cluster: give this node its own directory)")
        if held_node != node_id:
            raise ClusterMismatch(held_node, node_id,
                                  f"node id of the data directory {data_dir} (it belongs to "
                                  "another node: give this node its own directory)")
        return False
    os.makedirs(data_dir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"cluster_id": cluster_id, "node_id": node_id}, f)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return True


def is_fresh(store: LogStore) -> bool:
    """True for a log store that never held anything (first start of this node)."""
    return (
        store.last_index() == 0
        and store.first_index() == 1
        and store.hard_state() == HardState()
        and store.snapshot_meta() is None
    )


def bootstrap_entry(initial_members: Mapping[int, str]) -> Entry:
    """Index 1 of a new cluster: add every initial member as a voter (addresses in context)."""
    from dengine.node.members import encode_addresses

    changes = tuple(
        ConfChangeSingle(ConfChangeType.ADD_VOTER, node_id) for node_id in sorted(initial_members)
    )
    # Explicit "joint" from the empty config: the outgoing half is empty, so this is simply
    # the new config, whatever the number of members.
    cc = ConfChange(changes, ConfChangeTransition.JOINT_EXPLICIT,
                    encode_addresses(initial_members))
    return Entry(1, 1, int(EntryKind.CONF_CHANGE), encode_conf_change(cc))


def bootstrap_log(store: LogStore, initial_members: Mapping[int, str]) -> None:
    """Write a new cluster's first entry and hard state, durably."""
    store.append([bootstrap_entry(initial_members)])
    store.save_hard_state(HardState(term=1, vote=0, commit=1))
    store.sync()


@dataclass(frozen=True, slots=True)
class RestartState:
    """What the core is built from: hard state, applied index, base config, snapshot."""

    hard_state: HardState
    applied_index: int
    conf_state: ConfState
    snapshot: SnapshotMeta | None


def restart_state(
    store: LogStore, applied: int, applied_term: int, base_conf: ConfState, node_id: int = 0
) -> RestartState:
    """The core's starting point from what storage holds.

    The commit index may have been persisted lazily, but whatever the state machine applied
    was committed: commit is raised to it so nothing is handed out to apply twice. A state
    machine ahead of the log (a crash while installing a snapshot, after the restore and before
    the log was reset) has the log reset to its point.
    """
    if applied > store.last_index():
        store.reset(applied, applied_term)
        store.sync()
    hs = store.hard_state()
    last = store.last_index()
    commit = max(hs.commit, applied, store.first_index() - 1)
    snapshot = store.snapshot_meta()
    check_term_bound(store, hs.term, snapshot, node_id)
    return RestartState(
        HardState(hs.term, hs.vote, min(commit, last)),
        applied,
        base_conf,
        snapshot,
    )


def check_term_bound(store: LogStore, term: int, snapshot: SnapshotMeta | None,
                     node_id: int) -> None:
    """Refuse storage whose term, last entry's term or snapshot term is at or past the
    guard's bound (2^62): a node there can never elect (see :class:`TermOutOfBounds`). Terms
    only grow along the log, so the last entry's is the largest of the log."""
    from dengine.raft.guard import SANE_BOUND

    if term >= SANE_BOUND:
        raise TermOutOfBounds(node_id, "term", term)
    last = store.last_index()
    if last >= store.first_index():
        try:
            last_term = store.term(last)
        except Compacted:
            last_term = 0
        if last_term >= SANE_BOUND:
            raise TermOutOfBounds(node_id, f"term of log entry {last}", last_term)
    if snapshot is not None and snapshot.term >= SANE_BOUND:
        raise TermOutOfBounds(node_id, f"term of the snapshot at index {snapshot.index}",
                              snapshot.term)
