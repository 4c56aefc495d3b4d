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

A proposal's future is keyed by its log index and term: the entry that commits at that index
with that term is its answer; one with another term means a new leader overwrote it
(``ProposalDropped``). Reads: linearizable ones wait for a ReadIndex confirmation, lease ones
for the leader's lease (or a ReadIndex round when it has lapsed), serializable ones read the
local state machine at once.

Snapshots: once ``snapshot_interval_entries`` entries were applied since the last one, the state
machine pins a point-in-time view and a worker thread writes the file; the core is then told
(``on_snapshot_taken``) and later hands out ``compact_to``. A SNAPSHOT message from the core is
turned into a background transfer of that file through the transport; its end is reported
back. A received file is stepped into the core as a SNAPSHOT message and installed when the
core's Ready says so.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dengine._core import BatchBuffer
from dengine.config import Config
from dengine.consistency import Consistency
from dengine.errors import (
    DengineError,
    InvalidArgument,
    InvariantViolation,
    NotLeader,
    OperationTimeout,
    OutcomeUnknown,
    PayloadTooLarge,
    ProposalDropped,
    StorageError,
    Unavailable,
)
from dengine.node import _membership, _snapshotting, bootstrap, lost_data
from dengine.node._reads import FollowerReads
from dengine.node.cluster_alarm import ClusterAlarm
from dengine.node.members import MemberBook
from dengine.node.quota import SpaceQuota
from dengine.node.snapshot_policy import SnapshotPolicy
from dengine.observability.metrics import NodeMetrics
from dengine.raft.core import RaftCore
from dengine.raft.describe import describe_core
from dengine.raft.driver import drive_ready
from dengine.raft.messages import Message, MessageType
from dengine.raft.ready import ReadState, Ready, Role, SoftState
from dengine.raft.types import ConfState, Entry, EntryKind, SnapshotMeta
from dengine.security.refusals import RefusalLog
from dengine.statemachine.base import StateMachine
from dengine.storage.base import LogStore
from dengine.storage.snapshot import SnapshotStore
from dengine.transport.base import Transport

if TYPE_CHECKING:
    from dengine.node.leases import LeaseKeeper
    from dengine.node.watch import WatchHub

__all__ = ["Node", "Consistency"]

