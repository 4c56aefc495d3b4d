"""A deterministic simulation of a dengine cluster: many RaftCores, one seed, every fault.

Theory of operation
-------------------
``Simulator(seed).run()`` builds 3 to 7 cores (the count is drawn from the seed unless given)
and drives them through one event queue ordered by simulated time (``TICK`` time units per
tick): node ticks (each node at its own phase, all at one rate), message deliveries, fsync
completions, client operations and faults. Everything random comes from one
``random.Random(seed)``, so a seed replays exactly.

Each node runs the node's own Ready loop: the shells' one driver (``raft.driver.drive_ready``)
over the simulator's I/O steps. A Ready's ``messages`` go out at once; its entries and hard
state go to the node's disk and become durable only when a later fsync event completes;
committed entries are applied to a KV state machine meanwhile and read states served; the turn
then goes on (``on_persisted``, the ``persisted_messages``, ``advance``) and only then does the
node take its next Ready, as the node does. Messages, ticks and client calls still reach the
core during a turn (the core takes inputs between ``ready()`` and ``advance()``; the node
queues them for its next turn). ``SimConfig(shell_order="pipelined")`` runs the other order the
core's contract allows: Readies queue on the disk and one fsync reports several. A crash throws the disk
queue away: a restarted node gets only what it had persisted (log and hard state; its state
machine is durable with its applied index, as a real one is).

Messages are dropped, duplicated, delayed (and so reordered) by the network profile in force,
held back by stalls and slow links, and cut by partitions, both ways or one way (``sim_net``);
old answers arrive again long after (``sim_late.LateCopies``). The fault schedule
(``sim_faults.FAULTS``) also crashes and restarts nodes (before their fsync too), slows disks,
transfers leadership, resends an earlier part of the leader's log to a diverged follower,
and arms reactions timed by the cluster's state (``sim_late.CampaignReaction``: a campaign
under a live leader cuts the leader's ears and may bounce its followers, with reads probed at
it); clients may only read for a while so a cut-off voter stays up to date. A leader and one
follower may be split off together (``sim_late.Split``): the follower comes back with a log
that diverges past its commit index, to slow appends and resends from further back. In the pipelined
orders, some runs have leader churn during a stalled append (``sim_rewrite``): a follower's
entries are rewritten twice, back to what it was first handed, while that write is on its disk.
Half the seeds run one voter without pre-vote (a cluster in the middle of a rolling change of
``raft.pre_vote``): cut from the leader while clients only read, it campaigns at newer terms
inside the leader's lease, and ``sim_late.NewerTerm`` brings those terms to the followers
that hold the lease (answers to their old messages) and hides them from the leader: the
followers must keep the promise their acks made (``sim_faults.NO_PRE_VOTE``).
``SimConfig(snapshots_and_membership=True)``
adds (``sim_faults.SNAPSHOTS_AND_MEMBERSHIP``): snapshots that let cores compact their logs, snapshot
streams to followers behind (bound to their message, lost with it, always reported to the
sender), installs, and membership changes (fresh learners, promotions, removals, joint changes;
a change whose leader then hears no one, and another asked of the next leader at once).
Clients (``sim_workload``) write and read at every consistency level.

Scripted scenarios drive the same machinery by hand: ``run_until(tick)`` runs events without
clients or faults, ``drop_if`` loses chosen messages, ``crash``/``restart`` and ``cuts`` do the
rest (see the figure-8 test).

After every event the invariants of ``sim_checks`` and the contract of ``sim_contract`` are
checked (``sim_verify``). After ``fault_ticks`` the faults
stop (links healed, nodes restarted): within ``settle_ticks`` one leader must be followed by
all, and by the end every operation must be decided and every node caught up. The history of
writes and linearizable and lease reads must then be linearizable.

A failure raises :class:`SimFailure`, whose message names the seed, the command that replays
it, what broke, the state of each node and the last events (``dengine.raft.describe``).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import os
import random
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from dengine.raft.config import RaftConfig
from dengine.raft.core import RaftCore
from dengine.raft.log import MemoryStorage
from dengine.raft.messages import Message, MessageType
from dengine.raft.ready import Role
from dengine.raft.types import ConfState, HardState, SnapshotMeta
from dengine.testing import sim_faults, sim_net, sim_report, sim_shell, sim_verify
from dengine.testing.sim_checks import InvariantBroken, Invariants, Voters
from dengine.testing.sim_contract import Contract
from dengine.testing.sim_events import (
    NODE_EVENTS,
    TICK,
    ClientStep,
    Deliver,
    DiskDone,
    Event,
    Fault,
    SnapshotArrives,
    SnapshotFails,
    StopFaults,
    Tick,
)
from dengine.testing.sim_faults import (
    DISK_PROFILES,
    FAULTS,
    NET_PROFILES,
    NO_PRE_VOTE,
    SNAPSHOTS_AND_MEMBERSHIP,
    Action,
)
from dengine.testing.sim_late import CampaignReaction, LateCopies, NewerTerm, Split
from dengine.testing.sim_report import replay_command
from dengine.testing.sim_rewrite import StalledRewrite
from dengine.testing.sim_shell import SimIO
from dengine.testing.sim_workload import KVMachine, Workload

__all__ = ["SimConfig", "SimFailure", "SimResult", "Simulator", "TICK", "replay_command"]

_FROM_LEADER = frozenset({MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT})


class SimFailure(AssertionError):
    """A simulated run broke an invariant; the message is the full report."""

    def __init__(self, seed: int, report: str) -> None:
        self.seed = seed
        super().__init__(report)


@dataclass
class SimConfig:
    """What one run looks like; the defaults are the CI schedule."""

    nodes: int | None = None  # None: 3 to 7, drawn from the seed
    fault_ticks: int = 200
    settle_ticks: int = 60
    drain_ticks: int = 60
    clients: int = 3
    keys: int = 3
    op_timeout_ticks: int = 25
    fault_gap_ticks: tuple[int, int] = (1, 15)
    raft: RaftConfig = field(
        default_factory=lambda: RaftConfig(election_ticks=10, heartbeat_ticks=1, lease_ticks=7,
                                           max_clock_drift=0.125)
    )
    faults: dict[str, tuple[int, Action]] = field(default_factory=lambda: dict(FAULTS))
    trace_lines: int = 400
    #: A deliberate bug, for tests: reads skip ReadIndex and are served locally at once.
    local_reads: bool = False
    #: Add snapshots and compaction (with a short log tail) and membership changes.
    snapshots_and_membership: bool = False
    #: How often a snapshot transfer fails on its own (the sender's shell reports failure
    #: though the network lost nothing): half of these abort before the data arrives, half
    #: deliver it and still report failure (the ack of the stream was lost).
    snapshot_fail: float = 0.15
    #: "node": each Ready's turn waits for its fsync before the next Ready (the node's loop);
    #: "pipelined": Readies queue on the disk, and one fsync reports several;
    #: "async": pipelined, and the messages that waited are sent before ``on_persisted``.
    shell_order: str = "node"
    #: Each node's clock runs at its own rate, off by up to this fraction (drawn per boot);
    #: None: the raft config's ``max_clock_drift``, the bound its lease is checked against.
    clock_drift: float | None = None
    #: Draw flow-control limits from the seed: entries and bytes per append, appends in
    #: flight, and (with snapshots) the compaction distance.
    random_limits: bool = True
    #: The share of seeds on which one voter, drawn from the seed, runs without pre-vote: it
    #: campaigns at a newer term at once when it loses the leader, so terms newer than a
    #: leader's appear while that leader's lease holds, and must not break it.
    no_pre_vote: float = 0.5


@dataclass
class SimResult:
    seed: int
    nodes: int
    ticks: int
    delivered: int
    faults: int
    leaders: int
    ops: dict[str, int]
    history_ops: int


class SimNode:
    """A node's shell: its core and what it has made durable."""

    def __init__(self, node_id: int) -> None:
        self.id = node_id
        self.core: RaftCore = None  # type: ignore[assignment]
        self.storage = MemoryStorage()
        self.hard_state = HardState()
        self.sm = KVMachine()
        self.sm_applied = 0
        self.up = True
        self.gen = 0
        self.incarnation = 0
        self.disk_q: deque[tuple[int, list, HardState | None, list[Message]]] = deque()
        self.disk_busy = False
        self.disk = DISK_PROFILES["normal"]
        self.phase = 0
        #: The latest snapshot this node took or installed, and its state machine data.
        self.snapshot: SnapshotMeta | None = None
        self.snapshot_data: dict = {}
        #: Earlier snapshots it still keeps (as etcd keeps several snap files), and ones it
        #: cut at a recent index to send: point -> data. A snapshot streams from here too.
        self.kept: dict[SnapshotMeta, dict] = {}
        #: With snapshots: its state machine's data after each of its last applied entries.
        self.sm_history: deque[tuple[int, dict]] = deque(maxlen=64)
        #: The data of a snapshot being received (streamed with the SNAPSHOT message).
        self.incoming: tuple[SnapshotMeta, dict] | None = None
        #: The Ready turn waiting for its fsync ("node" order), resumed by the disk event.
        self.turn: Coroutine[Any, Any, None] | None = None
        self.io: SimIO = None  # type: ignore[assignment]
        #: Sim time units per tick of this node's clock (drawn per boot within the drift).
        self.period = TICK
        #: The disk completes no write while set (``sim_rewrite``: a stalled append).
        self.disk_held = False

    def keep(self, meta: SnapshotMeta, data: dict) -> None:
        """The node's latest snapshot is now ``meta``; it keeps the last few."""
        self.snapshot, self.snapshot_data = meta, dict(data)
        self.kept[meta] = self.snapshot_data
        while len(self.kept) > 4:
            del self.kept[min(self.kept, key=lambda m: m.index)]


