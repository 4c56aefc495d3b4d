"""The node's snapshot work: taking one, compacting, streaming to followers, installing.

Functions over a :class:`~dengine.node.node.Node` (its private half, as ``raft._roles`` is the
core's): the drive loop calls them, and so does the transport (``on_snapshot``).

- Taking: once the policy (:mod:`~dengine.node.snapshot_policy`: entries, bytes or time) says
  so. A durable state machine is its own snapshot (:mod:`~dengine.node.snapshot_stream`): its
  WAL is synced and the metadata recorded, nothing copied. Another one pins a point-in-time
  view and a worker thread writes the file while applying goes on. The drive loop then records
  the metadata and tells the core, which later hands out ``compact_to`` (the configured tail of
  entries is kept for slow followers).
- Sending: a SNAPSHOT message of the core becomes a background transfer of a view of the state
  machine pinned at that moment; its end is reported to the core (``report_snapshot``), which
  probes the follower again on failure.
- Receiving: a verified file is stepped into the core as a SNAPSHOT message; when the core's
  Ready carries it, the state machine is restored from it, the log store reset to its point and
  the membership recorded; the transfer is acknowledged at the end of that turn.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from dengine.errors import Unavailable
from dengine.node.snapshot_stream import pinned_stream, record_in_place
from dengine.node.snapshots import (
    adopt_file,
    install_file,
    verify_file,
    write_snapshot,
)
from dengine.raft.messages import Message, MessageType
from dengine.raft.types import ConfState, SnapshotMeta
from dengine.statemachine.base import is_durable

if TYPE_CHECKING:
    from dengine.node.node import Node

MT = MessageType


def prepare_state_machine(node: Node) -> None:
    """At start: restore a state machine that is behind the log's first index from the latest
    file; a durable one that is not behind needs no file, so leftovers are removed."""
    if node.state_machine.applied_index() < node.log_store.first_index() - 1:
        restore_from_latest_file(node)
    elif is_durable(node.state_machine) and node.snapshots.list():
        node.snapshots.cleanup(keep=0)


def restore_from_latest_file(node: Node) -> None:
    """A state machine behind a compacted log: one that kept nothing (memory engine), or one
    whose snapshot install was cut short after the log was reset."""
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


def maybe_snapshot(node: Node, rd: Any = None) -> None:
    policy = node._snap_policy
    if rd is not None and rd.committed_entries:
        policy.on_applied(rd.committed_entries)
    if node._snapshotting or not policy.due(node.state_machine.applied_index()):
        return
    node._snapshotting = True
    node._spawn(take_snapshot(node))


async def take_snapshot(node: Node) -> None:
    if is_durable(node.state_machine):
        try:
            meta = await record_in_place(node)
        except Exception as e:  # noqa: BLE001 - a failed snapshot is retried later
            node.log.error("snapshot failed", error=repr(e))
            node._snapshotting = False
            return
        node._submit(lambda: _taken(node, meta, None))
        return
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

    node._submit(lambda: _taken(node, meta, path))


def _taken(node: Node, meta: SnapshotMeta, path: str | None) -> None:
    node._snapshotting = False
    node.log_store.save_snapshot_meta(meta)
    node._snap_index = meta.index
    node._snap_policy.taken(meta.index)
    node.core.on_snapshot_taken(meta, node._snap_policy.keep_entries(meta.index))
    node.log.info("snapshot taken", index=meta.index, term=meta.term,
                  path=path or "(the state machine in place)")


def compact(node: Node, to: int, conf_state: ConfState) -> None:
    node.book.record_conf(to, conf_state)
    node.log_store.compact(to)
    node.log.info("log compacted", up_to=to, first_index=node.log_store.first_index())


def send_snapshot(node: Node, m: Message) -> None:
    try:
        # Made now, when it is needed: at or past the point the core announced.
        meta, pieces = pinned_stream(node)
    except Exception as e:  # noqa: BLE001 - reported as a failed transfer; the core retries
        node.log.warning("cannot pin a snapshot to send", peer=m.to, error=repr(e))
        node._submit(lambda: node.core.report_snapshot(m.to, False))
        return
    node.log.info("sending snapshot", peer=m.to, index=meta.index)
    task = node.transport.send_snapshot(m.to, meta, pieces, term=m.term)
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
    node._snap_policy.taken(meta.index)
    if is_durable(node.state_machine):
        # The machine now holds the snapshot itself: the file was only needed until here.
        node.snapshots.cleanup(keep=0)
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
