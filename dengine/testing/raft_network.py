"""A synchronous network of RaftCores for scenario tests: deliver until quiet, cut, heal.

Each node is a :class:`Peer`: a core, a :class:`~dengine.raft.log.MemoryStorage` playing the
LogStore, its saved hard state, and the list of entries it applied. ``Network.process`` drives
one node through a full Ready cycle with the shells' one driver (``raft.driver``); ``deliver``
runs every node and delivers every message until nothing moves. Faults: ``cut(a, b)`` (both
ways), ``cut_one_way``, ``isolate``, ``heal``, ``drop_types``; ``hook(msg)`` sees every message
before delivery and may drop or rewrite it.
``crash``/``restart`` rebuild a core from what it persisted only.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dengine.raft.config import RaftConfig
from dengine.raft.core import RaftCore
from dengine.raft.describe import describe_message
from dengine.raft.driver import PERSIST_LATER, PersistLater, drive_ready, on_durable, run_now
from dengine.raft.log import MemoryStorage
from dengine.raft.messages import Message, MessageType
from dengine.raft.ready import Dropped, ReadState, Ready, Role
from dengine.raft.types import ConfState, Entry, HardState, SnapshotMeta

__all__ = ["Network", "Peer"]


@dataclass
class Peer:
    core: RaftCore
    storage: MemoryStorage
    hard_state: HardState = field(default_factory=HardState)
    applied: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    #: When False, the node stops calling on_persisted (its fsync "hangs").
    persist: bool = True
    #: The latest snapshot this node took or installed, and its data (applied entries).
    snapshot: SnapshotMeta | None = None
    snapshot_data: list[Entry] = field(default_factory=list)
    #: The data of a snapshot being received (the transport's stream, done at once here).
    incoming: list[Entry] = field(default_factory=list)
    #: The config it was first started with (None: the cluster's initial config).
    boot_conf: ConfState | None = None


class Network:
    """2-7 cores joined by a synchronous, loss-free (unless told otherwise) network."""

    def __init__(
        self,
        ids: Iterable[int] = (1, 2, 3),
        config: RaftConfig | None = None,
        seed: int = 0,
        learners: Iterable[int] = (),
    ) -> None:
        self.ids = sorted(ids)
        self.config = config or RaftConfig()
        self.seed = seed
        self.conf = ConfState(
            voters=frozenset(self.ids) - frozenset(learners), learners=frozenset(learners)
        )
        self.peers: dict[int, Peer] = {}
        self.queue: deque[Message] = deque()
        self.cuts: set[tuple[int, int]] = set()
        self.dropped_types: set[MessageType] = set()
        #: Sees every message sent: False drops it, a Message replaces it, True delivers it.
        self.hook: Callable[[Message], bool | Message] | None = None
        self.trace: list[str] = []
        self.delivered = 0
        #: Ready numbers and persisted messages of nodes whose fsync is held.
        self.held: list[tuple[int, int, list[Message]]] = []
        #: Crashed nodes: not run, not ticked, not counted as leaders.
        self.down: set[int] = set()
        for i in self.ids:
            self.peers[i] = self._new_peer(i, MemoryStorage(), HardState(), 0)

    def _new_peer(
        self,
        i: int,
        storage: MemoryStorage,
        hs: HardState,
        applied: int,
        conf: ConfState | None = None,
        snapshot: SnapshotMeta | None = None,
    ) -> Peer:
        rng = random.Random(self.seed * 1000 + i)
        if storage.snapshot.index:
            conf = storage.snapshot.conf_state
        core = RaftCore(
            i,
            self.config,
            rng,
            conf_state=conf or self.conf,
            storage=storage,
            hard_state=hs,
            applied_index=applied,
            snapshot=snapshot,
        )
        return Peer(core, storage, hs)

    def add_node(self, i: int) -> None:
        """A new node with an empty log, started (like every node) with the cluster's initial
        config: it is not a member of it, so it waits, and it learns the config in force from
        the log (the changes replayed over the initial config) or from a snapshot."""
        self.ids = sorted({*self.ids, i})
        self.peers[i] = self._new_peer(i, MemoryStorage(), HardState(), 0)

    def take_snapshot(self, i: int) -> SnapshotMeta:
        """Node ``i``'s state machine snapshots its applied state; the core may compact."""
        p = self.peers[i]
        core = p.core
        index = core.applied_index
        meta = SnapshotMeta(index, core.log.term(index), core.conf_state_at(index))
        p.snapshot = meta
        p.snapshot_data = [e for e in p.applied if e.index <= index]
        core.on_snapshot_taken(meta)
        return meta

    # -- access ----------------------------------------------------------------------------
    def core(self, i: int) -> RaftCore:
        return self.peers[i].core

    def leader(self) -> int:
        """The id of the leader with the highest term, or 0."""
        best, term = 0, -1
        for i, p in self.peers.items():
            if i in self.down:
                continue
            if p.core.role == Role.LEADER and p.core.term > term:
                best, term = i, p.core.term
        return best

    def applied_data(self, i: int) -> list[bytes]:
        """Payloads of the commands node ``i`` applied (no-ops and config changes left out)."""
        return [e.data for e in self.peers[i].applied if e.data and e.kind == 0]

    # -- faults ----------------------------------------------------------------------------
    def cut(self, a: int, b: int) -> None:
        self.cuts.add((a, b))
        self.cuts.add((b, a))

    def cut_one_way(self, src: int, dst: int) -> None:
        self.cuts.add((src, dst))

    def isolate(self, i: int) -> None:
        for j in self.ids:
            if j != i:
                self.cut(i, j)

    def heal(self) -> None:
        self.cuts.clear()
        self.dropped_types.clear()
        self.hook = None

    def drop_types(self, *types: MessageType) -> None:
        self.dropped_types.update(types)

    # -- driving ---------------------------------------------------------------------------
    def send(self, msgs: Iterable[Message]) -> None:
        for m in msgs:
            if (
                (m.from_, m.to) in self.cuts
                or m.type in self.dropped_types
                or m.to in self.down
                or m.from_ in self.down
            ):
                if m.type == MessageType.SNAPSHOT:
                    self.peers[m.from_].core.report_snapshot(m.to, False)
                continue
            if self.hook is not None:
                verdict = self.hook(m)
                if not verdict:
                    continue
                if isinstance(verdict, Message):
                    m = verdict  # the hook rewrote the message
            if m.to in self.peers:
                self.queue.append(m)

    def process(self, i: int) -> bool:
        """One Ready cycle of node ``i``, through the shells' one driver; False when it had
        nothing."""
        p = self.peers[i]
        core = p.core
        if i in self.down or not core.has_ready():
            return False
        run_now(drive_ready(core, core.ready(), _PeerIO(self, i)))
        return True

    def release_persist(self, i: int) -> None:
        """Let a node whose fsync was held (``persist = False``) finish it now."""
        p = self.peers[i]
        p.persist = True
        for _, number, msgs in [h for h in self.held if h[0] == i]:
            on_durable(p.core, number, msgs, _PeerIO(self, i))
        self.held = [h for h in self.held if h[0] != i]

    def snapshot_data(self, m: Message) -> list[Entry]:
        """The data streamed with a SNAPSHOT message: the sender's state at its index."""
        assert m.snapshot is not None
        return [e for e in self.peers[m.from_].snapshot_data if e.index <= m.snapshot.index]

    def deliver_snapshot(self, m: Message) -> None:
        """The data streams with the message; the sender hears the stream succeeded."""
        self.peers[m.to].incoming = self.snapshot_data(m)
        self.peers[m.to].core.step(m)
        self.peers[m.from_].core.report_snapshot(m.to, True)

    def step_one(self) -> bool:
        """Deliver one queued message (after running every node's Ready); False when quiet."""
        moved = False
        for i in self.ids:
            moved |= self.process(i)
        if self.queue:
            m = self.queue.popleft()
            self.trace.append(describe_message(m))
            self.delivered += 1
            if m.type == MessageType.SNAPSHOT:
                self.deliver_snapshot(m)
                return True
            self.peers[m.to].core.step(m)
            return True
        return moved

    def deliver(self, max_steps: int = 100_000) -> int:
        """Run nodes and deliver messages until nothing moves; returns messages delivered."""
        start = self.delivered
        for _ in range(max_steps):
            if not self.step_one():
                return self.delivered - start
        raise RuntimeError("the network did not go quiet; a message loop?")

    def tick(self, ids: Iterable[int] | None = None, n: int = 1, deliver: bool = True) -> None:
        """Tick the given nodes (all by default) ``n`` times, delivering after each."""
        for _ in range(n):
            for i in ids if ids is not None else self.ids:
                if i not in self.down:
                    self.peers[i].core.tick()
            if deliver:
                self.deliver()

    def elect(self, i: int) -> None:
        """Make node ``i`` campaign and deliver until quiet; it should then lead."""
        self.core(i).campaign()
        self.deliver()

    def propose(self, i: int, *payloads: bytes) -> int:
        last = self.core(i).propose_batch(payloads)
        self.deliver()
        return last

    def preload(self, i: int, terms: Iterable[int], term: int) -> None:
        """Give node ``i`` a persisted log with these entry terms (index 1, 2, ...) and a
        current ``term``, as if it restarted with them: for the paper's figure 7 and 8."""
        storage = MemoryStorage()
        storage.append([Entry(t, k + 1, 0, b"") for k, t in enumerate(terms)])
        self.peers[i] = self._new_peer(i, storage, HardState(term=term), 0)
        # The figures show nodes that have been up for a while: past the election timeout
        # during which a restarted node refuses votes (RaftCore.restart_guard).
        self.peers[i].core.end_restart_guard()

    # -- crash and restart -----------------------------------------------------------------
    def crash(self, i: int) -> None:
        """Node ``i`` stops (keeping only what it persisted); messages to and from it are lost
        until ``restart``."""
        for m in self.queue:
            if m.to == i and m.type == MessageType.SNAPSHOT:
                self.peers[m.from_].core.report_snapshot(i, False)  # the stream broke
        self.queue = deque(m for m in self.queue if m.to != i and m.from_ != i)
        self.down.add(i)

    def restart(self, i: int) -> None:
        """Rebuild node ``i`` from its persisted log and hard state (applied state kept)."""
        old = self.peers[i]
        applied = old.applied[-1].index if old.applied else 0
        fresh = self._new_peer(
            i, old.storage, old.hard_state, applied, conf=old.boot_conf, snapshot=old.snapshot
        )
        fresh.boot_conf = old.boot_conf
        fresh.applied = old.applied
        fresh.snapshot, fresh.snapshot_data = old.snapshot, old.snapshot_data
        self.peers[i] = fresh
        self.down.discard(i)

    def silence(self, *ids: int) -> None:
        """Let an election timeout pass on these nodes without a word from the leader (their
        stickiness ends) without ticking them, which could start elections of their own."""
        for i in ids:
            self.peers[i].core.let_election_timeout_pass()


