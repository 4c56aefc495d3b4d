"""The node's snapshot work: taking one, compacting, streaming to followers, installing.

Functions over a :class:`~dengine.node.node.Node` (its private half, as ``raft._roles`` is the
core's): the drive loop calls them, and so does the transport (``on_snapshot``).

- Taking: once ``raft.snapshot_interval_entries`` entries were applied since the last snapshot,
  the state machine pins a point-in-time view and a worker thread writes the file while applying
  goes on; the drive loop then records the metadata and tells the core, which later hands out
  ``compact_to`` (the configured tail of entries is kept for slow followers).
- Sending: a SNAPSHOT message of the core becomes a background transfer of that file; its end
  is reported to the core (``report_snapshot``), which probes the follower again on failure.
- Receiving: a verified file is stepped into the core as a SNAPSHOT message; when the core's
  Ready carries it, the state machine is restored from it, the log store reset to its point and
  the membership recorded; the transfer is acknowledged at the end of that turn.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from dengine.errors import Unavailable
from dengine.node.snapshots import (
    adopt_file,
    file_pieces,
    find_file,
    install_file,
    verify_file,
    write_snapshot,
)
from dengine.raft.messages import Message, MessageType
from dengine.raft.types import ConfState, SnapshotMeta

if TYPE_CHECKING:
    from dengine.node.node import Node

MT = MessageType


def restore_from_latest_file(node: Node) -> None:
    """A state machine that kept nothing (memory engine) behind a compacted log."""
    found = node.snapshots.list()
    if not found:
        raise Unavailable(
            f"node {node.node_id}: the log starts after index {node.log_store.first_index() - 1}"
            " but no snapshot file is left to restore the state machine from"
        )
    meta, addresses = install_file(node.state_machine, found[-1][2])
    node.book.learn(addresses)
    node.log.info("state machine restored from snapshot file", index=meta.index)


async def on_snapshot(node: Node, incoming: Any) -> None:
    """A snapshot file arrived: check it, step it into the core, wait for its verdict."""
    if not node.running:
        raise Unavailable(f"node {node.node_id} is stopping")
    meta = incoming.meta
    # A damaged file is refused here, back to the sender: the core never hears of it.
    await asyncio.to_thread(verify_file, str(incoming.path), meta)
    fut = asyncio.get_running_loop().create_future()
    msg = Message(MT.SNAPSHOT, node.node_id, incoming.from_, incoming.term, snapshot=meta)

    def op() -> None:
        # Registered here, on the drive loop, so the end of an earlier turn cannot drop it.
        old = node._incoming.pop((meta.index, meta.term), None)
        if old is not None:
            unlink(old)
        node._incoming[(meta.index, meta.term)] = str(incoming.path)
        node.core.step(msg)
        node._snap_waiters.append(fut)

    node._submit(op)
    await fut


def maybe_snapshot(node: Node) -> None:
    applied = node.state_machine.applied_index()
    if node._snapshotting or applied - node._snap_index < \
            node.config.raft.snapshot_interval_entries:
        return
    node._snapshotting = True
    node._spawn(take_snapshot(node))


async def take_snapshot(node: Node) -> None:
    try:
        source = node.state_machine.snapshot()
    except Exception as e:  # noqa: BLE001 - a failed snapshot is retried later
        node.log.error("snapshot failed", error=repr(e))
        node._snapshotting = False
        return
    try:
        conf = node.core.conf_state_at(source.index)
        addresses = dict(node.book.addresses)
        addresses[node.node_id] = node.address
        meta, path = await asyncio.to_thread(
            write_snapshot, node.state_machine, node.snapshots, source, conf, addresses)
    except Exception as e:  # noqa: BLE001 - a failed snapshot is retried later
        node.log.error("snapshot failed", error=repr(e))
        node._snapshotting = False
        return
    finally:
        source.close()

    def op() -> None:
        node._snapshotting = False
        node.log_store.save_snapshot_meta(meta)
        node._snap_index = meta.index
        node.core.on_snapshot_taken(meta)
        node.log.info("snapshot taken", index=meta.index, term=meta.term, path=path)

    node._submit(op)


def compact(node: Node, to: int, conf_state: ConfState) -> None:
    node.book.record_conf(to, conf_state)
    node.log_store.compact(to)
    node.log.info("log compacted", up_to=to, first_index=node.log_store.first_index())


def send_snapshot(node: Node, m: Message) -> None:
    path = find_file(node.snapshots, m.snapshot) if m.snapshot else None
    if path is None:
        node.log.warning("no snapshot file to send", peer=m.to)
        node._submit(lambda: node.core.report_snapshot(m.to, False))
        return
    node.log.info("sending snapshot", peer=m.to, index=m.snapshot.index)
    task = node.transport.send_snapshot(m.to, m.snapshot, file_pieces(path), term=m.term)
    node._transfers[m.to] = task

    def done(t: asyncio.Task) -> None:
        if node._transfers.get(m.to) is not t:
            return  # superseded by a newer transfer to that peer: that one reports
        del node._transfers[m.to]
        ok = not t.cancelled() and t.exception() is None and t.result().accepted
        if not ok:
            why = "cancelled" if t.cancelled() else (t.exception() or t.result().error)
            node.log.warning("snapshot transfer failed", peer=m.to, reason=str(why))
        if node.running:
            node._submit(lambda: node.core.report_snapshot(m.to, ok))

    task.add_done_callback(done)


async def install_snapshot(node: Node, meta: SnapshotMeta) -> None:
    path = node._incoming.pop((meta.index, meta.term), None)
    if path is None:
        raise Unavailable(f"snapshot {meta.index} to install has no file")
    # Crash-safe order: the verified file joins the snapshot store first, then the log is
    # reset to its point, then the state machine restored. A crash after the reset leaves a
    # state machine behind the log's first index, which a restart restores from that file.
    node.book.record_conf(meta.index, meta.conf_state)
    path = adopt_file(node.snapshots, path, meta)
    store = node.log_store
    store.reset(meta.index, meta.term)
    store.save_snapshot_meta(meta)
    store.sync()
    _meta, addresses = await asyncio.to_thread(install_file, node.state_machine, path)
    node.book.learn(addresses)
    node._snap_index = meta.index
    node.log.info("snapshot installed", index=meta.index, term=meta.term,
                  voters=sorted(meta.conf_state.voters))


def release_snapshot_waiters(node: Node) -> None:
    if not node._snap_waiters:
        return
    for fut in node._snap_waiters:
        if not fut.done():
            fut.set_result(None)
    node._snap_waiters = []
    for path in node._incoming.values():
        unlink(path)
    node._incoming.clear()


def unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
