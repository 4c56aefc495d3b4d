"""Faults timed by the cluster's own state: late copies of old messages, and reactions armed by
the fault schedule that fire when a node starts a campaign while another still leads.

Late copies
-----------
Raft assumes a network that may delay, duplicate and reorder any message. The network
profiles do that within a fraction of a tick; :class:`LateCopies` adds the long tail: while
it is on (the ``late_copies`` fault toggles it), copies of messages sent to a node in the last
few election timeouts arrive there again -- one now and then at its ticks, and a small burst
when the node changes role or term, the moment at which an old answer is most misleading (a
vote answer of an earlier election reaching a candidate, a heartbeat answer of an earlier
round reaching a leader that lost its quorum). A copy was already on its way: a cut made
after it was sent does not stop it. The message type is drawn first, uniformly over the types
the node was sent, so rare types (vote answers, TIMEOUT_NOW) come back as often as append
answers. A leader's own traffic is not copied (``_NOT_COPIED`` says why).

Campaign reactions
------------------
The ``lease_window`` fault (and ``cut_from_leader``) arms a reaction for a while: the first
time a voter starts a campaign (pre-vote or vote) while another node leads, and the log rule
alone would not stop it (a quorum's logs are no more up to date than the campaigner's),
every link towards that leader is cut one way (it goes on sending and serving, and hears
nothing that would depose it), its reads are probed, and, drawn by the seed, a quorum minus
one of its followers crash and restart at once behind a cut from it (they acked its lease a
moment ago, and hear nothing from it after). The
leader's lease must then stay safe by the rules that protect it: leader stickiness, the
restart guard, voiding the lease when a transfer starts, reads counted only for their round.

Newer terms inside a lease
--------------------------
The ``newer_term`` fault (on runs with a voter without pre-vote) arms :class:`NewerTerm`: it
brings a term newer than the leader's to the followers that hold the leader's lease, through
answers to their own old messages, and hides it from the leader: a follower whose acks hold
a lease comes to a newer term without a vote request, the case the lease's last two rules
(dropping a stale vote answer, keeping the lease promise) are for.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from dengine.raft.messages import Message, MessageType
from dengine.raft.ready import Role
from dengine.testing import sim_faults

if TYPE_CHECKING:
    from dengine.testing.sim import Simulator

__all__ = ["CampaignReaction", "LateCopies", "NewerTerm", "Split"]

#: How far back (ticks) a late copy may come from, and how many are kept per node.
HORIZON_TICKS = 40
KEEP = 96
_CAMPAIGNING = (Role.PRE_CANDIDATE, Role.CANDIDATE)
#: A leader's traffic is not copied late: copies of its heartbeats reaching followers across
#: a partition would reset their election timers for as long as they came (no election, a
#: denial of service rather than a test of the rules), and a snapshot is a stream.
_NOT_COPIED = frozenset({MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT})


class LateCopies:
    """The network's long tail of delays (see the module docstring)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.on = False
        self.sent: dict[int, deque[tuple[int, Message]]] = {}
        self._state: dict[int, tuple[Role, int]] = {}
        self.delivered = 0

    def record(self, m: Message) -> None:
        if m.type not in _NOT_COPIED:
            q = self.sent.get(m.to)
            if q is None:
                q = self.sent[m.to] = deque(maxlen=KEEP)
            q.append((self.sim.now, m))

    def on_tick(self, node: int) -> None:
        if self.on and self.sim.rng.random() < 0.3:
            self._send(node, 1)

    def on_state(self, node: int, role: Role, term: int) -> None:
        """After each event that touched ``node``: a burst when its role or term changed."""
        before = self._state.get(node)
        self._state[node] = (role, term)
        if self.on and before is not None and before != (role, term):
            self._send(node, self.sim.rng.randint(1, 3))

    def _send(self, node: int, k: int) -> None:
        sim = self.sim
        q = self.sent.get(node)
        if not q:
            return
        since = sim.now - HORIZON_TICKS * sim.TICK
        by_type: dict[MessageType, list[Message]] = {}
        for t, m in q:
            if t >= since:
                by_type.setdefault(m.type, []).append(m)
        if not by_type:
            return
        types = sorted(by_type)
        for _ in range(k):
            m = sim.rng.choice(by_type[sim.rng.choice(types)])
            self.delivered += 1
            sim.deliver_late(m, sim.now + sim.rng.randint(1, 30))


