"""The simulator's clients and the KV state machine each simulated node applies.

Clients run one operation at a time each: writes (put, delete, compare-and-set) proposed at the
node they believe leads, linearizable reads through ReadIndex, lease reads, and stale
(serializable) reads served from one node's state machine. Writes and linearizable/lease reads
go into a :class:`~dengine.testing.linearizability.History`; stale reads are checked on their
own: the value was written by some committed entry, and one node's stale reads of a key never go
backwards.

A write is acknowledged when the node it was proposed at applies the entry at the index and term
``propose`` gave (index and term name one entry, by log matching); a different entry applied
there means it was definitely dropped. A node crash or a timeout leaves the outcome unknown.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from dengine._core import codec
from dengine.errors import DengineError
from dengine.raft.ready import ReadState
from dengine.raft.types import Entry, EntryKind
from dengine.testing.linearizability import History, OpKind
from dengine.testing.sim_checks import InvariantBroken

__all__ = ["KVMachine", "Pending", "Workload", "READ_KINDS"]

#: Read kinds: through ReadIndex, through the leader lease, from any node's local state.
READ_KINDS = ("get", "get_lease", "get_stale")


class KVMachine:
    """A node's state machine: key -> (value, index of the entry that last changed it);
    a deleted key keeps its entry with value None, so reads can tell old from new."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: dict[bytes, tuple[bytes | None, int]] = {}

    def apply(self, e: Entry) -> object:
        """Apply one committed entry; the result a client sees (CAS: whether it hit)."""
        if e.kind != EntryKind.NORMAL or not e.data:
            return None
        cmd = codec.decode_command(e.data)
        op, key = cmd[0], cmd[1]
        if op == codec.OP_PUT:
            self.data[key] = (cmd[2], e.index)
        elif op == codec.OP_DELETE:
            self.data[key] = (None, e.index)
        elif op == codec.OP_CAS:
            cur = self.data.get(key)
            hit = cur is not None and cur[0] is not None and cur[0] == cmd[2]
            if hit:
                self.data[key] = (cmd[4], e.index)
            return hit
        return None

    def get(self, key: bytes) -> tuple[bytes | None, int]:
        return self.data.get(key, (None, 0))


@dataclass(slots=True)
class Pending:
    op_id: int
    client: int
    kind: str
    key: bytes
    node: int
    deadline: int
    value: bytes | None = None
    index: int = 0
    term: int = 0
    data: bytes = b""
    context: bytes = b""
    #: The term of the node when the operation started there.
    node_term: int = 0
    #: Reads: the highest commit index any node had when the read began (its lowest answer).
    floor: int = 0


