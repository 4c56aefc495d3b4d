"""The Node: one asyncio task drives the sans-IO Raft core; everything else talks to it.

Theory of operation
-------------------
One task, the drive loop, owns the :class:`~dengine.raft.core.RaftCore`. Nothing else touches
the core's inputs: callers put work in the node's inboxes (proposals in a ``BatchBuffer``, peer
messages in a deque, everything else as small closures) and wake the loop. Each turn the loop

1. drains every inbox: the ticks owed by the clock, peer messages, closures, then proposals
   in batches (one ``propose_batch`` per batch: one append message per follower);
2. takes one ``Ready`` and hands it to the shells' one driver (``raft.driver.drive_ready``),
   which calls the node's I/O steps in the order the core's contract gives: installs a
   received snapshot; learns addresses from new membership entries and updates the
   transport's peers; sends ``messages`` (a leader's appends leave now, while the fsync runs);
   persists entries and hard state with one sync in a worker thread (group commit: whatever
   arrived meanwhile waits for the next turn and shares the next sync), applying committed
   entries in one batch meanwhile and resolving each proposal's future with its result and
   releasing ReadIndex reads; reports durability; sends ``persisted_messages``; ``advance``;
   compacts.

Each piece of state beside the core has one owner the node holds a reference to:
:class:`~dengine.node.proposals.Proposals` (writes queued and proposed, keyed by log index and
term), :class:`~dengine.node.log_writer.LogWriter` (persisting, the deferred hard state),
:class:`~dengine.node._reads.ReadRequests` (ReadIndex and lease reads),
:class:`~dengine.node.membership.NodeMembership` (changes, leadership waits, peer links) and
:class:`~dengine.node.snapshot_worker.SnapshotWorker` (taking, sending, installing snapshots).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dengine.config import Config
from dengine.consistency import Consistency
from dengine.errors import (
    DengineError,
    InvariantViolation,
    NotLeader,
    OutcomeUnknown,
    PayloadTooLarge,
    StorageError,
    Unavailable,
)
from dengine.node import bootstrap, lost_data
from dengine.node._reads import ReadRequests
from dengine.node.cluster_alarm import ClusterAlarm
from dengine.node.log_writer import LogWriter
from dengine.node.members import MemberBook
from dengine.node.membership import NodeMembership
from dengine.node.proposals import Proposals
from dengine.node.quota import SpaceQuota
from dengine.node.snapshot_worker import SnapshotWorker
from dengine.node.status import node_status
from dengine.node.tasks import TaskSet
from dengine.observability import timeline as _tl
from dengine.observability.metrics import NodeMetrics
from dengine.raft.core import RaftCore
from dengine.raft.describe import describe_core
from dengine.raft.driver import drive_ready
from dengine.raft.messages import Message, MessageType
from dengine.raft.ready import ReadState, Ready, Role, SoftState
from dengine.raft.types import ConfState, Entry, SnapshotMeta
from dengine.security.refusals import RefusalLog
from dengine.statemachine.base import StateMachine
from dengine.storage.base import LogStore
from dengine.storage.snapshot import SnapshotStore
from dengine.transport.base import IncomingSnapshot, Transport

if TYPE_CHECKING:
    from dengine.node.leases import LeaseKeeper
    from dengine.node.watch import WatchHub

__all__ = ["Node", "Consistency"]

MT = MessageType


class Node:
    """A Raft node: storage, state machine, transport and the drive loop. Build with
    :class:`~dengine.node.builder.NodeBuilder`; ``await start()``, ``await stop()``."""

    def __init__(
        self,
        config: Config,
        *,
        log_store: LogStore,
        state_machine: StateMachine,
        transport_factory: Callable[[Node], Transport],
        snapshot_store: SnapshotStore,
        book: MemberBook,
        logger: Any,
        rng: random.Random | None = None,
        client_server: Any = None,
    ) -> None:
        self.config = config
        self.node_id = config.cluster.node_id
        self.cluster_id = config.cluster.cluster_id
        self.address = config.cluster.advertise_addr
        self.log_store = log_store
        self.state_machine = state_machine
        self.snapshots = snapshot_store
        self.book = book
        self.logger = logger
        self._rng = rng or random.Random()
        self._transport_factory = transport_factory
        self.transport: Transport = None  # type: ignore[assignment]  # set by start()
        self.client_server = client_server
        self._core: RaftCore | None = None  # built by start()
        self.watch_hub: WatchHub | None = None  # made on first use (WatchHub.of)
        self.lease_keeper: LeaseKeeper | None = None  # made by start()
        self.lost_data_watch = lost_data.LostDataWatch(self)
        raft = config.raft
        self.max_command_bytes = raft.max_msg_bytes
        self._msgs: deque[Message] = deque()
        self._ops: deque[Callable[[], None]] = deque()
        self._ticks = 0
        self._wake = asyncio.Event()
        #: Tasks stop() waits for (snapshot writes read the state machine) and ones it does
        #: not (they may call stop themselves).
        self.background, self._detached = TaskSet(), TaskSet()
        self.reads = ReadRequests(self, self._submit)
        self.membership = NodeMembership(self, logger, submit=self._submit,
                                         track=self._track, spawn_detached=self._detached.spawn)
        self.proposals = Proposals(self, state_machine, raft.max_batch_entries,
                                   raft.max_batch_bytes, self.membership.on_conf_committed)
        self.snapshot_worker = SnapshotWorker(self, raft, logger, submit=self._submit,
                                              spawn=self.background.spawn)
        self._tasks: list[asyncio.Task] = []
        self.accepting = False
        self.running = False
        self.stopped = asyncio.Event()
        self.fatal: BaseException | None = None
        self.joining = False
        self._fatal_stop: asyncio.Task | None = None
        self._fault_task: asyncio.Task | None = None
        self._stopping = False
        self.metrics = NodeMetrics(self.node_id)  # this node's own registry
        self.writer = LogWriter(log_store, config.storage.sync, self.metrics)
        self.metrics.watch(self)
        #: Every peer message refused (by the transport or the core): counted, logged.
        self.refusals = RefusalLog(self.logger)
        self.refusals.bind_registry(self.metrics.registry)
        self.quota = SpaceQuota(config.storage.quota_bytes, config.cluster.data_dir, logger,
                                self.node_id, self.metrics.registry)
        self.cluster_alarm = ClusterAlarm(self)  # the quota alarm, cluster-wide via the log
        self.quota.cluster, self.quota.on_measured = self.cluster_alarm.table, \
            self.cluster_alarm.sync

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Load state from storage, build the core, start the transport and the drive loop."""
        self._build_core()
        self.transport = self._transport_factory(self)
        if hasattr(self.transport, "refusals"):
            self.transport.refusals = self.refusals
        await self.transport.start()
        if self.client_server is not None:
            await self.client_server.start()
        self.membership.sync_peers(self.core.conf_state)
        port = self.config.observability.metrics_port
        if port:
            host = (self.config.cluster.listen_addr or self.address).rpartition(":")[0]
            self.metrics.serve(port, host.strip("[]") or "127.0.0.1")
        self.running = True
        self.accepting = True
        self.cluster_alarm.restore()
        self.quota.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._drive(), name=f"dengine-drive-{self.node_id}"),
            loop.create_task(self._ticker(), name=f"dengine-tick-{self.node_id}"),
        ]
        from dengine.node.leases import start_lease_keeper

        start_lease_keeper(self)  # the leader proposes lease expiries
        if self.config.network.fault_injection:
            from dengine.node.faults import watch_fault_file

            self._fault_task = asyncio.get_running_loop().create_task(
                watch_fault_file(self.config.cluster.data_dir, self.transport, self.logger,
                                 store=self.log_store))
        self.logger.info("node started", address=self.address, cluster_id=self.cluster_id,
                      term=self.core.term, commit_index=self.core.commit_index,
                      applied_index=self.core.applied_index,
                      voters=sorted(self.core.conf_state.voters))

    def _build_core(self) -> None:
        store, sm = self.log_store, self.state_machine
        self.snapshot_worker.prepare_state_machine()
        base = self.book.conf_at(store.first_index() - 1)
        rs = bootstrap.restart_state(store, sm.applied_index(), sm.applied_term(), base,
                                     self.node_id)
        self.snapshot_worker.recovered(rs.snapshot)
        self.writer.recovered(rs.hard_state)
        self.logger.info("storage recovered", first_index=store.first_index(),
                      last_index=store.last_index(), term=rs.hard_state.term,
                      commit_index=rs.hard_state.commit, applied_index=rs.applied_index,
                      snapshot_index=self.snapshot_worker.index)
        cfg = self.config.core_config(compact_keep_entries=self.config.raft.compaction_tail_entries)
        self._core = RaftCore(
            self.node_id, cfg, self._rng, conf_state=rs.conf_state, storage=store,
            hard_state=rs.hard_state, applied_index=rs.applied_index, snapshot=rs.snapshot,
            logger=self.logger,
        )

    async def stop(self, reason: str = "the node is shutting down") -> None:
        """Stop accepting, fail what is in flight with a clear error, flush, close storage."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        self.running = False
        self.accepting = False
        self.logger.info("node stopping", reason=reason)
        try:
            await self._stop_parts(reason)
        finally:
            self.stopped.set()  # whatever failed above, stop() completes and says so
        self.logger.info("node stopped")

    async def _stop_parts(self, reason: str) -> None:
        if self._tasks:
            drive, ticker = self._tasks
            ticker.cancel()
            self._wake.set()
            # The turn in progress finishes (a persist in a worker thread is never cut short).
            await asyncio.gather(drive, ticker, return_exceptions=True)
        self._fail_everything(OutcomeUnknown(
            f"node {self.node_id} stopped before the request completed ({reason})"))
        if self.client_server is not None:
            await self.client_server.stop(0.5)
        if self._fault_task is not None:
            self._fault_task.cancel()
        self.quota.stop()
        # Snapshot writes run in threads that read the state machine: let them finish.
        await self.background.wait(30)
        if self.transport is not None:
            await self.transport.stop()
        self.snapshot_worker.discard_incoming()
        self._close_storage()
        self.metrics.close()

    def _fail_everything(self, err: DengineError) -> None:
        """Answer everything in flight: ``err`` for what reached the log (its outcome is
        unknown); writes still queued here were never proposed, so they say not applied."""
        self.proposals.fail_queued(Unavailable(
            f"node {self.node_id} stopped before proposing the request; it was not applied: "
            "retry on another node"))
        futures = self.proposals.take_pending()
        futures += self.reads.take_all() + self.snapshot_worker.take_waiters()
        for fut in futures:
            if not fut.done():
                fut.set_exception(err)

    # -- what callers use -------------------------------------------------------------------
    @property
    def core(self) -> RaftCore:
        """The Raft core. start() builds it; nothing may drive the node before then."""
        core = self._core
        if core is None:
            raise Unavailable(f"node {self.node_id} has not started; retry once it has")
        return core

    @property
    def core_if_built(self) -> RaftCore | None:
        """The core, or None before start(): for observers (health, metrics) that run early."""
        return self._core

    @property
    def is_leader(self) -> bool:
        return self._core is not None and self._core.role == Role.LEADER

    @property
    def leader_id(self) -> int | None:
        return (self._core.leader_id or None) if self._core is not None else None

    def not_leader(self) -> NotLeader:
        lead = self.leader_id
        return NotLeader(lead, self.address_of(lead) if lead else None)

    def address_of(self, node_id: int | None) -> str | None:
        if node_id == self.node_id:
            return self.address
        return self.book.addresses.get(node_id) if node_id else None

    def check_accepting(self) -> None:
        if not self.accepting:
            raise Unavailable(f"node {self.node_id} is not serving (stopping or not started); "
                              "the request was not applied: retry on another node")

    def _submit(self, op: Callable[[], None]) -> None:
        self._ops.append(op)
        self._wake.set()

    def _track(self, index: int, term: int, fut: asyncio.Future) -> None:
        self.proposals.track(index, term, fut)

    async def propose(self, command: bytes) -> object:
        """Replicate one state-machine command; returns its result once applied here."""
        self.check_accepting()
        if len(command) > self.max_command_bytes:
            raise PayloadTooLarge(len(command), self.max_command_bytes, "command",
                                  "raft.max_msg_bytes")
        if not self.is_leader:
            raise self.not_leader()
        if self.quota.alarm or self.quota.cluster.raised:
            self.quota.check_write(command)
        fut = asyncio.get_running_loop().create_future()
        if _tl.ON:
            _tl.mark("n.propose")
        self.proposals.push(command, fut)
        self._wake.set()
        return await fut

    async def read_barrier(self, consistency: int = Consistency.LINEARIZABLE) -> None:
        """Return once the local state machine may answer a read at ``consistency``."""
        self.check_accepting()
        await self.reads.barrier(consistency)

    async def read_index(self, lease: bool = False) -> int:
        """One ReadIndex round through the core; returns once the read index is applied."""
        return await self.reads.read_index(lease)

    async def add_learner(self, node_id: int, address: str) -> None:
        """Add a new node as a learner (it replicates but does not vote)."""
        await self.membership.add_learner(node_id, address)

    async def promote(self, node_id: int) -> None:
        """Make a caught-up learner a voter."""
        await self.membership.promote(node_id)

    async def remove_member(self, node_id: int) -> None:
        """Remove a voter or learner from the cluster."""
        await self.membership.remove_member(node_id)

    async def transfer_leader(self, target: int, timeout_s: float | None = None) -> None:
        """Hand leadership to ``target``; returns once it leads (or raises on timeout)."""
        await self.membership.transfer_leader(target, timeout_s)

    async def wait_for_leader(self, timeout_s: float | None = None) -> int:
        """The leader's id once one is known (after start, an election takes a timeout)."""
        return await self.membership.wait_for_leader(timeout_s)

    def members(self) -> list[tuple[int, str, bool]]:
        """(id, address, is_voter) of every member of the config in force."""
        return self.membership.members()

    def status(self) -> dict[str, Any]:
        return node_status(self)

    async def compact_storage(self) -> float:
        """Flush and compact this node's state machine store (maintenance, this node only,
        like etcd's defragment); the seconds it took. Reads and writes go on meanwhile (it runs
        in a worker thread); a state machine without such a store has nothing to do."""
        compact = getattr(getattr(self.state_machine, "engine", None), "compact", None)
        t0 = time.perf_counter()
        if compact is not None:
            await asyncio.to_thread(compact)
        secs = time.perf_counter() - t0
        self.logger.info("storage compacted", seconds=round(secs, 3))
        return secs

    # -- inputs from the transport -----------------------------------------------------------
    def on_message(self, msg: Message) -> None:
        if _tl.ON:
            _mark_msg("n.recv", msg)
        self.metrics.on_received(msg)
        self._msgs.append(msg)
        self._wake.set()

    async def on_snapshot(self, incoming: IncomingSnapshot) -> None:
        """A verified snapshot file arrived from the leader (called by the transport)."""
        self.metrics.snapshots_received.inc()
        await self.snapshot_worker.on_snapshot(incoming)

    # -- the drive loop ----------------------------------------------------------------------
    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.raft.tick_ms / 1000
        cap = self.core.cfg.election_ticks
        due = loop.time()
        while True:
            due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            owed = 1 + int((now - due) / interval)
            if owed > cap:
                owed, due = cap, now
            else:
                due += (owed - 1) * interval
            self._ticks += owed
            self._wake.set()

    async def _drive(self) -> None:
        core = self.core
        try:
            while self.running:
                if not (self._ticks or self._msgs or self._ops or len(self.proposals.queued)
                        or core.has_ready()):
                    self._wake.clear()
                    await self._wake.wait()
                self._drain()
                if core.has_ready():
                    rd = core.ready()
                    if _tl.ON:
                        _mark_ready(rd)
                    await drive_ready(core, rd, self)
                    if _tl.ON:
                        _tl.mark("n.turn_end")
                    self.snapshot_worker.maybe_snapshot(rd)
                    # Let the transport and the clients run between turns, even when a turn
                    # had nothing to wait for (applying a long backlog, say).
                    await asyncio.sleep(0)
                self.snapshot_worker.release_waiters()
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - storage failure etc.: stop, loudly
            self.fatal = e
            self.logger.critical("drive loop failed; the node stops", error=repr(e),
                              raft_state=describe_core(core))
            self._fail_everything(OutcomeUnknown(f"node {self.node_id} failed: {e}"))
            self._fatal_stop = asyncio.get_running_loop().create_task(
                self.stop(f"fatal error: {e}"))

    def _drain(self) -> None:
        core = self.core
        n, self._ticks = self._ticks, 0
        for _ in range(n):
            core.tick()
        msgs = self._msgs
        while msgs:
            msg = msgs.popleft()
            try:
                core.step(msg)
                if _tl.ON:
                    _mark_msg("n.step", msg)
                if msg.type in lost_data.WATCHED:
                    self.lost_data_watch.after_step(msg)
            except InvariantViolation:
                raise
            except Exception as e:  # noqa: BLE001 - a peer's message never stops the node
                self.logger.error("dropped a peer message the core could not take",
                               type=getattr(msg.type, "name", msg.type), peer=msg.from_,
                               error=repr(e))
        ops = self._ops
        while ops:
            ops.popleft()()
        self.proposals.propose_queued()

    # -- the I/O steps of a Ready (raft.driver.ReadyIO; drive_ready calls them in order) ------
    def install_snapshot(self, meta: SnapshotMeta) -> Awaitable[None]:
        return self.snapshot_worker.install(meta)

    def observe(self, rd: Ready) -> None:
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        if rd.entries:
            self.membership.learn_from_entries(rd.entries)
            if self.core.role != Role.LEADER:
                self.proposals.drop_overwritten(rd.entries)
        if rd.dropped:
            peers = self.transport.peers
            for d in rd.dropped:
                m = d.message
                self.refusals.refuse(d.reason, peers.get(m.from_, "?"), d.reason,
                                     type=m.type.name, peer=m.from_)

    def reconnect(self, conf_state: ConfState) -> None:
        self.membership.sync_peers(conf_state)

    def apply(self, entries: list[Entry], read_states: list[ReadState]) -> None:
        if entries:
            self.metrics.on_committed(entries[-1].index)
            t0 = time.perf_counter()
            if _tl.ON:
                _tl.mark("n.apply0", entries[-1].index)
            self.proposals.apply(entries)
            if _tl.ON:
                _tl.mark("n.apply1", entries[-1].index)
            self.metrics.commit_apply.observe(time.perf_counter() - t0)
        if read_states:
            self.metrics.read_index_rounds.inc()
            self.reads.release(read_states)

    def compact(self, index: int, conf_state: ConfState) -> None:
        self.snapshot_worker.compact(index, conf_state)

    def persist(self, rd: Ready) -> asyncio.Future | None:
        return self.writer.persist(rd)

    def send(self, messages: list[Message]) -> None:
        if _tl.ON:
            for m in messages:
                _mark_msg("n.send", m)
        self.metrics.on_sent(messages)
        if any(m.type == MT.SNAPSHOT for m in messages):
            for m in messages:
                if m.type == MT.SNAPSHOT:
                    self.metrics.snapshots_sent.inc()
                    self.snapshot_worker.send(m)
            messages = [m for m in messages if m.type != MT.SNAPSHOT]
        self.transport.send(messages)

    def _on_soft_state(self, ss: SoftState) -> None:
        self.logger.info("raft state", role=ss.role.name, term=ss.term, leader_id=ss.leader_id or None)
        self.metrics.on_role(int(ss.role), ss.leader_id or 0, ss.term)
        self.membership.leader_changed()
        if ss.role != Role.LEADER:
            # Writes queued here were never proposed: tell their callers where to go.
            self.proposals.fail_queued(self.not_leader())

    def _close_storage(self) -> None:
        """Flush and close the stores; a store that already failed is closed, never re-synced
        (a second fsync after a failed one proves nothing)."""
        try:
            if not isinstance(self.fatal, StorageError):
                self.writer.flush()
        except Exception as e:  # noqa: BLE001 - recorded as the node's failure; stop goes on
            self.logger.critical("storage failed while stopping", error=repr(e))
            if self.fatal is None:
                self.fatal = e
        for part in (self.log_store, self.state_machine):
            try:
                part.close()
            except Exception as e:  # noqa: BLE001 - closing the rest matters more
                self.logger.error("closing storage failed", part=type(part).__name__,
                               error=repr(e))


def _mark_msg(stage: str, msg: Message) -> None:
    """Timeline: an append that carries entries (a: its last index) or an append's answer
    (a: the index it acknowledges); ``b`` is the peer."""
    if msg.type == MT.APPEND and msg.entries:
        _tl.mark(stage + "_app", msg.entries[-1].index, msg.to or msg.from_)
    elif msg.type == MT.APPEND_RESP:
        _tl.mark(stage + "_ack", msg.index, msg.from_ if stage != "n.send" else msg.to)


def _mark_ready(rd: Ready) -> None:
    if rd.entries:
        _tl.mark("n.ready_e", rd.entries[-1].index)
    if rd.committed_entries:
        _tl.mark("n.ready_c", rd.committed_entries[-1].index)