class Simulator:
    """One seeded run; see the module docstring."""

    def __init__(
        self,
        seed: int,
        config: SimConfig | None = None,
        core_factory: Callable[..., RaftCore] = RaftCore,
    ) -> None:
        self.seed = seed
        self.cfg = config or SimConfig()
        self.core_factory = core_factory
        self.rng = random.Random(seed)
        self.faults = dict(self.cfg.faults)
        self.raft = self.cfg.raft
        #: Knobs and clock rates come from their own generator: the schedule stays as it was.
        self.knob_rng = random.Random(f"{seed}/knobs")
        if self.cfg.snapshots_and_membership:
            self.faults.update(SNAPSHOTS_AND_MEMBERSHIP)
            self.raft = dataclasses.replace(self.raft, compact_keep_entries=4)
        if self.cfg.random_limits:
            self.raft = sim_faults.random_limits(self.knob_rng, self.raft,
                                                 self.cfg.snapshots_and_membership)
            # Half the seeds tell followers the commit lazily, as the node does (its own
            # generator: the other knobs stay as they were).
            self.raft = dataclasses.replace(
                self.raft, commit_on_tick=random.Random(f"{seed}/commit").random() < 0.5)
        #: Half the seeds with snapshots: at each of its ticks and when links heal, the
        #: leader may snapshot where a follower's log diverges from its own and send it that
        #: snapshot (``sim_faults.snapshot_at_divergence``); its own generator.
        self.divergence_rng = random.Random(f"{seed}/snapshot-divergence")
        self.snapshot_diverged = (self.cfg.snapshots_and_membership
                                  and self.divergence_rng.random() < 0.5)
        #: Some seeds run one voter without pre-vote (``no_pre_vote``), as a cluster in the
        #: middle of a rolling config change does; its own generator.
        self.no_pre_vote = 0
        drift = self.cfg.clock_drift
        self.drift = self.raft.max_clock_drift if drift is None else drift
        #: The longest tick period any node may have (sim time units).
        self.slowest_tick = TICK * (1 + self.drift)
        self.contract = Contract(self)
        #: The share of messages a stall holds back 10 to 30 ticks (``sim_faults.stalls``).
        self.stall = 0.0
        #: (from, to) -> until when (sim time) that link delays every message 10 to 30 ticks.
        self.slow_links: dict[tuple[int, int], int] = {}
        #: Until when (sim time) the leader resends to diverged followers at its ticks.
        self.resend_until = -1
        #: (term, until): a leader of a later term is asked for a membership change at its
        #: first ticks (``sim_faults.change_at_takeover``); until -1 when not armed.
        self.takeover_change = (0, -1)
        #: node -> until when (sim time) reads are probed there every tick.
        self.probe_until: dict[int, int] = {}
        #: Late copies of old messages, and the reaction armed for a campaign (``sim_late``).
        self.late = LateCopies(self)
        self.reaction = CampaignReaction(self)
        self.newer = NewerTerm(self)
        self.split = Split(self)
        n = self.cfg.nodes or self.rng.randint(3, 7)
        self.ids = list(range(1, n + 1))
        self.first_size = n
        self.conf = ConfState(voters=frozenset(self.ids))
        self.nodes = {i: SimNode(i) for i in self.ids}
        pv = random.Random(f"{seed}/pre-vote")
        if self.raft.pre_vote and pv.random() < self.cfg.no_pre_vote:
            self.no_pre_vote = pv.choice(self.ids)
            self.faults.update(NO_PRE_VOTE)
        #: Leader churn during a stalled append (``sim_rewrite``), on some pipelined runs.
        self.rewrite = StalledRewrite(self)
        self.inv = Invariants()
        self.workload = Workload(
            random.Random(self.rng.random()),
            self.cfg.clients,
            self.cfg.keys,
            self.cfg.op_timeout_ticks * TICK,
        )
        self.workload.local_reads = self.cfg.local_reads
        self.cuts: set[tuple[int, int]] = set()
        #: Scripted scenarios: messages for which this returns True are lost when sent.
        self.drop_if: Callable[[Message], bool] | None = None
        self.net = NET_PROFILES["good"]
        self.now = 0
        self.phase = "faults"
        self.queue: list[tuple[int, int, Event]] = []
        self._seq = 0
        self.trace: deque[tuple] = deque(maxlen=self.cfg.trace_lines)
        self.delivered = 0
        self.faults_done = 0
        self.fault_counts: dict[str, int] = {}
        self.snapshots_installed = 0
        #: Notable schedule events beyond the fault names (demotions, explicit joint changes,
        #: snapshot transfers failing on their own), to show the schedule reaches them.
        self.event_counts: dict[str, int] = {}
        self._touched: set[int] = set()
        #: node -> the highest term it was told of: by a leader whose message (append,
        #: heartbeat, snapshot) reached it, or by the node its forwarded read reached (which
        #: must refuse a stale one with its term).
        self.told_term: dict[int, int] = {}
        #: node -> ((term, incarnation) it leads, its commit index, voters) at the last check.
        self._leading: dict[int, tuple[tuple[int, int], int, Voters]] = {}
        for i in self.ids:
            node = self.nodes[i]
            node.phase = self.rng.randrange(TICK)
            self._boot(node)

    # -- nodes --------------------------------------------------------------------------------
    def _boot(self, n: SimNode) -> None:
        n.incarnation += 1
        rng = random.Random(f"{self.seed}/{n.id}/{n.incarnation}")
        raft = self.raft
        if n.id == self.no_pre_vote:
            raft = dataclasses.replace(raft, pre_vote=False)
        n.core = self.core_factory(
            n.id,
            raft,
            rng,
            conf_state=n.storage.snapshot.conf_state if n.storage.snapshot.index else self.conf,
            storage=n.storage,
            hard_state=n.hard_state,
            applied_index=n.sm_applied,
            snapshot=n.snapshot,
        )
        n.io = SimIO(self, n)
        lo, hi = math.ceil(TICK * (1 - self.drift)), math.floor(TICK * (1 + self.drift))
        n.period = self.knob_rng.randint(lo, hi)
        n.up = True
        n.gen += 1
        start = self.now - self.now % TICK + n.phase
        self._at(start if start > self.now else start + TICK, Tick(n.id, n.gen))

    def probe(self, i: int, ticks: int) -> None:
        """Probe reads (lease and ReadIndex) at node ``i`` each of its ticks while it leads,
        for the next ``ticks`` ticks; each is checked against the commit index of its start."""
        until = self.now + ticks * TICK
        if until > self.probe_until.get(i, -1):
            self.probe_until[i] = until

    def up_nodes(self) -> list[int]:
        return [i for i in self.ids if self.nodes[i].up]

    def members(self) -> frozenset[int]:
        """Voters and learners of the config the current leader has in force (every started
        node when there is no leader)."""
        leader = self.current_leader()
        if not leader:
            return frozenset(self.ids)
        cs = self.nodes[leader].core.conf_state
        return cs.voters | cs.learners | cs.voters_outgoing | cs.learners_next

    def client_nodes(self) -> list[int]:
        """Nodes clients talk to: up members (a removed node serves no one)."""
        members = self.members()
        return [i for i in self.up_nodes() if i in members]

    def fresh_ids(self) -> list[int]:
        """Ids that membership changes may add: never started, up to three past the start."""
        return [i for i in range(self.first_size + 1, self.first_size + 4) if i not in self.nodes]

    def ensure_node(self, i: int) -> None:
        """Start node ``i`` with an empty log if it never ran (it learns the config in force
        from the log or a snapshot, being absent from the initial one)."""
        if i in self.nodes:
            return
        n = self.nodes[i] = SimNode(i)
        n.phase = self.rng.randrange(TICK)
        self.ids = sorted([*self.ids, i])
        self._boot(n)

    def current_leader(self) -> int:
        best, term = 0, -1
        for i in self.ids:
            n = self.nodes[i]
            if n.up and n.core.role == Role.LEADER and n.core.term > term:
                best, term = i, n.core.term
        return best

    def crash(self, i: int) -> None:
        n = self.nodes[i]
        n.up = False
        n.gen += 1
        n.disk_q.clear()  # never made durable
        n.disk_busy = False
        if n.turn is not None:
            n.turn.close()  # the turn dies with the process
            n.turn = None
        self.workload.on_crash(i)

    def restart(self, i: int) -> None:
        self.inv.on_restart(i)
        self._boot(self.nodes[i])

    # -- the event queue ----------------------------------------------------------------------
    def _at(self, time: int, event: Event) -> None:
        self._seq += 1
        heapq.heappush(self.queue, (time, self._seq, event))

    def count_event(self, name: str) -> None:
        self.event_counts[name] = self.event_counts.get(name, 0) + 1

    def trace_note(self, text: str) -> None:
        self.trace.append((self.now, "note", text))

    def send(self, msgs: list[Message], fresh: bool = False) -> None:
        """Put messages on the network (``sim_net``): lost, delayed, duplicated or cut
        (``fresh``: on a new connection, which slow links and stalls do not hold back)."""
        sim_net.send(self, msgs, fresh)

    def process(self, i: int) -> None:
        """Run node ``i``'s Ready turns until it has nothing to do or waits for its disk."""
        sim_shell.process(self, i)

    def deliver_late(self, m: Message, at: int) -> None:
        """A copy of ``m``, sent earlier, arrives at ``at`` (``sim_late``)."""
        self._at(at, Deliver(m, late=True))

    # -- the shell ----------------------------------------------------------------------------

    def take_snapshot(self, i: int) -> SnapshotMeta | None:
        """Node ``i``'s state machine snapshots its applied state; the core may compact."""
        n = self.nodes[i]
        core = n.core
        index = n.sm_applied
        if not n.up or core.applied_index != index or (n.snapshot and n.snapshot.index >= index):
            return None
        meta = SnapshotMeta(index, core.log.term(index), core.conf_state_at(index))
        n.keep(meta, n.sm.data)
        core.on_snapshot_taken(meta)
        sim_shell.process(self, i)
        return meta

    def snapshot_at_divergence(self, leader: int) -> None:
        """``sim_faults.snapshot_at_divergence`` towards each follower ``leader`` reaches."""
        for j in sorted(self.nodes[leader].core.tracker.progress):
            if j != leader and j in self.nodes and self.nodes[j].up \
                    and (leader, j) not in self.cuts:
                line = sim_faults.snapshot_at_divergence(self, leader, j, self.divergence_rng)
                if line:
                    self.trace_note("FAULT " + line)
                    self.count_event("snapshot_at_divergence")

    def cut_snapshot(self, i: int, index: int) -> SnapshotMeta | None:
        """Node ``i`` cuts a snapshot at an applied ``index`` below its latest one, to send
        (its core is not told: it keeps its own latest snapshot); None when it cannot."""
        n = self.nodes[i]
        core = n.core
        if not n.up or core.applied_index != n.sm_applied or not 0 < index <= n.sm_applied \
                or index < core.log.first_index - 1:
            return None
        data = self._state_at(n, index)
        if data is None:
            return None
        meta = SnapshotMeta(index, core.log.term(index), core.conf_state_at(index))
        n.kept[meta] = data
        return meta

    @staticmethod
    def _state_at(n: SimNode, index: int) -> dict | None:
        """Node ``n``'s state machine data at an applied ``index``: a kept snapshot's data
        with the log's entries after it replayed (None when its log no longer reaches back)."""
        bases = [(0, {}), *n.sm_history, *((m.index, d) for m, d in n.kept.items())]
        base, data = max(((b, d) for b, d in bases if b <= index), key=lambda bd: bd[0])
        if base + 1 < n.core.log.first_index and base < index:
            return None
        sm = KVMachine()
        sm.data = dict(data)
        j = base + 1
        while j <= index:
            chunk = n.core.log.entries(j, index + 1)
            for e in chunk:
                sm.apply(e)
            j += len(chunk)
        return sm.data

    # -- checks -------------------------------------------------------------------------------

    # -- running ------------------------------------------------------------------------------
    def run(self) -> SimResult:
        try:
            return self._run()
        except SimFailure:
            raise
        except InvariantBroken as e:
            raise SimFailure(self.seed, self.report(str(e))) from None
        except Exception as e:  # the core raised where it must not: a bug too
            raise SimFailure(self.seed, self.report(f"{type(e).__name__}: {e}")) from e

    def _run(self) -> SimResult:
        cfg = self.cfg
        fault_end = cfg.fault_ticks * TICK
        # A voter without pre-vote whose log is behind disrupts every election until another
        # node times out first (each of its campaigns restarts everyone's timer): the
        # disruption pre-vote exists to stop. Such runs get four times the bound.
        settle = cfg.settle_ticks * (4 if self.no_pre_vote else 1)
        self._settle_end = fault_end + settle * TICK
        end = self._settle_end + cfg.drain_ticks * TICK
        self._at(TICK // 2, ClientStep())
        self._at(self.rng.randint(*cfg.fault_gap_ticks) * TICK, Fault())
        self._weights = [(w, name, fn) for name, (w, fn) in sorted(self.faults.items()) if w > 0]
        settled_at = 0
        self._at(fault_end, StopFaults())
        while self.queue:
            time, _, event = heapq.heappop(self.queue)
            if time > end:
                break
            self.now = time
            self.workload.now = time / TICK
            self.HANDLERS[type(event)](self, event)
            self.rewrite.on_step()
            sim_verify.check_step(self)
            if self.phase == "settle" and not settled_at and sim_verify.followed_leader(self):
                settled_at = time
                self.trace_note(f"leader {sim_verify.followed_leader(self)} followed by all")
            if self.phase == "settle" and not settled_at and time > self._settle_end:
                raise InvariantBroken(
                    f"liveness: no leader followed by every node {settle} ticks "
                    f"after the faults stopped"
                )
        leaders = len(self.inv.leader_of_term)
        sim_verify.check_end(self)
        w = self.workload
        return SimResult(
            self.seed,
            len(self.ids),
            end // TICK,
            self.delivered,
            self.faults_done,
            leaders,
            dict(w.counts),
            len(w.history.ops()),
        )

    def _tick(self, ev: Tick) -> None:
        n = self.nodes[ev.node]
        if n.up and n.gen == ev.gen:
            n.core.tick()
            self.late.on_tick(ev.node)
            line = self.split.on_tick(ev.node)
            if line:
                self.trace_note("FAULT " + line)
            if self.takeover_change[1] >= self.now and n.core.is_leader:
                line = sim_faults.change_at_takeover(self, ev.node)
                if line:
                    self.trace_note("FAULT " + line)
                    self.count_event("change_at_takeover")
            if self.resend_until >= self.now and n.core.is_leader:
                line = sim_faults.resend_to_diverged(self, ev.node)
                if line:
                    self.trace_note("FAULT " + line)
            if self.snapshot_diverged and self.phase == "faults" and n.core.is_leader:
                self.snapshot_at_divergence(ev.node)
            if self.probe_until.get(ev.node, -1) >= self.now and n.core.is_leader:
                self.workload.probe(self, ev.node, lease=True)
                self.workload.probe(self, ev.node, lease=False)
            sim_shell.process(self, ev.node)
            self._at(self.now + n.period, ev)

    def _client_step(self, ev: ClientStep) -> None:
        if self.phase != "faults" and self.now >= self._settle_end:
            self.workload.enabled = False
        self.workload.step(self, self.now)
        self._at(self.now + TICK, ev)

    def _next_fault(self, ev: Fault) -> None:
        if self.phase == "faults" and self.rewrite.active:
            self._at(self.now + self.rng.randint(*self.cfg.fault_gap_ticks) * TICK, Fault())
        elif self.phase == "faults":
            self._fault(self._weights)

    def run_until(self, tick: float) -> None:
        """Scripted scenarios: run node, network and disk events up to ``tick``, checking the
        invariants after each (no clients or faults run unless ``run`` scheduled them)."""
        end = int(tick * TICK)
        while self.queue and self.queue[0][0] <= end:
            time, _, event = heapq.heappop(self.queue)
            self.now = time
            self.workload.now = time / TICK
            if isinstance(event, NODE_EVENTS):
                self.HANDLERS[type(event)](self, event)
            sim_verify.check_step(self)
        self.now = max(self.now, end)

    def _fault(self, weights: list[tuple[int, str, Action]]) -> None:
        total = sum(w for w, _, _ in weights)
        pick = self.rng.randrange(total)
        for w, name, fn in weights:
            if pick < w:
                line = fn(self)
                if line:
                    self.faults_done += 1
                    self.fault_counts[name] = self.fault_counts.get(name, 0) + 1
                    self.trace_note("FAULT " + line)
                break
            pick -= w
        self._at(self.now + self.rng.randint(*self.cfg.fault_gap_ticks) * TICK, Fault())

    def _stop_faults(self, ev: StopFaults | None = None) -> None:
        self.phase = "settle"
        self.rewrite.stop()
        self.cuts.clear()
        self.net = NET_PROFILES["good"]
        self.stall = 0.0
        self.slow_links.clear()
        self.resend_until = -1
        self.split.stop()
        self.takeover_change = (0, -1)
        self.late.on = False
        self.reaction.until = -1
        self.newer.until = -1
        for i in self.ids:
            self.nodes[i].disk = DISK_PROFILES["normal"]
            if not self.nodes[i].up:
                self.restart(i)
        # operations started from now on must be decided, not time out
        self.workload.op_timeout = 10**9
        self.trace_note("FAULTS STOP: links healed, every node up")

    # -- reporting ----------------------------------------------------------------------------
    def report(self, what: str) -> str:
        return sim_report.report(self, what)

    _describe_event = staticmethod(sim_report.describe_event)

    #: What each event does (``sim_events``); each handler takes its key's event type.
    TICK = TICK

    HANDLERS: dict[type[Event], Callable[[Simulator, Any], None]] = {
        Tick: _tick,
        Deliver: sim_net.deliver,
        SnapshotArrives: sim_net.snapshot_arrives,
        SnapshotFails: sim_net.snapshot_fails,
        DiskDone: sim_shell.disk_done,
        ClientStep: _client_step,
        Fault: _next_fault,
        StopFaults: _stop_faults,
    }


def seeds_from_env(default_count: int) -> range:
    """The seeds ``DENGINE_SIM_SEEDS`` (count) and ``DENGINE_SIM_SEED_START`` ask for."""
    start = int(os.environ.get("DENGINE_SIM_SEED_START", "0"))
    count = int(os.environ.get("DENGINE_SIM_SEEDS", str(default_count)))
    return range(start, start + count)