class Workload:
    """Clients issuing operations against the simulated cluster (see the module docstring)."""

    def __init__(self, rng: random.Random, clients: int, keys: int, op_timeout: int) -> None:
        self.rng = rng
        self.clients = clients
        self.keys = [b"k%d" % i for i in range(keys)]
        self.op_timeout = op_timeout
        self.history = History()
        self.now = 0.0  # the simulator's time in ticks, for the history
        self.busy: dict[int, Pending] = {}
        self.leader_hint: dict[int, int] = {}
        self.writes_at: dict[int, dict[int, Pending]] = {}  # node -> index -> pending write
        self.reads_at: dict[int, dict[bytes, Pending]] = {}  # node -> context -> pending read
        self.seq = 0
        self.stale_seen: dict[tuple[int, bytes], int] = {}
        self.written: dict[bytes, set[bytes]] = {}  # key -> values some committed entry wrote
        self.counts = {"ok": 0, "failed": 0, "unknown": 0, "stale": 0}
        self.enabled = True
        #: A deliberate bug for tests: linearizable reads served from the local state machine
        #: at once, skipping ReadIndex. The linearizability check must catch it.
        self.local_reads = False
        #: (node, context) -> floor of the probe reads in flight (``probe``).
        self.probes: dict[tuple[int, bytes], int] = {}
        #: Until this tick (``sim_faults.quiet``) clients only read: the log stops growing,
        #: so a node cut from the leader stays as up to date as the others.
        self.quiet_until = 0.0
        #: Clients that appeared for one write (``burst``), numbered after the regular ones.
        self.extra_clients = 0

    def _t(self) -> float:
        """History time: the simulator's tick, made strictly increasing by a counter (the
        order events happen in is their real-time order)."""
        return self.now + self.history.now() * 1e-7

    # -- issuing ------------------------------------------------------------------------------
    def step(self, sim, now: int) -> None:  # noqa: ANN001 (the Simulator; a cycle otherwise)
        """Each idle client may start one operation; timed-out ones are given up."""
        for p in [p for p in self.busy.values() if now >= p.deadline]:
            self.close_unknown(p)
        for c in range(self.clients):
            if c in self.busy or not self.enabled or self.rng.random() < 0.5:
                continue
            self._issue(sim, c, now)

    def burst(self, sim, node: int, n: int) -> None:  # noqa: ANN001
        """``n`` writes at ``node`` from clients that appear for one write each (a burst of
        traffic that a fault times, e.g. at a leader about to be cut off)."""
        for _ in range(n):
            self.extra_clients += 1
            self._issue(sim, self.clients + self.extra_clients, sim.now, node=node, kind="put")

    def _pick_node(self, sim, c: int) -> int:  # noqa: ANN001
        up = sim.client_nodes()
        hint = self.leader_hint.get(c, 0)
        if hint in up and self.rng.random() < 0.85:
            return hint
        return self.rng.choice(up) if up else 0

    def _issue(self, sim, c: int, now: int, node: int = 0,  # noqa: ANN001
               kind: str = "") -> None:
        node = node or self._pick_node(sim, c)
        if not node:
            return
        r = self.rng.random()
        key = self.rng.choice(self.keys)
        forced = bool(kind)
        kind = kind or (
            "put"
            if r < 0.35
            else "cas"
            if r < 0.45
            else "delete"
            if r < 0.5
            else "get"
            if r < 0.72
            else "get_lease"
            if r < 0.88
            else "get_stale"
        )
        if self.now < self.quiet_until and kind in ("put", "cas", "delete") and not forced:
            kind = "get"
        self.seq += 1
        if kind == "get_stale":
            self._stale_read(sim, node, key)
            return
        op_kind, value, expected, data = self._command(kind, key, c)
        op_id = self.history.invoke(c, op_kind, key, value=value, expected=expected, time=self._t())
        p = Pending(op_id, c, kind, key, node, now + self.op_timeout, value=value, data=data)
        core = sim.nodes[node].core
        p.node_term = core.term
        p.floor = sim.contract.max_commit
        if self.local_reads and kind.startswith("get"):
            self.history.ok(op_id, sim.nodes[node].sm.get(key)[0], time=self._t())
            return
        try:
            if kind.startswith("get"):
                p.context = b"r%d" % self.seq
                core.read_index(p.context, lease=kind == "get_lease")
                self.reads_at.setdefault(node, {})[p.context] = p
            else:
                p.index = core.propose(data)
                p.term = core.term
                self.writes_at.setdefault(node, {})[p.index] = p
        except DengineError as e:
            self.history.failed(op_id)
            self.counts["failed"] += 1
            leader = getattr(e, "leader_id", None)
            self.leader_hint[c] = leader or self.rng.choice(sim.ids)
            sim.trace_note(f"client {c} {kind} at node {node}: {type(e).__name__}")
            return
        self.busy[c] = p
        sim.trace_note(
            f"client {c} {kind} {key.decode()} at node {node}"
            + (f" -> index {p.index}@{p.term}" if p.index else "")
        )
        sim.process(node)

    def _command(self, kind: str, key: bytes, c: int):  # noqa: ANN202
        if kind == "put":
            value = b"v%d.%d" % (c, self.seq)
            return OpKind.PUT, value, None, codec.encode_put(key, value)
        if kind == "delete":
            return OpKind.DELETE, None, None, codec.encode_delete(key)
        if kind == "cas":
            seen = sorted(self.written.get(key, ()))
            expected = self.rng.choice(seen) if seen else b"none"
            value = b"c%d.%d" % (c, self.seq)
            return OpKind.CAS, value, expected, codec.encode_cas(key, expected, None, value)
        return OpKind.GET, None, None, b""

    def _stale_read(self, sim, node: int, key: bytes) -> None:  # noqa: ANN001
        value, index = sim.nodes[node].sm.get(key)
        self.counts["stale"] += 1
        if value is not None and value not in self.written.get(key, ()):
            raise InvariantBroken(
                f"stale read of {key!r} at node {node} returned {value!r}, never written"
            )
        last = self.stale_seen.get((node, key), 0)
        if index < last:
            raise InvariantBroken(
                f"stale reads of {key!r} at node {node} go back: index {index} after {last}"
            )
        self.stale_seen[(node, key)] = index

    # -- outcomes -----------------------------------------------------------------------------
    def on_apply(self, node: int, e: Entry, result: object) -> Entry | None:
        """A node applied ``e``: resolve the write proposed there at that index.
        Returns the entry when it acknowledges a write."""
        if e.kind == EntryKind.NORMAL and e.data:
            cmd = codec.decode_command(e.data)
            if cmd[0] == codec.OP_PUT:
                self.written.setdefault(cmd[1], set()).add(cmd[2])
            elif cmd[0] == codec.OP_CAS and result and cmd[4] is not None:
                self.written.setdefault(cmd[1], set()).add(cmd[4])
        waiting = self.writes_at.get(node)
        if not waiting:
            return None
        p = waiting.pop(e.index, None)
        if p is None or self.busy.get(p.client) is not p:
            return None
        del self.busy[p.client]
        if e.term == p.term and e.data == p.data:
            self.history.ok(p.op_id, result if p.kind == "cas" else None, time=self._t())
            self.counts["ok"] += 1
            self.leader_hint[p.client] = node
            return e
        self.history.failed(p.op_id)
        self.counts["failed"] += 1
        return None

    def probe(self, sim, node: int, lease: bool) -> None:  # noqa: ANN001
        """A read no client waits for, checked only against its floor (``Pending.floor``)."""
        self.seq += 1
        context = b"p%d" % self.seq
        try:
            sim.nodes[node].core.read_index(context, lease=lease)
        except DengineError:
            return
        self.probes[(node, context)] = sim.contract.max_commit

    def _check_floor(self, node: int, rs: ReadState, floor: int) -> None:
        if not rs.failed and rs.index < floor:
            raise InvariantBroken(
                f"stale read: read {rs.context!r} at node {node} is answered at index "
                f"{rs.index}, but {floor} was committed before it began")

    def on_read_state(self, sim, node: int, rs: ReadState) -> None:  # noqa: ANN001
        """A read is safe to serve at ``node`` (its state machine has applied ``rs.index``)."""
        floor = self.probes.pop((node, rs.context), None)
        if floor is not None:
            self._check_floor(node, rs, floor)
            return
        p = self.reads_at.get(node, {}).pop(rs.context, None)
        if p is None or self.busy.get(p.client) is not p:
            return
        del self.busy[p.client]
        n = sim.nodes[node]
        self._check_floor(node, rs, p.floor)
        if rs.failed:
            self.history.failed(p.op_id)
            self.counts["failed"] += 1
            return
        if n.sm_applied < rs.index:
            raise InvariantBroken(
                f"read {rs.context!r} released at node {node} with applied index "
                f"{n.sm_applied} below its read index {rs.index}"
            )
        self.history.ok(p.op_id, n.sm.get(p.key)[0], time=self._t())
        self.counts["ok"] += 1
        self.leader_hint[p.client] = node

    def on_snapshot(self, node: int, index: int) -> None:
        """A snapshot replaced ``node``'s state up to ``index``: writes waiting there for
        entries it covers will never be seen applied one by one: outcome unknown."""
        waiting = self.writes_at.get(node, {})
        for i in sorted(waiting):
            if i <= index:
                p = waiting.pop(i)
                if self.busy.get(p.client) is p:
                    self.close_unknown(p)

    def on_crash(self, node: int) -> None:
        """Operations waiting on a crashed node: outcome unknown."""
        for key in [k for k in self.probes if k[0] == node]:
            del self.probes[key]
        for table in (self.writes_at.pop(node, {}), self.reads_at.pop(node, {})):
            for p in table.values():
                if self.busy.get(p.client) is p:
                    self.close_unknown(p)

    def close_unknown(self, p: Pending) -> None:
        del self.busy[p.client]
        self.writes_at.get(p.node, {}).pop(p.index, None)
        self.reads_at.get(p.node, {}).pop(p.context, None)
        self.history.unknown(p.op_id)
        self.counts["unknown"] += 1
        self.leader_hint.pop(p.client, None)

    def open_ops(self) -> list[Pending]:
        return list(self.busy.values())
