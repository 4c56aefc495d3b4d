"""Checks of the core's promises against what the simulator alone can see: the disks, every
message sent, every node's clock and commit index.

``sim_checks`` holds the invariants of Raft's figure 3 (what must never be seen in the logs).
These check the rules that keep them, at the moment a rule is used, from the global view, so a
broken rule shows on the first seed that exercises it rather than only on the rare schedule
that turns it into a divergent log:

- The persistence contract (Raft figure 2, "respond to RPCs only after updating stable
  storage"; the core's ``outbox``): a granted vote leaves only once that vote is on the
  voter's disk (or a later term is: it can no longer vote again in that one); a vote request
  only once the candidate's own vote is (likewise); an append ack only once
  the entry it vouches for is on disk, and only for a log that matches the leader's there;
  a heartbeat answer only once the term it carries is.
- A leader wins only with durable votes of a quorum of its config (both halves when joint).
- A leader's commit index moves only to an entry of its own term (§5.4.2) that the disks of a
  quorum of its config hold (both halves when joint).
- A node applies only entries its own disk holds.
- A committed entry is never replaced in a node's log (a follower truncates only entries that
  conflict with its leader's, which Leader Completeness says cannot be committed).
- One membership change at a time (thesis §4.1): a leader appends a change only once every
  earlier change in its log is committed, so no log holds two changes above the highest
  commit index any node has reached (a new leader cannot know whether the change its log
  ends with committed until an entry of its own term does).
- Reads: a read served at index ``i`` is linearizable only if ``i`` is at least every commit
  index any node had when the read began (an entry committed by then may have been
  acknowledged); and while a leader may serve lease reads (its lease holds and an entry of its
  term committed), no node has committed past it.
- Check-quorum (thesis §6.2), a liveness promise: a leader that no quorum of its config has
  reached for ``3 * election_ticks`` of the slowest clock no longer leads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dengine.raft.messages import Message, MessageType
from dengine.raft.ready import Role
from dengine.raft.types import Entry, EntryKind
from dengine.testing.sim_checks import InvariantBroken

if TYPE_CHECKING:
    from dengine.testing.sim import SimNode, Simulator

__all__ = ["Contract"]

MT = MessageType
CONF = EntryKind.CONF_CHANGE


def _quorum(nodes: set[int], voters: tuple[int, ...], outgoing: tuple[int, ...]) -> bool:
    if 2 * len(nodes.intersection(voters)) <= len(voters):
        return False
    return not outgoing or 2 * len(nodes.intersection(outgoing)) > len(outgoing)


class Contract:
    """The checks above, fed by the simulator (see the module docstring)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        #: (node, term) -> the vote its disk holds for that term.
        self.durable_votes: dict[tuple[int, int], int] = {}
        #: The highest commit index any node has reached (every one is committed).
        self.max_commit = 0
        #: (to, from) -> when a message from ``from`` last reached ``to``.
        self.heard_at: dict[tuple[int, int], int] = {}
        #: node -> (term, incarnation, config) it leads under and since when.
        self.leading_since: dict[int, tuple[tuple, int]] = {}

    # -- the disks -------------------------------------------------------------------------
    def on_persist_hard_state(self, node: int, term: int, vote: int) -> None:
        if vote:
            self.durable_votes[(node, term)] = vote

    def holds(self, node: int, index: int, term: int) -> bool:
        """Whether ``node``'s disk holds entry ``index`` of ``term`` (or a snapshot past it)."""
        st = self.sim.nodes[node].storage
        base = st.snapshot.index
        if index <= base:
            return index < base or st.snapshot.term == term
        return index <= st.last_index() and st.term(index) == term

    # -- messages --------------------------------------------------------------------------
    def check_leaving(self, msgs: list[Message], exact: bool) -> None:
        """The persistence contract, checked as messages leave: ``exact`` for a Ready's
        ``messages`` (checked as it is handed out, so the core's log is the Ready's); not
        exact for its ``persisted_messages``, checked right after that Ready's own write
        (a later Ready may already have rewritten the core's log in memory: the disk must
        then hold some entry at the acknowledged index)."""
        for m in msgs:
            t = m.type
            # A disk already at a later term keeps the node from voting in this one again:
            # the vote is as good as durable (a node that moved on before its fsync).
            # (Its vote in that term is then recorded as durable, for ``on_elected``.)
            moved_on = self.sim.nodes[m.from_].hard_state.term > m.term
            if t == MT.VOTE_RESP and not m.reject:
                if moved_on:
                    self.durable_votes.setdefault((m.from_, m.term), m.to)
                if self.durable_votes.get((m.from_, m.term)) != m.to:
                    self._broken(m, f"its vote for {m.to} in term {m.term} is not on its disk")
            elif t == MT.VOTE:
                if moved_on:
                    self.durable_votes.setdefault((m.from_, m.term), m.from_)
                if self.durable_votes.get((m.from_, m.term)) != m.from_:
                    self._broken(m, f"its own vote in term {m.term} is not on its disk")
            elif t == MT.APPEND_RESP and not m.reject and m.index:
                self._check_ack(m, exact)
            elif t == MT.HEARTBEAT_RESP:
                if self.sim.nodes[m.from_].hard_state.term < m.term:
                    self._broken(m, f"term {m.term} it answers in is not on its disk")

    def _check_ack(self, m: Message, exact: bool) -> None:
        n = self.sim.nodes[m.from_]
        if exact:
            term = n.core.log.index.maybe_term(m.index)
            if term < 0 or not self.holds(m.from_, m.index, term):
                self._broken(m, f"entry {m.index}@{term} it acknowledges is not on its disk")
            self._check_match(m, term)
            return
        st = n.storage
        if m.index > max(st.last_index(), st.snapshot.index):
            self._broken(m, f"its disk ends at {st.last_index()}, before the entry it "
                         f"acknowledges")
        if m.index >= st.snapshot.index:
            self._check_match(m, st.term(m.index))

    def _check_match(self, m: Message, term: int) -> None:
        """An append ack at ``i`` says "my log matches yours through ``i``" (figure 2: success
        when the follower's log contains the entry at prevLogIndex, then holds the entries
        sent): the leader of the term it answers, when it still leads, must hold the same
        entry there (log matching then gives the whole prefix)."""
        leader = self.sim.nodes.get(m.to)
        if leader is None or not leader.up:
            return
        lc = leader.core
        if lc.role != Role.LEADER or lc.term != m.term:
            return
        mine = lc.log.index.maybe_term(m.index)
        if term >= 0 and mine != -1 and mine != term:
            held = f"term {mine}" if mine >= 0 else "nothing"
            self._broken(m, f"its entry {m.index}@{term} differs from the leader's ({held} "
                         "there): it vouches for a log the leader never sent")

    def _broken(self, m: Message, why: str) -> None:
        raise InvariantBroken(
            f"persistence contract: node {m.from_} sends {m.type.name} to {m.to} (term "
            f"{m.term}, index {m.index}) but {why}")

    def on_deliver(self, m: Message) -> None:
        self.heard_at[(m.to, m.from_)] = self.sim.now

    # -- leaders ---------------------------------------------------------------------------
    def on_elected(self, n: SimNode) -> None:
        core = n.core
        cfg = core.tracker.config
        votes = {i for i in cfg.all_voters() if self.durable_votes.get((i, core.term)) == n.id}
        votes.add(n.id)  # its own vote: it persists it before anything it sends relies on it
        if not _quorum(votes, cfg.voters, cfg.voters_outgoing):
            raise InvariantBroken(
                f"node {n.id} leads term {core.term} with durable votes of only "
                f"{sorted(votes)} in voters {cfg.voters} & {cfg.voters_outgoing}")

    def on_leader_commit(self, n: SimNode, voters: tuple[tuple[int, ...], tuple[int, ...]]
                         ) -> None:
        """Leader ``n``'s commit index moved; ``voters`` is the config it decided under."""
        core = n.core
        c = core.commit_index
        term = core.log.term(c)
        if term != core.term:
            raise InvariantBroken(
                f"node {n.id}, leader of term {core.term}, commits to {c} whose entry is of "
                f"term {term} (only current-term entries commit by counting, §5.4.2)")
        holders = {i for i in set(voters[0]) | set(voters[1])
                   if i in self.sim.nodes and self.holds(i, c, term)}
        if not _quorum(holders, *voters):
            raise InvariantBroken(
                f"node {n.id}, leader of term {core.term}, commits {c}@{term} that only "
                f"{sorted(holders)} hold on disk (voters {voters[0]} & {voters[1]})")

    def on_apply(self, node: int, e: Entry) -> None:
        if not self.holds(node, e.index, e.term):
            raise InvariantBroken(f"node {node} applies {e.index}@{e.term}, not on its disk")

    # -- committed entries are never replaced ----------------------------------------------
    def check_overwrite(self, n: SimNode, entries: list[Entry]) -> None:
        """Node ``n`` hands ``entries`` to its disk (a Ready's ``entries``): whatever it held
        from ``entries[0].index`` on -- on disk, or queued for it -- is replaced. Checked when
        the write is decided, not when a stalled disk gets to it: a write queued before an
        entry committed may land after (the node vouches for nothing until it is done)."""
        first = entries[0].index
        for i, old in self._held_terms(n, first):
            k = i - first
            if k < len(entries) and entries[k].term == old:
                continue
            if self._committed_term(i) == old:
                raise InvariantBroken(
                    f"node {n.id} replaces the committed entry {i}@{old} in its log")

    @staticmethod
    def _held_terms(n: SimNode, first: int) -> list[tuple[int, int]]:
        """(index, term) of what node ``n`` holds from ``first`` on: its disk, then the writes
        queued for it in order (each replaces everything from its first index on)."""
        storage = n.storage
        held = {i: storage.term(i)
                for i in range(max(first, storage.first_index()), storage.last_index() + 1)}
        for _, queued, _, _ in n.disk_q:
            if queued:
                start = queued[0].index
                for i in [i for i in held if i >= start]:
                    del held[i]
                held.update((e.index, e.term) for e in queued if e.index >= first)
        return sorted(held.items())

    def _committed_term(self, index: int) -> int:
        """The term of the committed entry at ``index``, as a node whose commit index covers
        it holds it (-1 when no running node knows)."""
        sim = self.sim
        for i in sim.ids:
            core = sim.nodes[i].core
            if sim.nodes[i].up and core.commit_index >= index:
                t = core.log.term(index)
                if t >= 0:
                    return t
        return -1

    # -- one membership change at a time -----------------------------------------------------
    def check_one_change(self, node: int, entries: list[Entry]) -> None:
        """``node`` leads and put ``entries`` in its log (a Ready's ``entries``)."""
        if not any(e.kind == CONF for e in entries):
            return
        sim = self.sim
        committed = max([self.max_commit] + [sim.nodes[i].core.commit_index
                                             for i in sim.ids if sim.nodes[i].up])
        lg = sim.nodes[node].core.log
        pending = [e.index for e in lg.entries(max(committed + 1, lg.first_index),
                                               lg.last_index + 1) if e.kind == CONF]
        if len(pending) > 1:
            raise InvariantBroken(
                f"one change at a time: leader {node} holds changes at {pending}, none "
                f"committed (the highest commit index is {committed})")

    # -- after every event -----------------------------------------------------------------
    def after_event(self) -> None:
        sim = self.sim
        for i in sim.ids:
            n = sim.nodes[i]
            if n.up and n.core.commit_index > self.max_commit:
                self.max_commit = n.core.commit_index
        for i in sim.ids:
            n = sim.nodes[i]
            if not n.up or n.core.role != Role.LEADER:
                self.leading_since.pop(i, None)
                continue
            core = n.core
            if (core.lease_valid() and core.log.term(core.commit_index) == core.term
                    and self.max_commit > core.commit_index):
                raise InvariantBroken(
                    f"lease: node {i} (term {core.term}) would serve a lease read at "
                    f"{core.commit_index}, but {self.max_commit} is committed")
            self._check_quorum(n)

    def _check_quorum(self, n: SimNode) -> None:
        sim = self.sim
        core = n.core
        cfg = core.tracker.config
        # The window starts over with each config: check-quorum counts the one in force.
        key = (core.term, n.incarnation, cfg.voters, cfg.voters_outgoing)
        seen = self.leading_since.get(n.id)
        if seen is None or seen[0] != key:
            self.leading_since[n.id] = (key, sim.now)
            return
        window = int(3 * core.cfg.election_ticks * sim.slowest_tick) + 2 * sim.TICK
        if sim.now - seen[1] <= window:
            return
        since = sim.now - window
        heard = {j for j in cfg.all_voters() if j == n.id
                 or self.heard_at.get((n.id, j), -1) >= since}
        if not _quorum(heard, cfg.voters, cfg.voters_outgoing):
            raise InvariantBroken(
                f"liveness: node {n.id} still leads term {core.term} though only "
                f"{sorted(heard)} reached it in {window / sim.TICK:.0f} ticks "
                f"(check-quorum steps down within 2 election timeouts)")
