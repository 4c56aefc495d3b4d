"""Leader churn during a stalled append: a follower's entries are rewritten while on its disk.

A fault of the pipelined orders, drawn by the seed (its own generator) once, on half the runs
of five nodes or more without membership changes: while A leads, one follower F's disk stops
completing writes (what it was handed stays in flight, unreported; its vote and append answers
wait for it). A is cut off from everyone but F and proposes an entry at index i that reaches F
only. Then A is cut off, and F too one way (it hears the others, they do not hear it): the
other nodes G elect a leader B, which is cut from G the moment it wins, so that its first
appends (an entry of its term at i or below) reach F alone and rewrite F's log there. Then B
is cut off and A joins G again: G's logs are no newer than A's, so A, or a node of G that has
A's entry, wins a later term. F's answers still wait for its disk, so that leader hears no
rejection: it resends F one entry of their common prefix each tick, with its commit index (the
armed resend, ``sim_faults.resend_to``), until F holds A's entry at i again and its commit
index covers i. Then F's disk runs: Readies that wrote (i, A's term), then (i, B's term), then
(i, A's term) again become durable, a few per fsync, and the links heal.

While the episode runs the network is its own (no other cut, stall or slow link, the good
profile; the seeded faults pause); late copies of old messages still arrive. A step that does
not happen within its ticks ends the episode the same way, and the run goes on.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from dengine.errors import DengineError
from dengine.raft.ready import Role
from dengine.testing import sim_faults
from dengine.testing.sim_events import TICK

if TYPE_CHECKING:
    from dengine.testing.sim import Simulator

__all__ = ["StalledRewrite"]

#: Each step's deadline, in ticks.
_STEP_TICKS = {"reach": 20, "elect": 80, "rewritten": 20, "return": 100, "back": 30}


class StalledRewrite:
    """The episode's state, stepped after every event (``on_step``)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        rng = random.Random(f"{sim.seed}/stalled-rewrite")
        voters = len(sim.ids)
        self.armed = (sim.cfg.shell_order in ("pipelined", "async") and voters >= 5
                      and not sim.cfg.snapshots_and_membership and rng.random() < 0.5)
        self.start_at = rng.randint(5, 60) * TICK
        self.rng = rng
        self.step = ""
        self.active = False
        self.deadline = 0
        self.leader = self.follower = self.second = self.third = 0
        self.resent_at = -1
        self.index = self.term = self.second_term = 0
        self.others: list[int] = []

    # -- the network ---------------------------------------------------------------------------
    def _cut_all(self, i: int) -> None:
        for j in self.sim.ids:
            if j != i:
                self.sim.cuts.add((i, j))
                self.sim.cuts.add((j, i))

    def _join(self, i: int, j: int) -> None:
        self.sim.cuts.discard((i, j))
        self.sim.cuts.discard((j, i))

    def _next(self, step: str) -> None:
        self.step = step
        self.deadline = self.sim.now + _STEP_TICKS[step] * TICK
        self.sim.trace_note(f"stalled rewrite: {step}")

    # -- the steps -----------------------------------------------------------------------------
    def on_step(self) -> None:
        sim = self.sim
        if sim.phase != "faults":
            return
        if not self.active:
            if self.armed and sim.now >= self.start_at:
                self._start()
            return
        if sim.now > self.deadline:
            self._end(f"gave up at {self.step}")
            return
        getattr(self, "_" + self.step)()

    def _start(self) -> None:
        sim = self.sim
        a = sim.current_leader()
        if not a or any(not sim.nodes[i].up for i in sim.ids) or set(sim.members()) != set(sim.ids):
            self.start_at = sim.now + 5 * TICK
            return
        f = self.rng.choice([i for i in sim.ids if i != a])
        core = sim.nodes[a].core
        try:
            index = core.propose(b"")
        except DengineError:
            self.start_at = sim.now + 5 * TICK
            return
        self.armed = False  # once a run
        self.active = True
        self.leader, self.follower, self.index, self.term = a, f, index, core.term
        self.others = [i for i in sim.ids if i not in (a, f)]
        sim.nodes[f].disk_held = True
        sim.cuts.clear()
        sim.stall = 0.0
        sim.slow_links.clear()
        sim.net = sim_faults.NET_PROFILES["good"]
        sim.reaction.until = -1
        self._cut_all(a)
        self._join(a, f)
        sim.count_event("stalled_rewrite")
        sim.trace_note(f"FAULT stalled rewrite: node {f}'s disk stalls; leader {a} (term "
                       f"{self.term}) appends {index} for it alone")
        self._next("reach")
        sim.process(a)

    def _reach(self) -> None:
        sim = self.sim
        f = self.follower
        if sim.nodes[f].core.log.term(self.index) == self.term:
            self._cut_all(self.leader)
            for j in sim.ids:
                if j != f:
                    sim.cuts.add((f, j))  # it hears the others; they do not hear it
            self._next("elect")

    def _elect(self) -> None:
        sim = self.sim
        for b in self.others:
            core = sim.nodes[b].core
            if sim.nodes[b].up and core.role == Role.LEADER and core.term > self.term:
                self.second, self.second_term = b, core.term
                for j in self.others:  # its first appends reach the stalled follower only
                    if j != b:
                        sim.cuts.add((b, j))
                        sim.cuts.add((j, b))
                self._next("rewritten")
                return

    def _rewritten(self) -> None:
        sim = self.sim
        if sim.nodes[self.follower].core.log.term(self.index) != self.term:
            self._cut_all(self.second)
            rest = [self.leader, *(j for j in self.others if j != self.second)]
            for x in rest:
                sim.cuts.discard((x, self.follower))
                for y in rest:
                    if x != y:
                        self._join(x, y)
            self._next("return")

    def _return(self) -> None:
        sim = self.sim
        for c in [self.leader, *self.others]:
            core = sim.nodes[c].core
            if (c != self.second and sim.nodes[c].up and core.role == Role.LEADER
                    and core.term > self.second_term
                    and core.log.term(self.index) == self.term):
                self.third = c
                self.resent_at = -1
                self._next("back")
                return

    def _back(self) -> None:
        sim = self.sim
        log = sim.nodes[self.follower].core.log
        if log.term(self.index) == self.term and log.committed >= self.index:
            self._end("rewritten back")
            return
        # The follower's answers wait for its disk: the leader hears no rejection, and no
        # match index to send a commit index for. It resends from the common prefix, with its
        # commit index (``sim_faults.resend_to``), once a tick.
        if sim.now - self.resent_at >= TICK and sim.nodes[self.third].core.is_leader:
            self.resent_at = sim.now
            line = sim_faults.resend_to(sim, self.third, self.follower)
            if line:
                sim.trace_note("FAULT " + line)

    def _end(self, why: str) -> None:
        sim = self.sim
        self.active = False
        self.step = ""
        sim.cuts.clear()
        release(sim, self.follower)
        sim.trace_note(f"stalled rewrite ends ({why}): node {self.follower}'s disk runs again")
        sim.count_event(f"stalled_rewrite {why}")

    def stop(self) -> None:
        """The fault phase ended."""
        if self.active:
            self._end("faults stop")


def release(sim: Simulator, i: int) -> None:
    from dengine.testing.sim_shell import schedule_disk

    n = sim.nodes[i]
    n.disk_held = False
    schedule_disk(sim, n)
