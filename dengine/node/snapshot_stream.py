"""Snapshots that cost O(changes): the state machine as its own snapshot, streamed on demand.

Theory of operation. A state machine that persists its data and its applied index in one
atomic write (the RocksDB KV machine: :func:`~dengine.statemachine.base.is_durable`) already
*is* a snapshot of everything up to its applied index. Taking a snapshot for log compaction is
then only: note the applied (index, term) and the membership there, make the machine's writes
durable (one fsync of its WAL), record the metadata in the log store and tell the core, which
hands out ``compact_to``. No file is written and nothing is copied, however large the data.

A follower that the log no longer covers needs the data itself. When the core asks for a
snapshot to be sent, the node pins a point-in-time view of the machine at once (a RocksDB
snapshot: no copy, it only holds back the deletion of what it sees) and streams it in the
snapshot-file format (:func:`~dengine.storage.snapshot.framed`), read piece by piece in a
worker thread so the event loop never waits on the scan. The view is made when it is needed
and released when the transfer ends; its index is the applied index at that moment, which is
at or past the snapshot point the core announced, so the follower lands further ahead.

A machine kept in memory is not durable: it still writes a full snapshot file at each snapshot
point (restart restores from it), and a pinned view of it is a copy of the data (O(data) memory
for the length of a transfer). That is the trade-off of the memory engine: no disk, full copies.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from dengine.node.members import encode_addresses
from dengine.node.snapshots import MEMBERS_TAG
from dengine.raft.types import SnapshotMeta
from dengine.statemachine.base import is_durable
from dengine.storage.snapshot import framed

if TYPE_CHECKING:
    from dengine.node.node import Node

__all__ = ["pinned_stream", "record_in_place"]


def _addresses(node: Node) -> dict[int, str]:
    addresses = dict(node.book.addresses)
    addresses[node.node_id] = node.address
    return addresses


def pinned_stream(node: Node) -> tuple[SnapshotMeta, AsyncIterator[bytes]]:
    """Pin the state machine now (on the drive loop, between applies) and return the
    snapshot's metadata and its file bytes as an async stream read in a worker thread."""
    source = node.state_machine.snapshot()
    try:
        meta = SnapshotMeta(source.index, source.term, node.core.conf_state_at(source.index))
        members = MEMBERS_TAG + encode_addresses(_addresses(node))
        pieces = framed(meta, itertools.chain([members], source.chunks()))
    except BaseException:
        source.close()
        raise
    return meta, _in_thread(pieces, source.close)


async def _in_thread(pieces: Iterator[bytes], release) -> AsyncIterator[bytes]:
    try:
        while True:
            piece = await asyncio.to_thread(next, pieces, None)
            if piece is None:
                return
            yield piece
    finally:
        release()


async def record_in_place(node: Node) -> SnapshotMeta:
    """A snapshot point for a durable state machine: sync it, return the metadata to record.

    The applied (index, term) is read on the drive loop before the sync, so the sync covers it.
    """
    sm = node.state_machine
    assert is_durable(sm), "only a durable state machine records a snapshot in place"
    meta = SnapshotMeta(sm.applied_index(), sm.applied_term(),
                        node.core.conf_state_at(sm.applied_index()))
    await asyncio.to_thread(sm.sync)
    return meta