class CampaignReaction:
    """A reaction armed until a deadline, fired by the first campaign under a live leader."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.until = -1
        self.bounce = False

    def arm(self, ticks: int, bounce: bool) -> None:
        self.until = self.sim.now + ticks * self.sim.TICK
        self.bounce = bounce

    def check(self, touched: list[int]) -> str | None:
        """Called after an event with the nodes it touched; fires at most once per arming."""
        sim = self.sim
        if self.until < sim.now:
            return None
        for i in touched:
            n = sim.nodes[i]
            if n.up and n.core.role in _CAMPAIGNING:
                leader = sim.current_leader()
                if leader and leader != i and self._could_win(i, leader):
                    self.until = -1
                    return self._fire(i, leader)
        return None

    def _could_win(self, campaigner: int, leader: int) -> bool:
        """Whether the campaigner and the running voters other than the leader whose logs are
        no more up to date than its own make a quorum: a campaign the log rule alone would
        not stop (§5.4.1)."""
        sim = self.sim
        mine = sim.nodes[campaigner].core.log
        key = (mine.last_term, mine.last_index)
        cfg = sim.nodes[leader].core.tracker.config
        voters = sorted(cfg.voters)
        behind = 0
        for v in voters:
            n = sim.nodes.get(v)
            if v == campaigner or (n is not None and n.up and v != leader and (
                    n.core.log.last_term, n.core.log.last_index) <= key):
                behind += 1
        return 2 * behind > len(voters)

    def _fire(self, campaigner: int, leader: int) -> str:
        sim = self.sim
        sim_faults.deafen(sim, leader)
        sim.probe(leader, 30)
        line = f"node {campaigner} campaigns: leader {leader} hears no one"
        if self.bounce:
            cfg = sim.nodes[leader].core.tracker.config
            voters = sorted(cfg.all_voters() - {leader, campaigner})
            need = len(cfg.voters) // 2  # a quorum of the incoming half, less the campaigner
            up = [v for v in voters if v in sim.nodes and sim.nodes[v].up]
            chosen = sim.rng.sample(up, min(need, len(up)))
            for v in chosen:
                sim.crash(v)
                sim.restart(v)
                sim.cuts.add((leader, v))  # they come back behind a cut from the leader
            line += f", bounce {sorted(chosen)} (cut from the leader)"
        return line


class NewerTerm:
    """An adversary for the rules that keep a lease safe from newer terms, armed until a
    deadline (the ``newer_term`` fault arms it).

    While a leader's lease is valid and some other node holds a newer term, old messages that
    a follower inside that lease once sent the newer-term node arrive there again (the last
    one of each type on that link: a pre-vote, a forwarded read, an append of a term it led):
    the node answers each with its newer term. Whenever a follower inside the lease (it heard
    the leader less than an election timeout ago, so its acks may count) takes a newer term
    from a message, the leader stops hearing that follower (a one-way cut), the leader's
    reads are probed, and the vote requests of that term the follower refused a moment ago
    arrive again (duplicates). The follower must keep the promise its acks made -- refuse
    votes of that term until an election timeout passes -- whatever message brought the
    term, or a new leader commits inside the old one's lease.
    """

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.until = -1
        #: (from, to) -> the last message of each type sent on that link (snapshots aside).
        self.kept: dict[tuple[int, int], dict[MessageType, Message]] = {}
        #: node -> (term, leader it follows, whether it is inside that leader's lease) after
        #: the last event that touched it.
        self._seen: dict[int, tuple[int, int, bool]] = {}
        #: (node, term) pairs whose followers' old messages were already sent again.
        self._replayed: set[tuple[int, int]] = set()
        #: How many times a follower took a newer term inside a valid lease.
        self.taken = 0

    def arm(self, ticks: int) -> None:
        self.until = self.sim.now + ticks * self.sim.TICK

    def record(self, m: Message) -> None:
        if m.type != MessageType.SNAPSHOT:
            self.kept.setdefault((m.from_, m.to), {})[m.type] = m

    def check(self, touched: list[int]) -> str | None:
        sim = self.sim
        line = None
        armed = self.until >= sim.now
        for i in touched:
            n = sim.nodes[i]
            if not n.up:
                self._seen.pop(i, None)
                continue
            core = n.core
            before = self._seen.get(i)
            self._seen[i] = (core.term, core.leader_id,
                             core.leader_id != 0
                             and core.election_elapsed < core.cfg.election_ticks)
            if armed and not line and before is not None and core.term > before[0] \
                    and core.role not in _CAMPAIGNING:  # its own campaign: stickiness's
                line = self._took_term(i, *before)
        if armed and not line:
            line = self._replay()
        return line

    def _lease(self, leader: int, term: int) -> bool:
        ln = self.sim.nodes.get(leader)
        return ln is not None and ln.up and ln.core.is_leader and ln.core.term == term \
            and ln.core.lease_valid()

    def _took_term(self, i: int, old_term: int, leader: int, in_lease: bool) -> str | None:
        sim = self.sim
        term = sim.nodes[i].core.term
        if not in_lease or leader == i or not self._lease(leader, old_term):
            return None
        self.taken += 1
        sim.cuts.add((i, leader))
        sim.probe(leader, 30)
        again = [m for _, m in sim.late.sent.get(i, ())
                 if m.type == MessageType.VOTE and m.term == term]
        for m in again:
            sim.deliver_late(m, sim.now + sim.rng.randint(1, 30))
        return (f"node {i} takes term {term} inside leader {leader}'s lease: the leader "
                f"stops hearing it; {len(again)} vote requests of that term again")

    def _replay(self) -> str | None:
        sim = self.sim
        leader = sim.current_leader()
        if not leader or not self._lease(leader, sim.nodes[leader].core.term):
            return None
        term = sim.nodes[leader].core.term
        newer = [c for c in sim.up_nodes() if sim.nodes[c].core.term > term
                 and (c, sim.nodes[c].core.term) not in self._replayed]
        if not newer:
            return None
        followers = [f for f in sim.up_nodes() if f != leader and self._seen.get(f, (0, 0, False))
                     == (term, leader, True)]
        sent = 0
        for c in newer:
            self._replayed.add((c, sim.nodes[c].core.term))
            for f in followers:
                for m in self.kept.get((f, c), {}).values():
                    sim.deliver_late(m, sim.now + sim.rng.randint(1, 30))
                    sent += 1
        if not sent:
            return None
        return (f"old messages of leader {leader}'s followers {followers} reach "
                f"{newer} at newer terms ({sent} copies)")


class Split:
    """The leader and one follower cut off together from the rest (``split_with_follower``),
    in three steps timed by the cluster:

    1. the rest's answers stop reaching the pair: the leader's appends (a burst of client
       writes arrives) still reach everyone for a tick or two, and no quorum's acks come back,
       so every node holds entries the follower will never learn are committed;
    2. one to three ticks later the pair is cut off both ways; the leader goes on appending
       (another burst, to the follower only) until check-quorum deposes it, while the rest
       elect a leader and commit entries of its own at the same indexes;
    3. once that leader committed an entry of its term (a few ticks later, drawn; one time
       in three as soon as it leads, while the old leader may still lead), the cuts the split
       made heal; the new leader's appends to the follower are slow for a while and
       it resends from further back meanwhile (``sim_faults.resend_from_back``), perhaps a
       snapshot cut where their logs part (``sim_faults.snapshot_at_divergence``).

    The follower's log then diverges from its leader's past a common prefix longer than its
    commit index, for several ticks: what an append below the commit index, a snapshot whose
    point the follower holds, and one whose point it holds at another term must not vouch for.
    A ``heal`` before step 3 ends the split as step 3 would when a new leader is there.
    """

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.pair: tuple[int, int] = (0, 0)
        self.term = 0
        self.stage = 0
        self.apart_at = -1
        #: End as soon as the rest have a leader (the old one may still lead, and its
        #: appends of an older term reach nodes holding the new leader's first entries).
        self.early = False
        self.made: set[tuple[int, int]] = set()

    def start(self) -> str | None:
        sim = self.sim
        leader = sim.current_leader()
        if not leader or self.stage:
            return None
        voters = sim.nodes[leader].core.tracker.config.all_voters()
        followers = [i for i in sorted(voters - {leader}) if sim.nodes[i].up]
        if not followers:
            return None
        follower = sim.rng.choice(followers)
        if len(voters - {leader, follower}) <= len(voters) // 2:
            return None  # the rest could not elect a leader: nothing would diverge
        self.pair = (leader, follower)
        self.term = sim.nodes[leader].core.term
        self.stage = 1
        self.apart_at = sim.now + sim.rng.randint(1, 3) * sim.TICK
        self.early = sim.rng.random() < 1 / 3
        self.made = set()
        self._cut(both=False)
        sim.workload.burst(sim, leader, sim.rng.randint(1, 3))
        sim.probe(leader, 50)
        return f"split leader {leader} and follower {follower} from the rest (acks first)"

    def _cut(self, both: bool) -> None:
        sim = self.sim
        for x in self.pair:
            for y in sim.ids:
                if y not in self.pair:
                    links = [(y, x), (x, y)] if both else [(y, x)]
                    for link in links:
                        if link not in sim.cuts:
                            sim.cuts.add(link)
                            self.made.add(link)

    def on_tick(self, node: int) -> str | None:
        """At each tick of any node: move to the next step when its time has come."""
        sim = self.sim
        if self.stage == 1 and sim.now >= self.apart_at:
            self.stage = 2
            self._cut(both=True)
            leader = self.pair[0]
            if sim.nodes[leader].up and sim.nodes[leader].core.is_leader:
                sim.workload.burst(sim, leader, sim.rng.randint(1, 3))
            return f"split {self.pair}: cut both ways"
        if self.stage == 2:
            core = sim.nodes[node].core
            if core.is_leader and core.term > self.term and node not in self.pair \
                    and (self.early or core.log.term(core.log.committed) == core.term) \
                    and sim.rng.random() < 0.5:
                sim.cuts.difference_update(self.made)
                return "split ends: " + self._diverged(node)
        return None

    def heal(self, leader: int) -> str | None:
        """Every link healed (``heal``; ``leader`` leads now, 0 when none): the split is over."""
        if self.stage == 2 and leader and leader not in self.pair:
            return self._diverged(leader)
        self.stop()
        return None

    def stop(self) -> None:
        self.stage = 0
        self.made = set()

    def _diverged(self, leader: int) -> str:
        sim = self.sim
        follower = self.pair[1]
        self.stop()
        if not sim.nodes[follower].up:
            return f"{follower} is down"
        ticks = sim.rng.randint(5, 15)
        sim.slow_links[(leader, follower)] = sim.now + ticks * sim.TICK
        sim.resend_until = max(sim.resend_until, sim.now + ticks * sim.TICK)
        sim.count_event("split_diverged")
        line = sim_faults.snapshot_at_divergence(sim, leader, follower, sim.rng)
        if line:
            sim.count_event("split_snapshot")
        return (f"{follower}'s appends from leader {leader} slow for {ticks} ticks"
                + (f", {line}" if line else ""))
