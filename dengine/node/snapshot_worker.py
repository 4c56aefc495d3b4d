"""The node's snapshot work: taking one, compacting, streaming to followers, installing.

A :class:`SnapshotWorker` owns every piece of snapshot state a node has (the policy that says
when one is due, whether one is being taken, the transfers to followers, the received files
waiting to be installed and their senders' futures); the node keeps only a reference to it.
The drive loop calls it, and so does the transport (``on_snapshot``).

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
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from dengine.config import RaftSection
from dengine.errors import Unavailable
from dengine.node.snapshot_policy import SnapshotPolicy
from dengine.node.snapshot_stream import pinned_stream, record_in_place
from dengine.node.snapshots import (
    adopt_file,
    install_file,
    verify_file,
    write_snapshot,
)
from dengine.raft.messages import Message, MessageType
from dengine.raft.ready import Ready
from dengine.raft.types import ConfState, SnapshotMeta
from dengine.statemachine.base import is_durable
from dengine.transport.base import IncomingSnapshot

if TYPE_CHECKING:
    from dengine.node.node import Node

__all__ = ["SnapshotWorker", "unlink"]

MT = MessageType


class SnapshotWorker:
    """Owns a node's snapshot state; see the module docstring for what it does when.

    ``submit`` runs a closure on the drive loop (the only place the core may be touched);
    ``spawn`` starts a background task the node waits for when it stops.
    """

    def __init__(self, node: Node, raft: RaftSection, logger: Any, *,
                 submit: Callable[[Callable[[], None]], None],
                 spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task]) -> None:
        self._node = node
        self._logger = logger
        self._submit = submit
        self._spawn = spawn
        self.policy = SnapshotPolicy.from_config(raft)
        #: Index of the latest snapshot taken or installed (0: none yet).
        self.index = 0
        #: A snapshot is being taken (at most one at a time).
        self.taking = False
        #: Received files stepped into the core, by (index, term), until installed or dropped.
        self._incoming: dict[tuple[int, int], str] = {}
        #: Senders of received files, answered at the end of the turn that took them.
        self._waiters: list[asyncio.Future] = []
        #: The transfer in flight to each follower (a newer one replaces an older one).
        self._transfers: dict[int, asyncio.Task] = {}

    # -- start and stop ---------------------------------------------------------------------
    def prepare_state_machine(self) -> None:
        """At start: restore a state machine that is behind the log's first index from the
        latest file; a durable one that is not behind needs no file, so leftovers are removed."""
        node = self._node
        if node.state_machine.applied_index() < node.log_store.first_index() - 1:
            self.restore_from_latest_file()
        elif is_durable(node.state_machine) and node.snapshots.list():
            node.snapshots.cleanup(keep=0)

    def restore_from_latest_file(self) -> None:
        """A state machine behind a compacted log: one that kept nothing (memory engine), or
        one whose snapshot install was cut short after the log was reset."""
        node = self._node
        found = node.snapshots.list()
        if not found:
            raise Unavailable(
                f"node {node.node_id}: the log starts after index "
                f"{node.log_store.first_index() - 1} but no snapshot file is left to restore "
                "the state machine from"
            )
        meta, addresses = install_file(node.state_machine, found[-1][2])
        node.book.learn(addresses)
        self._logger.info("state machine restored from snapshot file", index=meta.index)

    def recovered(self, snapshot: SnapshotMeta | None) -> None:
        """The snapshot storage recovered at start (None: there is none)."""
        self.index = snapshot.index if snapshot else 0
        self.policy.taken(self.index)

    def take_waiters(self) -> list[asyncio.Future]:
        """Hand over the received transfers' futures (the node fails them when it stops)."""
        waiters, self._waiters = self._waiters, []
        return waiters

    def discard_incoming(self) -> None:
        """Delete received files that were never installed (the node is stopping)."""
        for path in self._incoming.values():
            unlink(path)
        self._incoming.clear()

    # -- receiving --------------------------------------------------------------------------
    async def on_snapshot(self, incoming: IncomingSnapshot) -> None:
        """A snapshot file arrived: check it, step it into the core, wait for its verdict."""
        node = self._node
        if not node.running:
            raise Unavailable(f"node {node.node_id} is stopping")
        meta = incoming.meta
        # A damaged file is refused here, back to the sender: the core never hears of it.
        await asyncio.to_thread(verify_file, str(incoming.path), meta)
        fut = asyncio.get_running_loop().create_future()
        msg = Message(MT.SNAPSHOT, node.node_id, incoming.from_, incoming.term, snapshot=meta)

        def op() -> None:
            # Registered here, on the drive loop, so the end of an earlier turn cannot drop it.
            old = self._incoming.pop((meta.index, meta.term), None)
            if old is not None:
                unlink(old)
            self._incoming[(meta.index, meta.term)] = str(incoming.path)
            node.core.step(msg)
            self._waiters.append(fut)

        self._submit(op)
        await fut

    async def install(self, meta: SnapshotMeta) -> None:
        """The core's Ready carries a received snapshot: install its file."""
        node = self._node
        path = self._incoming.pop((meta.index, meta.term), None)
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
        self.index = meta.index
        self.policy.taken(meta.index)
        if is_durable(node.state_machine):
            # The machine now holds the snapshot itself: the file was only needed until here.
            node.snapshots.cleanup(keep=0)
        self._logger.info("snapshot installed", index=meta.index, term=meta.term,
                          voters=sorted(meta.conf_state.voters))

    def release_waiters(self) -> None:
        """End of a turn: the received transfers were stepped (and installed, or refused)."""
        if not self._waiters:
            return
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters = []
        self.discard_incoming()

    # -- taking -----------------------------------------------------------------------------
    def maybe_snapshot(self, rd: Ready | None = None) -> None:
        policy = self.policy
        if rd is not None and rd.committed_entries:
            policy.on_applied(rd.committed_entries)
        if self.taking or not policy.due(self._node.state_machine.applied_index()):
            return
        self.taking = True
        self._spawn(self.take())

    async def take(self) -> None:
        node = self._node
        if is_durable(node.state_machine):
            try:
                meta = await record_in_place(node)
            except Exception as e:  # noqa: BLE001 - a failed snapshot is retried later
                self._logger.error("snapshot failed", error=repr(e))
                self.taking = False
                return
            self._submit(lambda: self._taken(meta, None))
            return
        try:
            source = node.state_machine.snapshot()
        except Exception as e:  # noqa: BLE001 - a failed snapshot is retried later
            self._logger.error("snapshot failed", error=repr(e))
            self.taking = False
            return
        try:
            conf = node.core.conf_state_at(source.index)
            addresses = dict(node.book.addresses)
            addresses[node.node_id] = node.address
            meta, path = await asyncio.to_thread(
                write_snapshot, node.state_machine, node.snapshots, source, conf, addresses)
        except Exception as e:  # noqa: BLE001 - a failed snapshot is retried later
            self._logger.error("snapshot failed", error=repr(e))
            self.taking = False
            return
        finally:
            source.close()

        self._submit(lambda: self._taken(meta, path))

    def _taken(self, meta: SnapshotMeta, path: str | None) -> None:
        node = self._node
        self.taking = False
        node.log_store.save_snapshot_meta(meta)
        self.index = meta.index
        self.policy.taken(meta.index)
        node.core.on_snapshot_taken(meta, self.policy.keep_entries(meta.index))
        self._logger.info("snapshot taken", index=meta.index, term=meta.term,
                          path=path or "(the state machine in place)")

    def compact(self, to: int, conf_state: ConfState) -> None:
        node = self._node
        node.book.record_conf(to, conf_state)
        node.log_store.compact(to)
        self._logger.info("log compacted", up_to=to, first_index=node.log_store.first_index())

    # -- sending ----------------------------------------------------------------------------
    def send(self, m: Message) -> None:
        """Start a transfer for the core's SNAPSHOT message ``m``; its end goes to the core."""
        node = self._node
        try:
            # Made now, when it is needed: at or past the point the core announced.
            meta, pieces = pinned_stream(node)
        except Exception as e:  # noqa: BLE001 - reported as a failed transfer; the core retries
            self._logger.warning("cannot pin a snapshot to send", peer=m.to, error=repr(e))
            self._submit(lambda: node.core.report_snapshot(m.to, False))
            return
        self._logger.info("sending snapshot", peer=m.to, index=meta.index)
        task = node.transport.send_snapshot(m.to, meta, pieces, term=m.term)
        self._transfers[m.to] = task

        def done(t: asyncio.Task) -> None:
            if self._transfers.get(m.to) is not t:
                return  # superseded by a newer transfer to that peer: that one reports
            del self._transfers[m.to]
            ok = not t.cancelled() and t.exception() is None and t.result().accepted
            if not ok:
                why = "cancelled" if t.cancelled() else (t.exception() or t.result().error)
                self._logger.warning("snapshot transfer failed", peer=m.to, reason=str(why))
            if node.running:
                self._submit(lambda: node.core.report_snapshot(m.to, ok))

        task.add_done_callback(done)


def unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