CONF = int(EntryKind.CONF_CHANGE)
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
        self.log = logger
        self._rng = rng or random.Random()
        self._transport_factory = transport_factory
        self.transport: Transport = None  # type: ignore[assignment]  # set by start()
        self.client_server = client_server
        self._core: RaftCore | None = None  # built by start()
        self.watch_hub: WatchHub | None = None  # made on first use (WatchHub.of)
        self.lease_keeper: LeaseKeeper | None = None  # made by start()
        self._lost_data_warned: set[tuple[int, int]] | None = None  # (peer, term) warned of
        raft = config.raft
        self.max_command_bytes = raft.max_msg_bytes
        self._batch = BatchBuffer(raft.max_batch_entries, raft.max_batch_bytes)
        self._msgs: deque[Message] = deque()
        self._ops: deque[Callable[[], None]] = deque()
        self._ticks = 0
        self._wake = asyncio.Event()
        self._pending: dict[int, tuple[int, asyncio.Future]] = {}
        self._reads: dict[bytes, asyncio.Future] = {}
        self._follower_reads = FollowerReads(self.read_index)
        self._read_ids = itertools.count(1)
        self._incoming: dict[tuple[int, int], str] = {}
        self._snap_waiters: list[asyncio.Future] = []
        self._transfers: dict[int, asyncio.Task] = {}
        self._snap_index = 0
        self._snapshotting = False
        self._snap_policy = SnapshotPolicy.from_config(config.raft)
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self._detached: set[asyncio.Task] = set()
        self._leader_event = asyncio.Event()
        self.accepting = False
        self.running = False
        self.stopped = asyncio.Event()
        self.fatal: BaseException | None = None
        self.joining = False
        self.removed = False  # this node's removal from the cluster committed: it stops
        self._fatal_stop: asyncio.Task | None = None
        self._fault_task: asyncio.Task | None = None
        self._stopping = False
        self._synced_term_vote: tuple[int, int] = (-1, -1)
        self._deferred_hs: Any = None
        self.metrics = NodeMetrics(self.node_id)  # this node's own registry
        self.metrics.watch(self)
        #: Every peer message refused (by the transport or the core): counted, logged.
        self.refusals = RefusalLog(self.log)
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
        _membership.sync_peers(self, self.core.conf_state)
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
                watch_fault_file(self.config.cluster.data_dir, self.transport, self.log,
                                 store=self.log_store))
        self.log.info("node started", address=self.address, cluster_id=self.cluster_id,
                      term=self.core.term, commit_index=self.core.commit_index,
                      applied_index=self.core.applied_index,
                      voters=sorted(self.core.conf_state.voters))

    def _build_core(self) -> None:
        store, sm = self.log_store, self.state_machine
        _snapshotting.prepare_state_machine(self)
        base = self.book.conf_at(store.first_index() - 1)
        rs = bootstrap.restart_state(store, sm.applied_index(), sm.applied_term(), base)
        self._snap_index = rs.snapshot.index if rs.snapshot else 0
        self._snap_policy.taken(self._snap_index)
        self._synced_term_vote = (rs.hard_state.term, rs.hard_state.vote)
        self.log.info("storage recovered", first_index=store.first_index(),
                      last_index=store.last_index(), term=rs.hard_state.term,
                      commit_index=rs.hard_state.commit, applied_index=rs.applied_index,
                      snapshot_index=self._snap_index)
        cfg = self.config.core_config(compact_keep_entries=self.config.raft.compaction_tail_entries)
        self.core = RaftCore(
            self.node_id, cfg, self._rng, conf_state=rs.conf_state, storage=store,
            hard_state=rs.hard_state, applied_index=rs.applied_index, snapshot=rs.snapshot,
            logger=self.log,
        )

    async def stop(self, reason: str = "the node is shutting down") -> None:
        """Stop accepting, fail what is in flight with a clear error, flush, close storage."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        self.running = False
        self.accepting = False
        self.log.info("node stopping", reason=reason)
        try:
            await self._stop_parts(reason)
        finally:
            self.stopped.set()  # whatever failed above, stop() completes and says so
        self.log.info("node stopped")

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
        if self._background:
            # Snapshot writes run in threads that read the state machine: let them finish.
            await asyncio.wait(list(self._background), timeout=30)
        if self.transport is not None:
            await self.transport.stop()
        for path in self._incoming.values():
            _snapshotting.unlink(path)
        self._incoming.clear()
        _close_storage(self)
        self.metrics.close()

    def _fail_everything(self, err: DengineError) -> None:
        """Answer everything in flight: ``err`` for what reached the log (its outcome is
        unknown); writes still queued here were never proposed, so they say not applied."""
        _, tokens = self._batch.drain()
        never = Unavailable(f"node {self.node_id} stopped before proposing the request; it "
                            "was not applied: retry on another node")
        for fut in tokens:
            if not fut.done():
                fut.set_exception(never)
        futures = [f for _, f in self._pending.values()]
        futures += list(self._reads.values()) + self._snap_waiters
        self._pending.clear()
        self._reads.clear()
        self._snap_waiters = []
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

    @core.setter
    def core(self, core: RaftCore) -> None:
        self._core = core

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

    def _check_accepting(self) -> None:
        if not self.accepting:
            raise Unavailable(f"node {self.node_id} is not serving (stopping or not started); "
                              "the request was not applied: retry on another node")

    def _submit(self, op: Callable[[], None]) -> None:
        self._ops.append(op)
        self._wake.set()

    async def propose(self, command: bytes) -> object:
        """Replicate one state-machine command; returns its result once applied here."""
        self._check_accepting()
        if len(command) > self.max_command_bytes:
            raise PayloadTooLarge(len(command), self.max_command_bytes, "command",
                                  "raft.max_msg_bytes")
        if not self.is_leader:
            raise self.not_leader()
        if self.quota.alarm or self.quota.cluster.raised:
            self.quota.check_write(command)
        fut = asyncio.get_running_loop().create_future()
        self._batch.push(command, fut)
        self._wake.set()
        return await fut

    async def read_barrier(self, consistency: int = Consistency.LINEARIZABLE) -> None:
        """Return once the local state machine may answer a read at ``consistency``."""
        self._check_accepting()
        if consistency == Consistency.SERIALIZABLE:
            return
        if consistency not in (Consistency.LINEARIZABLE, Consistency.LEASE):
            raise InvalidArgument(f"unknown read consistency {consistency}")
        if not self.is_leader:
            # A follower asks the leader for a read index (one round for every read waiting,
            # see _reads.py) and answers once it has applied up to it (Raft thesis §6.4).
            if self.leader_id is None:
                raise self.not_leader()
            await self._follower_reads.barrier()
            return
        await self.read_index(consistency == Consistency.LEASE)

    async def read_index(self, lease: bool = False) -> int:
        """One ReadIndex round through the core; returns once the read index is applied."""
        ctx = next(self._read_ids).to_bytes(8, "big")
        fut = asyncio.get_running_loop().create_future()

        def op() -> None:
            self.metrics.read_index_requests.inc()
            try:
                self.core.read_index(ctx, lease=lease)
            except NotLeader:
                settle(fut, error=self.not_leader())
                return
            if not fut.done():
                self._reads[ctx] = fut

        self._submit(op)
        try:
            return await fut
        finally:
            self._reads.pop(ctx, None)

    async def add_learner(self, node_id: int, address: str) -> None:
        """Add a new node as a learner (it replicates but does not vote)."""
        await _membership.add_learner(self, node_id, address)

    async def promote(self, node_id: int) -> None:
        """Make a caught-up learner a voter."""
        await _membership.promote(self, node_id)

    async def remove_member(self, node_id: int) -> None:
        """Remove a voter or learner from the cluster."""
        await _membership.remove_member(self, node_id)

    async def transfer_leader(self, target: int, timeout_s: float | None = None) -> None:
        """Hand leadership to ``target``; returns once it leads (or raises on timeout)."""
        self._check_accepting()
        _membership.check_member_id(target)
        if target == self.leader_id:
            return
        if target not in self.core.conf_state.voters:
            raise InvalidArgument(f"node {target} is not a voter")
        fut = asyncio.get_running_loop().create_future()

        def op() -> None:
            try:
                self.core.transfer_leader(target)
                settle(fut)
            except NotLeader:
                settle(fut, error=self.not_leader())
            except ValueError as e:
                settle(fut, error=InvalidArgument(str(e)))

        self._submit(op)
        await fut
        limit = timeout_s or 3 * self.config.raft.election_ms / 1000
        try:
            async with asyncio.timeout(limit):
                while self.leader_id != target:
                    self._leader_event.clear()
                    await self._leader_event.wait()
        except TimeoutError:
            raise OperationTimeout(f"leadership transfer to node {target}", limit) from None

    async def wait_for_leader(self, timeout_s: float | None = None) -> int:
        """The leader's id once one is known (after start, an election takes a timeout)."""
        limit = timeout_s or 5 * self.config.raft.election_ms / 1000
        try:
            async with asyncio.timeout(limit):
                while not self.leader_id:
                    self._leader_event.clear()
                    await self._leader_event.wait()
        except TimeoutError:
            raise OperationTimeout("waiting for a leader to be elected", limit) from None
        return self.leader_id

    def members(self) -> list[tuple[int, str, bool]]:
        """(id, address, is_voter) of every member of the config in force."""
        cs = self.core.conf_state
        voters = cs.voters | cs.voters_outgoing
        out = [(i, self.address_of(i) or "", True) for i in sorted(voters)]
        out += [(i, self.address_of(i) or "", False)
                for i in sorted((cs.learners | cs.learners_next) - voters)]
        return out

    def learn_members(self, members: Any) -> None:
        """Addresses learned outside the log (a join answer): remember them, connect."""
        found = {i: a for i, a in members if a}
        self.book.learn(found)
        for node_id, addr in found.items():
            if node_id != self.node_id:
                self.transport.set_peer(node_id, addr)

    def status(self) -> dict[str, Any]:
        core = self.core
        lead = self.leader_id
        return {
            "id": self.node_id,
            "role": core.role.name.lower(),
            "term": core.term,
            "leader_id": lead,
            "leader_addr": self.address_of(lead),
            "commit_index": core.commit_index,
            "applied_index": self.state_machine.applied_index(),
            "members": self.members(),
            "cluster_id": self.cluster_id,
            "alarms": self.quota.alarms(),
            "used_bytes": self.quota.used_bytes,
            "quota_bytes": self.quota.quota_bytes,
        }

    # -- inputs from the transport -----------------------------------------------------------
    def on_message(self, msg: Message) -> None:
        self.metrics.on_received(msg)
        self._msgs.append(msg)
        self._wake.set()

    async def on_snapshot(self, incoming: Any) -> None:
        """A verified snapshot file arrived from the leader (called by the transport)."""
        self.metrics.snapshots_received.inc()
        await _snapshotting.on_snapshot(self, incoming)

    def on_unreachable(self, peer: int) -> None:
        return None

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
                if not (self._ticks or self._msgs or self._ops or len(self._batch)
                        or core.has_ready()):
                    self._wake.clear()
                    await self._wake.wait()
                self._drain()
                if core.has_ready():
                    rd = core.ready()
                    await drive_ready(core, rd, self)
                    _snapshotting.maybe_snapshot(self, rd)
                    # Let the transport and the clients run between turns, even when a turn
                    # had nothing to wait for (applying a long backlog, say).
                    await asyncio.sleep(0)
                _snapshotting.release_snapshot_waiters(self)
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - storage failure etc.: stop, loudly
            self.fatal = e
            self.log.critical("drive loop failed; the node stops", error=repr(e),
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
                if msg.type in lost_data.WATCHED:
                    lost_data.after_step(self, msg)
            except InvariantViolation:
                raise
            except Exception as e:  # noqa: BLE001 - a peer's message never stops the node
                self.log.error("dropped a peer message the core could not take",
                               type=getattr(msg.type, "name", msg.type), peer=msg.from_,
                               error=repr(e))
        ops = self._ops
        while ops:
            ops.popleft()()
        batch = self._batch
        while len(batch):
            payloads, tokens = batch.pop_batch()
            self._propose(payloads, tokens)

    def _propose(self, payloads: list[bytes], futures: list[asyncio.Future]) -> None:
        core = self.core
        try:
            last = core.propose_batch(payloads)
        except (NotLeader, ProposalDropped) as e:
            err = self.not_leader() if isinstance(e, NotLeader) else e
            self.metrics.on_proposals_failed(
                "not_leader" if isinstance(e, NotLeader) else "dropped", len(futures))
            for fut in futures:
                if not fut.done():
                    fut.set_exception(err)
            return
        term = core.term
        self.metrics.on_proposed(last, len(futures))
        pending = self._pending
        for index, fut in enumerate(futures, last - len(futures) + 1):
            pending[index] = (term, fut)

    # -- the I/O steps of a Ready (raft.driver.ReadyIO; drive_ready calls them in order) ------
    def install_snapshot(self, meta: SnapshotMeta) -> Awaitable[None]:
        return _snapshotting.install_snapshot(self, meta)

    def observe(self, rd: Ready) -> None:
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        if rd.entries:
            _membership.learn_from_entries(self, rd.entries)
            if self._pending and self.core.role != Role.LEADER:
                self._drop_overwritten(rd.entries)
        if rd.dropped:
            peers = getattr(self.transport, "peers", {})
            for d in rd.dropped:
                m = d.message
                self.refusals.refuse(d.reason, peers.get(m.from_, "?"), d.reason,
                                     type=m.type.name, peer=m.from_)

    def reconnect(self, conf_state: ConfState) -> None:
        _membership.sync_peers(self, conf_state)

    def apply(self, entries: list[Entry], read_states: list[ReadState]) -> None:
        if entries:
            self.metrics.on_committed(entries[-1].index)
            t0 = time.perf_counter()
            self._apply(entries)
            self.metrics.commit_apply.observe(time.perf_counter() - t0)
        if read_states:
            self.metrics.read_index_rounds.inc()
            self._release_reads(read_states)

    def compact(self, index: int, conf_state: ConfState) -> None:
        _snapshotting.compact(self, index, conf_state)

    def persist(self, rd: Ready) -> asyncio.Future | None:
        """Write the Ready's entries and hard state; the fsync runs in a worker thread.

        A hard state whose term and vote did not change (only the commit index moved) is not
        written at once: the commit index may be persisted lazily (a restart re-learns it from
        the leader, and never below what the state machine applied), so it rides along with the
        next write that needs a sync instead of costing one (or, on the file engine, blocking
        the loop on a synced record write).
        """
        hs = rd.hard_state
        if not rd.entries and (hs is None or (hs.term, hs.vote) == self._synced_term_vote):
            if hs is not None:
                self._deferred_hs = hs
            return None
        if hs is None:
            hs = self._deferred_hs
        self._deferred_hs = None
        if hs is not None:
            self._synced_term_vote = (hs.term, hs.vote)
        if not getattr(self.log_store, "durable", True):
            self._persist(rd.entries, hs)  # nothing to wait for: no thread hop
            return None
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, self._persist, rd.entries, hs)

    def _persist(self, entries: list[Entry], hard_state: Any) -> None:
        store = self.log_store
        if entries:
            store.append(entries)
            self.metrics.persist_batch.observe(len(entries))
        if hard_state is not None:
            store.save_hard_state(hard_state)
        if self.config.storage.sync:
            t0 = time.perf_counter()
            store.sync()
            self.metrics.fsync.observe(time.perf_counter() - t0)

    def _release_reads(self, read_states: list[ReadState]) -> None:
        for rs in read_states:
            fut = self._reads.pop(rs.context, None)
            if fut is not None and not fut.done():
                if rs.failed:
                    fut.set_exception(self.not_leader())
                else:
                    fut.set_result(rs.index)

    def send(self, messages: list[Message]) -> None:
        self.metrics.on_sent(messages)
        if any(m.type == MT.SNAPSHOT for m in messages):
            for m in messages:
                if m.type == MT.SNAPSHOT:
                    self.metrics.snapshots_sent.inc()
                    _snapshotting.send_snapshot(self, m)
            messages = [m for m in messages if m.type != MT.SNAPSHOT]
        self.transport.send(messages)

    def _drop_overwritten(self, entries: list[Entry]) -> None:
        """A new leader's entries replaced ours: their proposers learn it now, not at commit."""
        first, last = entries[0].index, entries[-1].index
        # Gone from this log, yet another node's log may still hold it and a later leader
        # commit it (with five nodes, say): not a PROPOSAL_DROPPED, whose promise is "never".
        lost = OutcomeUnknown("a new leader replaced the entry in this node's log before it "
                              "committed")
        for index in [i for i in self._pending if i >= first]:
            term, fut = self._pending[index]
            if index > last or entries[index - first].term != term:
                del self._pending[index]
                if not fut.done():
                    fut.set_exception(lost)

    def _on_soft_state(self, ss: SoftState) -> None:
        self.log.info("raft state", role=ss.role.name, term=ss.term, leader_id=ss.leader_id or None)
        self.metrics.on_role(int(ss.role), ss.leader_id or 0, ss.term)
        self._leader_event.set()
        if ss.role != Role.LEADER:
            # Writes queued here were never proposed: tell their callers where to go.
            _, tokens = self._batch.drain()
            err = self.not_leader()
            for fut in tokens:
                if not fut.done():
                    fut.set_exception(err)

    def _apply(self, entries: list[Entry]) -> None:
        applied = self.state_machine.applied_index()
        if entries[0].index <= applied:
            entries = [e for e in entries if e.index > applied]
            if not entries:
                return
        results = self.state_machine.apply(entries)
        pending = self._pending
        for e, result in zip(entries, results, strict=True):
            if e.kind == CONF:
                _membership.on_conf_committed(self, e)
            if not pending:
                continue
            item = pending.pop(e.index, None)
            if item is None:
                continue
            term, fut = item
            if fut.done():
                continue
            if term != e.term:
                fut.set_exception(ProposalDropped(
                    f"entry {e.index} was replaced by a new leader's entry; retry"))
            elif isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    def _spawn_detached(self, coro: Any) -> asyncio.Task:
        """A task stop() does not wait for (it may call stop itself); kept until done."""
        task = asyncio.get_running_loop().create_task(coro)
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)
        return task

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


def _close_storage(node: Node) -> None:
    """Flush and close the stores; a store that already failed is closed, never re-synced
    (a second fsync after a failed one proves nothing)."""
    try:
        if not isinstance(node.fatal, StorageError):
            if node._deferred_hs is not None:
                node.log_store.save_hard_state(node._deferred_hs)
            node.log_store.sync()
    except Exception as e:  # noqa: BLE001 - recorded as the node's failure; stop goes on
        node.log.critical("storage failed while stopping", error=repr(e))
        if node.fatal is None:
            node.fatal = e
    for part in (node.log_store, node.state_machine):
        try:
            part.close()
        except Exception as e:  # noqa: BLE001 - closing the rest matters more
            node.log.error("closing storage failed", part=type(part).__name__, error=repr(e))


def settle(fut: asyncio.Future, result: object = None, error: BaseException | None = None) -> None:
    """Resolve ``fut`` unless its caller already gave up on it (cancelled, timed out)."""
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