class _PeerIO:
    """The I/O steps of one peer's shell (``MemoryStorage`` as its LogStore)."""

    def __init__(self, net: Network, i: int) -> None:
        self.net = net
        self.peer = net.peers[i]
        self.i = i

    def install_snapshot(self, meta: SnapshotMeta) -> None:
        p = self.peer
        p.storage.apply_snapshot(meta)
        p.snapshot = meta
        p.snapshot_data = [e for e in p.incoming if e.index <= meta.index]
        p.applied = list(p.snapshot_data)

    def observe(self, rd: Ready) -> None:
        self.peer.dropped.extend(rd.dropped)

    def reconnect(self, conf_state: ConfState) -> None:
        return None  # every peer is reachable on this network

    def send(self, messages: list[Message]) -> None:
        self.net.send(messages)

    def persist(self, rd: Ready) -> PersistLater | None:
        p = self.peer
        p.storage.append(rd.entries)
        if rd.hard_state is not None:
            p.hard_state = rd.hard_state
        if p.persist:
            return None
        self.net.held.append((self.i, rd.number, rd.persisted_messages))
        return PERSIST_LATER  # the fsync "hangs" until release_persist

    def apply(self, entries: list[Entry], read_states: list[ReadState]) -> None:
        self.peer.applied.extend(entries)
        self.peer.read_states.extend(read_states)

    def compact(self, index: int, conf_state: ConfState) -> None:
        self.peer.storage.compact(index, conf_state)
