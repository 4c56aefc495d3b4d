"""RaftCore: the Raft protocol as a deterministic state machine with no I/O.

How a shell drives it
---------------------
Construct one per node::

    core = RaftCore(node_id, RaftConfig(election_ticks=10, heartbeat_ticks=1),
                    random.Random(seed), conf_state=ConfState(voters=frozenset({1, 2, 3})),
                    storage=log_reader, hard_state=saved_hard_state, applied_index=applied)

``storage`` is a :class:`~dengine.raft.log.LogReader`: a read-only view of the log the shell
persisted (empty on first start; ``MemoryStorage`` in tests). ``hard_state`` and
``applied_index`` come from what the shell saved; a fresh node passes neither.
Then loop, on one thread::

    core.tick()                      # every tick interval (the node turns ms into ticks)
    core.step(msg)                   # every message a peer sent
    core.propose(b"...") / core.propose_batch([...]) / core.read_index(ctx)
    core.transfer_leader(node_id) / core.propose_conf_change(ConfChange(...))
    core.on_snapshot_taken(meta)     # the state machine made a snapshot at meta.index
    core.report_snapshot(peer, ok)   # a snapshot stream to a follower ended
    if core.has_ready():
        rd = core.ready()
        install(rd.snapshot)                     # if any: state machine + LogStore reset
        observe(rd)                              # soft state, new entries, dropped: bookkeeping
        reconnect(rd.conf_state)                 # if not None: the members changed
        send(rd.messages)                        # at once, while persisting (SNAPSHOT ones:
                                                 # stream our latest snapshot's data)
        persist(rd.entries, rd.hard_state)       # append (replacing any suffix) + fsync
        apply(rd.committed_entries); serve(rd.read_states)   # durable already: while it syncs
        core.on_persisted(rd.number)             # once the fsync is done
        send(rd.persisted_messages)              # only after the fsync
        core.advance(rd)
        compact(rd.compact_to, core.conf_state_at(rd.compact_to))   # if non-zero

Every shell runs this order through one driver, :func:`dengine.raft.driver.drive_ready`, over
its own I/O steps (the node, the simulator and the scenario-test network alike).

``ready()`` may be called again before ``on_persisted`` of the previous Ready (to pipeline
fsyncs), but entries must be persisted in Ready order, and ``on_persisted(n)`` means every
Ready numbered ``<= n`` is durable. ``advance`` must be called before the next ``ready()``.

Persistence contract
--------------------
- Before a node sends a message in ``persisted_messages`` (VOTE requests and responses,
  APPEND_RESP), the Ready's ``hard_state`` (term, vote) and ``entries`` must be durable: a vote
  promises the term and vote survive a crash (Raft figure 2); an append ack promises the
  entries do, since the leader counts it toward commit. A HEARTBEAT_RESP that carries a term
  not yet durable is a persisted message too: the leader's lease counts on it (``outbox``).
- A leader's APPEND messages go in ``messages`` and may leave before its own fsync ends; the
  leader counts itself in the quorum only for entries ``on_persisted`` reported (raft-rs'
  on_persist_ready). Committed entries are handed out to apply only once persisted locally.
- ``hard_state.commit`` may be persisted lazily: a restarted node that loads an older commit
  only re-learns it from the leader.
- A snapshot in ``Ready.snapshot`` is persisted (state machine data and the LogStore reset to
  its point) with the rest of that Ready, before its APPEND_RESP leaves.
- On restart a node loads: the hard state (term, vote, commit); the log (through ``storage``,
  whose ``first_index() - 1`` and its term are the latest snapshot point); the applied index of
  its state machine; the latest snapshot's metadata (``snapshot=``), whose ``conf_state`` is the
  membership at that point (or, with no snapshot, the cluster's initial ``conf_state``). The
  core replays the membership changes in the log after it: a config is in force from the moment
  its entry is appended (``_membership``).

Messages from peers are validated in ``step``: ``guard`` first drops what would wedge the core
(terms and indexes past 2^62, a TIMEOUT_NOW not from our leader); then a bad one is answered as Raft says (a stale
leader learns the newer term) or dropped and listed in ``Ready.dropped`` with a reason. Nothing
raises out of ``step``. Local misuse (proposing on a follower) raises typed errors.

The step logic itself lives in small per-role handlers (``_roles``), chosen by a table keyed by
(role, message type).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from dengine.errors import InvariantViolation, NotLeader, ProposalDropped
from dengine.raft import _leader, _roles, guard
from dengine.raft._membership import Membership
from dengine.raft.confchange import ConfChange
from dengine.raft.config import RaftConfig
from dengine.raft.log import LogReader, MemoryStorage, RaftLog
from dengine.raft.messages import Message, MessageType
from dengine.raft.outbox import Outbox
from dengine.raft.read_only import Reads
from dengine.raft.ready import Ready, Role, SoftState
from dengine.raft.tracker import ProgressTracker, QuorumConfig
from dengine.raft.types import ConfState, Entry, HardState, SnapshotMeta

__all__ = ["RaftCore"]

MT = MessageType


class RaftCore:
    """One node's Raft state machine; see the module docstring for how to drive it."""

    def __init__(
        self,
        node_id: int,
        config: RaftConfig,
        rng: random.Random,
        *,
        peers: Sequence[int] = (),
        conf_state: ConfState | None = None,
        storage: LogReader | None = None,
        hard_state: HardState | None = None,
        applied_index: int = 0,
        snapshot: SnapshotMeta | None = None,
        logger: Any = None,
    ) -> None:
        if node_id <= 0:
            raise ValueError(f"node_id must be a positive integer, got {node_id}")
        self.id = node_id
        self.cfg = config
        self.rng = rng
        self.logger = logger
        if conf_state is None and snapshot is not None:
            conf_state = snapshot.conf_state
        if conf_state is None:
            conf_state = ConfState(voters=frozenset(peers) | {node_id})
        hs = hard_state or HardState()
        #: first_index - 1 <= applied <= committed <= last_index; applied <= persisted_index
        #: (committed entries are handed out only once durable here); see ``log``.
        self.log = RaftLog(storage if storage is not None else MemoryStorage(),
                           hs.commit, applied_index)
        #: Progress per member of the config in force (``membership.latest``); a leader's own
        #: match_index <= log.persisted_index.
        self.tracker = ProgressTracker(
            QuorumConfig.from_conf_state(conf_state), config.max_inflight_msgs
        )
        #: Never decreases (InvariantViolation in ``_reset``); durable before any message in
        #: ``persisted_messages`` leaves.
        self.term = hs.term
        #: 0 or the node voted for in ``term``; set once per term (``grant_vote``).
        self.vote = hs.vote
        #: 0 when unknown; == id exactly when role is LEADER.
        self.leader_id = 0
        #: Changed only by become_* (tested).
        self.role = Role.FOLLOWER
        #: Leader: the voter leadership is being handed to (0: none); proposals are refused.
        self.lead_transferee = 0
        #: ReadIndex rounds, the lease, reads forwarded and reads decided (``read_only``).
        self.reads = Reads()
        #: Ticks since start (the lease is measured on it).
        self.now = 0
        #: Ticks since we last heard from a leader (follower) or last checked the quorum
        #: (leader); the election timeout is randomized_election_timeout in
        #: [election_ticks, 2 * election_ticks).
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        #: A tick passed since commit-only appends were last flushed (cfg.commit_on_tick).
        self._commit_tick = False
        self.randomized_election_timeout = config.election_ticks
        #: Set on a restart (a saved term): for one election timeout after it, the node treats
        #: itself as hearing from a live leader and refuses votes, because before the crash it
        #: may have acked a leader whose lease still counts on it (thesis §6.4.1 leases).
        self.restart_guard = hs.term > 0
        #: The latest snapshot this node holds (sent to followers the log no longer covers).
        self.snapshot_meta: SnapshotMeta | None = snapshot
        #: A snapshot received from the leader, to hand out in the next Ready.
        self.pending_snapshot: SnapshotMeta | None = None
        #: The LogStore may drop entries up to here (next Ready); <= log.applied.
        self.pending_compact = 0
        #: The configs of the held log; calls install_config when the one in force changes.
        self.membership = Membership(self.log.first_index - 1, self.tracker.config,
                                     self.install_config)
        #: Messages and drops for the next Ready; ``send`` routes by type (``outbox``).
        self.out = Outbox(durable_term=hs.term)
        self._next_number = 1
        self._persisted_number = 0
        #: (Ready number, last entry index, its term, hard-state term or -1) of every Ready
        #: handed out with something to persist and not yet reported durable.
        self._persist_marks: list[tuple[int, int, int, int]] = []
        self._outstanding: Ready | None = None
        self._prev_hard = (self.term, self.vote, self.log.committed)
        self._prev_soft = (0, Role.FOLLOWER, self.term)
        self.become_follower(self.term, 0)
        self.membership.replay(self.log.storage, self.log.first_index, self.log.last_index)
        self._prev_conf = self.tracker.config

    # -- read-only views -------------------------------------------------------------------
    @property
    def commit_index(self) -> int:
        return self.log.committed

    @property
    def applied_index(self) -> int:
        return self.log.applied

    @property
    def last_index(self) -> int:
        return self.log.last_index

    @property
    def is_leader(self) -> bool:
        return self.role == Role.LEADER

    @property
    def promotable(self) -> bool:
        """True when this node may campaign: it is a voter of the config in force, or of the
        config at the commit index while a later one that drops it is not committed yet
        (thesis §4.2.2: it may still be needed to elect a leader that commits the change).
        Learners never campaign."""
        if self.tracker.config.is_voter(self.id):
            return True
        ms = self.membership
        return ms.has_changes and ms.config_at(self.log.committed).is_voter(self.id)

    @property
    def conf_state(self) -> ConfState:
        return self.tracker.config.to_conf_state()

    @property
    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    @property
    def soft_state(self) -> SoftState:
        return SoftState(self.leader_id, self.role, self.term)

    def may_commit_by_counting(self, index: int) -> bool:
        """Raft §5.4.2: only an entry of the current term commits by counting replicas.

        A method so that a test can build a deliberately faulty core (a subclass that returns
        True) and check that the simulator catches the figure-8 anomaly it causes.
        """
        return self.log.term(index) == self.term

    def lease_valid(self) -> bool:
        """True while a leader may serve reads from its lease (see ``read_only``)."""
        return (
            self.role == Role.LEADER
            and self.cfg.check_quorum
            and self.cfg.lease_ticks > 0
            and not self.lead_transferee
            and self.reads.lease_holds(self.now, self.cfg.lease_ticks)
        )

    # -- inputs ----------------------------------------------------------------------------
    def tick(self) -> None:
        """One unit of logical time: election timeouts, heartbeats, check-quorum."""
        self.now += 1
        if self.role == Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_ticks:
            self.restart_guard = False
        if self.promotable and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            _roles.step(self, self.local(MT.HUP))

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self._commit_tick = True
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_ticks:
            self.election_elapsed = 0
            if self.cfg.check_quorum:
                _leader.on_check_quorum(self, self.local(MT.CHECK_QUORUM))
            if self.role == Role.LEADER and self.lead_transferee:
                # The transfer did not finish within an election timeout: abandon it.
                self.lead_transferee = 0
        if self.role == Role.LEADER:
            _leader.after_commit(self)  # e.g. a joint config left once a transfer ended
        if self.role == Role.LEADER and self.heartbeat_elapsed >= self.cfg.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            _leader.on_beat(self, self.local(MT.BEAT))

    def step(self, msg: Message) -> None:
        """Feed one message from a peer (or a local one); never raises on bad peer input."""
        screened = guard.screen(self, msg)
        if screened is not None:
            _roles.step(self, screened)

    def campaign(self) -> None:
        """Start an election now (as an election timeout would): a local HUP."""
        _roles.step(self, self.local(MT.HUP))

    def end_restart_guard(self) -> None:
        """Grant votes now, as a restarted node does once an election timeout has passed (for
        scenarios that start from nodes that have been up a while)."""
        self.restart_guard = False

    def let_election_timeout_pass(self) -> None:
        """Count a whole election timeout without a word from the leader, without ticking (so
        no campaign starts here): the leader stickiness of the vote check ends."""
        self.election_elapsed = self.cfg.election_ticks

    def propose(self, data: bytes) -> int:
        """Append one command to the leader's log; returns its index.

        Raises NotLeader (with the leader's id when known) on a non-leader and ProposalDropped
        while a leadership transfer is in progress. The index is committed once it appears in
        a Ready's ``committed_entries`` with the same term.
        """
        return self.propose_batch((data,))

    def propose_batch(self, payloads: Sequence[bytes]) -> int:
        """Append several commands at once (one append message per follower); last index."""
        self._check_can_propose()
        return _leader.append_entries(self, payloads, 0)

    def read_index(self, context: bytes, *, lease: bool = False) -> None:
        """Ask for a linearizable read; a ReadState with ``context`` comes out in a Ready.

        ``lease=True`` lets a leader whose lease holds answer at once. A follower forwards the
        request to the leader; with no leader known it raises NotLeader.
        """
        _roles.read_index(self, context, lease)

    def transfer_leader(self, target: int) -> None:
        """Hand leadership to ``target`` (a voter). A follower forwards it to the leader.

        The leader stops taking proposals, brings the target up to date and sends it
        TIMEOUT_NOW; the transfer is abandoned after an election timeout.
        """
        _roles.transfer_leader(self, target)

    def propose_conf_change(self, change: ConfChange) -> int:
        """Propose a membership change; returns the index of its entry.

        The new config takes effect on every node when the entry is appended to its log.
        Raises NotLeader, ProposalDropped (transfer in progress) or ConfChangeError (another
        change pending, removing the last voter, adding a member twice...).
        """
        self._check_can_propose()
        return _leader.propose_conf_change(self, change)

    def conf_state_at(self, index: int) -> ConfState:
        """The membership in force at ``index`` (what a snapshot taken there must record)."""
        return self.membership.config_at(index).to_conf_state()

    def on_snapshot_taken(self, meta: SnapshotMeta, keep_entries: int | None = None) -> None:
        """The state machine made a snapshot at ``meta.index`` (applied entries only).

        The core sends it to followers its log no longer covers and lets the LogStore drop
        the entries up to ``meta.index - compact_keep_entries`` (``Ready.compact_to``);
        ``keep_entries`` keeps fewer than that (a shell bounding the kept tail in bytes).
        """
        if meta.index > self.log.applied:
            raise ValueError(f"snapshot at {meta.index} is past the applied index "
                             f"{self.log.applied}")
        if self.snapshot_meta is None or meta.index > self.snapshot_meta.index:
            self.snapshot_meta = meta
        keep = self.cfg.compact_keep_entries
        if keep_entries is not None:
            keep = max(0, min(keep, keep_entries))
        to = meta.index - keep
        if to >= self.log.first_index:
            self.log.compact(to)
            self.membership.on_compacted(to)
            self.pending_compact = to

    def report_snapshot(self, peer: int, success: bool) -> None:
        """The stream of our snapshot to ``peer`` finished (or failed: probe it again).

        The shell must report the outcome of every SNAPSHOT message it was given, once: the
        follower's progress waits in SNAPSHOT state until it does.
        """
        _leader.report_snapshot(self, peer, success)

    def _check_can_propose(self) -> None:
        if self.role != Role.LEADER:
            raise NotLeader(self.leader_id or None)
        if self.lead_transferee:
            raise ProposalDropped(f"leadership transfer to node {self.lead_transferee} in progress")

    # -- output ----------------------------------------------------------------------------
    def commit_flush_due(self) -> bool:
        """May the leader send appends that only carry a new commit index now?"""
        return self._commit_tick or not self.cfg.commit_on_tick

    def commit_flushed(self) -> None:
        """Commit-only appends went out; with ``commit_on_tick`` the next wait for a tick."""
        self._commit_tick = False

    def has_ready(self) -> bool:
        """True when ``ready()`` would have something for the shell to do."""
        lg = self.log
        if self.out or self.reads.rounds.round_due():
            return True
        if lg.handed_to < lg.last_index or lg.has_next_committed():
            return True
        if (self.term, self.vote, lg.committed) != self._prev_hard:
            return True
        if (self.leader_id, self.role, self.term) != self._prev_soft:
            return True
        if self.role == Role.LEADER and _leader.commit_to_send(self):
            return True
        if self.pending_snapshot is not None or self.pending_compact:
            return True
        if self.tracker.config is not self._prev_conf:
            return True
        return self.reads.has_ready(lg.applied)

    def ready(self) -> Ready:
        """Everything to do now, as one Ready (see ``Ready`` for the order)."""
        if self._outstanding is not None:
            raise RuntimeError("advance() the previous Ready before asking for another")
        if self.role == Role.LEADER:
            _leader.flush_leader(self)
        elif self.membership.has_changes:
            # Whether we may campaign also depends on the commit index (see promotable).
            self.become_follower_or_learner()
        lg = self.log
        rd = Ready(self._next_number)
        self._next_number += 1
        soft = (self.leader_id, self.role, self.term)
        if soft != self._prev_soft:
            rd.soft_state = SoftState(*soft)
            self._prev_soft = soft
        hard = (self.term, self.vote, lg.committed)
        if hard != self._prev_hard:
            rd.hard_state = HardState(*hard)
            self._prev_hard = hard
        if self.pending_snapshot is not None:
            rd.snapshot = self.pending_snapshot
            self.pending_snapshot = None
        if self.pending_compact:
            rd.compact_to = self.pending_compact
            self.pending_compact = 0
        if self.tracker.config is not self._prev_conf:
            self._prev_conf = self.tracker.config
            rd.conf_state = self._prev_conf.to_conf_state()
        ents = lg.unstable_to_hand_out()
        hs_term = rd.hard_state.term if rd.hard_state is not None else -1
        if ents:
            rd.entries = ents
            last = ents[-1]
            lg.handed_out(last.index)
            self._persist_marks.append((rd.number, last.index, last.term, hs_term))
        elif rd.hard_state is not None or rd.snapshot is not None:
            self._persist_marks.append((rd.number, 0, 0, hs_term))
        applying = lg.applied
        if lg.has_next_committed():
            rd.committed_entries = lg.next_committed(self.cfg.max_committed_bytes_per_ready)
            applying = rd.committed_entries[-1].index
        rd.read_states = self.reads.take(applying)
        now, after, rd.dropped = self.out.take()
        if after and not self._persist_marks:
            # Nothing of this or an earlier Ready waits for an fsync: acks may leave at once.
            now, after = now + after, []
        rd.messages, rd.persisted_messages = now, after
        self._outstanding = rd
        return rd

    def on_persisted(self, number: int) -> None:
        """The shell made every Ready numbered ``<= number`` durable."""
        if number <= self._persisted_number:
            return
        if number >= self._next_number:
            raise InvariantViolation(
                f"Ready {number} reported durable, but the last one handed out is "
                f"{self._next_number - 1}")
        self._persisted_number = number
        marks = self._persist_marks
        while marks and marks[0][0] <= number:
            _, index, term, hs_term = marks.pop(0)
            if index:
                self.log.stable_to(index, term)
            if hs_term >= 0:
                self.out.term_durable(hs_term)
        if self.role == Role.LEADER:
            _leader.self_persisted(self)

    def advance(self, ready: Ready) -> None:
        """The shell finished ``ready``: its committed entries are applied (or applying)."""
        if ready is not self._outstanding:
            raise RuntimeError(f"advance() got Ready {ready.number}, not the outstanding one")
        self._outstanding = None
        if ready.committed_entries:
            self.log.applied_to(ready.committed_entries[-1].index)

    # -- role changes (used by the handlers) -----------------------------------------------
    def _reset(self, term: int) -> None:
        if term < self.term:
            raise InvariantViolation(f"term would go back from {self.term} to {term}")
        self.reads.fail_forwarded()
        if term != self.term:
            self.term = term
            self.vote = 0
        self.leader_id = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.cfg.election_ticks + self.rng.randrange(
            self.cfg.election_ticks
        )
        self.tracker.votes.clear()
        self.lead_transferee = 0
        self.reads.new_leadership()

    def become_follower(self, term: int, leader_id: int) -> None:
        was_leader = self.role == Role.LEADER
        if was_leader:
            _leader.fail_pending_reads(self)
        self._reset(term)
        self.leader_id = leader_id
        self.role = Role.FOLLOWER if self.promotable else Role.LEARNER
        if was_leader:
            self.log_role()

    # -- state changes the handlers ask for -------------------------------------------------
    def grant_vote(self, candidate: int) -> None:
        """Vote for ``candidate`` this term (durable before the answer leaves: the outbox)."""
        self.vote = candidate
        self.election_elapsed = 0

    def keep_lease_promise(self) -> None:
        """We took a newer term from a message that is not a leader's while in our lease (we
        heard a leader, or restarted, less than an election timeout ago): keep refusing
        votes until an election timeout passes, as the restart guard does."""
        self.restart_guard = True

    def heard_from_leader(self, leader_id: int) -> None:
        """A leader of our term spoke: follow it, and its election timeout starts over."""
        if self.role in (Role.PRE_CANDIDATE, Role.CANDIDATE):
            self.become_follower(self.term, leader_id)
        self.election_elapsed = 0
        self.leader_id = leader_id

    def rewritten_from(self, first: int) -> None:
        """The log from ``first`` on was replaced (a follower's conflict resolution).

        A Ready handed out earlier may still be on its way to disk with entries at or after
        ``first``: a later Ready overwrites them there. Its durability must then vouch only for
        what lies before ``first``, or an entry overwritten twice back to the same (index,
        term) -- 1@3, 1@4, 1@3 -- would be marked stable while the disk holds 1@4 (the ABA
        schedule etcd-io/raft documents).
        """
        lg = self.log
        self._persist_marks = [
            (n, index, term, hs) if index < first else (n, first - 1, lg.term(first - 1), hs)
            for n, index, term, hs in self._persist_marks
        ]
        self.membership.on_truncated(first - 1)

    def restore(self, meta: SnapshotMeta) -> None:
        """Replace the whole log by the leader's snapshot; the next Ready installs it."""
        self._persist_marks = [(n, 0, 0, hs) for n, _, _, hs in self._persist_marks]
        self.log.restore(meta)
        self.pending_snapshot = meta
        self.snapshot_meta = meta
        self.membership.reset(meta.index, QuorumConfig.from_conf_state(meta.conf_state))

    def start_transfer(self, target: int) -> None:
        """Leader: hand leadership to ``target`` within an election timeout."""
        self.lead_transferee = target
        self.election_elapsed = 0

    def become_follower_or_learner(self) -> None:
        """A follower whose config no longer lets it campaign is a learner, and back (thesis
        §4.2.2); nothing else changes (term, leader, timers). Other roles are left alone."""
        if self.role in (Role.FOLLOWER, Role.LEARNER):
            self.role = Role.FOLLOWER if self.promotable else Role.LEARNER

    def install_config(self, cfg: QuorumConfig) -> None:
        """The config in force changed (``Membership`` calls this): track its members; a
        follower may become a learner, a candidate that may no longer campaign a follower."""
        tracker = self.tracker
        if tracker.config == cfg:
            return
        lg = self.log
        tracker.set_config(cfg, next_index=lg.last_index + 1)
        me = tracker.progress.get(self.id)
        if self.role == Role.LEADER and me is not None:
            me.raise_match(lg.persisted_index)
        if self.role in (Role.PRE_CANDIDATE, Role.CANDIDATE) and not self.promotable:
            self.become_follower(self.term, 0)
        else:
            self.become_follower_or_learner()

    def become_pre_candidate(self) -> None:
        # Pre-vote does not change the term or the vote (thesis §9.6).
        self.reads.fail_forwarded()
        self.tracker.votes.clear()
        self.leader_id = 0
        self.role = Role.PRE_CANDIDATE

    def become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def become_leader(self) -> None:
        self._reset(self.term)
        self.leader_id = self.id
        self.role = Role.LEADER
        self.reads.on_become_leader()
        lg = self.log
        self.tracker.reset_all(lg.last_index, self.id)
        me = self.tracker.progress.get(self.id)
        if me is not None:
            me.raise_match(lg.persisted_index)
            me.become_replicate()
        self.membership.mark_pending(lg.last_index)
        # The no-op entry of the new term (Raft §8): commits the previous terms' entries.
        _leader.append_entries(self, (b"",), 0)
        self.log_role()

    def log_role(self) -> None:
        """Log the role this node plays now (at info: role changes are rare)."""
        if self.logger is not None:
            self.logger.info("role changed", node_id=self.id, term=self.term, role=self.role.name)

    # -- output (used by the handlers) -----------------------------------------------------
    def send_to(self, peer: int, type: MessageType, **fields: Any) -> None:
        """Send ``peer`` a message of ``type`` from us, at our term unless ``term=`` is given;
        the outbox decides whether it waits for the fsync."""
        fields.setdefault("term", self.term)
        self.out.send(Message(type, peer, self.id, **fields))

    def reply(self, m: Message, type: MessageType, **fields: Any) -> None:
        """Answer ``m``'s sender (see ``send_to``)."""
        self.send_to(m.from_, type, **fields)

    def local(self, type: MessageType) -> Message:
        """A local message (HUP, BEAT, CHECK_QUORUM) to step ourselves."""
        return Message(type, to=self.id, from_=self.id)

    def entries_for_test(self) -> list[Entry]:
        """The whole held log (persisted and not); for tests and traces."""
        return self.log.entries(self.log.first_index, self.log.last_index + 1)
