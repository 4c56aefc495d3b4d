"""A small randomized smoke test over the scenario network (the full simulator is tests/sim).

Each seed runs a random schedule of ticks, proposals, reads, transfers, membership changes,
snapshots, partitions, message loss, duplication and reordering, crashes and restarts, and
checks after every step: at most one leader per term, no two nodes apply different entries at
one index, and nodes with the same last entry hold the same config. After healing, a leader
emerges and every member applies the same commands. ``DENGINE_RAFT_SMOKE_SEEDS`` sets the
number of seeds (default 6).
"""

from __future__ import annotations

import os
import random

import pytest

from dengine.errors import DengineError
from dengine.raft import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    MessageType,
    RaftConfig,
    Role,
)
from dengine.raft.types import ConfState
from dengine.testing.raft_network import Network

MT = MessageType
T = ConfChangeType
SEEDS = int(os.environ.get("DENGINE_RAFT_SMOKE_SEEDS", "6"))


def random_change(rng: random.Random, cs: ConfState, ids: list[int]) -> ConfChange:
    voters, learners = set(cs.voters), set(cs.learners)
    others = [i for i in ids if i not in voters and i not in learners]
    r = rng.random()
    if r < 0.3 and others:
        ops = [(T.ADD_LEARNER, rng.choice(others))]
    elif r < 0.5 and learners:
        ops = [(T.ADD_VOTER, rng.choice(sorted(learners)))]
    elif r < 0.65 and len(voters) > 1:
        ops = [(T.REMOVE_NODE, rng.choice(sorted(voters)))]
    elif r < 0.8 and others:
        ops = [(T.ADD_VOTER, rng.choice(others))]
    else:
        ops = []
        for n in rng.sample(ids, 3):
            if n in voters and len(voters) > 1 and rng.random() < 0.5:
                ops.append((T.REMOVE_NODE, n))
            elif n not in voters:
                ops.append((T.ADD_VOTER, n))
    return ConfChange(tuple(ConfChangeSingle(t, n) for t, n in ops))


class Schedule:
    def __init__(self, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        self.seed = seed
        cfg = RaftConfig(pre_vote=rng.random() < 0.8, check_quorum=rng.random() < 0.8,
                         max_inflight_msgs=4, max_msg_entries=3,
                         compact_keep_entries=rng.choice([0, 1, 5]))
        self.net = Network((1, 2, 3), cfg, seed=seed)
        for i in (4, 5):
            self.net.add_node(i)
        self.leaders: dict[int, int] = {}
        self.applied: dict[int, tuple[int, bytes]] = {}
        self.proposed = 0

    def act(self, step: int) -> None:
        net, rng = self.net, self.rng
        r = rng.random()
        leader = net.leader()
        try:
            if r < 0.3:
                i = rng.choice(net.ids)
                if i not in net.down:
                    net.core(i).tick()
            elif r < 0.35 and leader:
                net.core(leader).propose(b"v%d" % self.proposed)
                self.proposed += 1
            elif r < 0.37:
                net.cut(*rng.sample(net.ids, 2))
            elif r < 0.39:
                net.cuts.clear()
            elif r < 0.395:
                i = rng.choice(net.ids)
                if i in net.down:
                    net.restart(i)
                elif not net.down:
                    net.crash(i)
            elif r < 0.40 and leader:
                net.core(leader).transfer_leader(rng.choice(net.ids))
            elif r < 0.41:
                net.core(rng.choice(net.ids)).read_index(b"r%d" % step,
                                                         lease=rng.random() < 0.5)
            elif r < 0.415 and leader:
                cs = net.core(leader).conf_state
                net.core(leader).propose_conf_change(random_change(rng, cs, net.ids))
            elif r < 0.42:
                i = rng.choice(net.ids)
                if i not in net.down and net.core(i).applied_index > 0:
                    net.take_snapshot(i)
        except (DengineError, ValueError):
            pass  # refused by the core: a normal answer

    def deliver_one(self) -> None:
        net, rng = self.net, self.rng
        for i in net.ids:
            net.process(i)
        q = net.queue
        if not q:
            return
        k = rng.randrange(len(q))
        m = q[k]
        del q[k]
        if rng.random() < 0.05:  # lost
            if m.type == MT.SNAPSHOT:
                net.core(m.from_).report_snapshot(m.to, False)
            return
        if rng.random() < 0.03:  # duplicated
            q.append(m)
        if m.to in net.down:
            return
        if m.type == MT.SNAPSHOT:
            net.deliver_snapshot(m)
        else:
            net.core(m.to).step(m)

    def check(self) -> None:
        net, seed = self.net, self.seed
        configs: dict[tuple[int, int], object] = {}
        for i in net.ids:
            core = net.core(i)
            if core.role == Role.LEADER:
                first = self.leaders.setdefault(core.term, i)
                assert first == i, f"seed {seed}: leaders {first} and {i} in term {core.term}"
            key = (core.last_index, core.log.last_term)
            cfg = configs.setdefault(key, core.tracker.config)
            assert cfg == core.tracker.config, f"seed {seed}: same log, different configs"
            for e in net.peers[i].applied[-3:]:
                got = self.applied.setdefault(e.index, (e.term, e.data))
                assert got == (e.term, e.data), f"seed {seed}: two entries applied at {e.index}"

    def heal_and_converge(self) -> None:
        net = self.net
        net.cuts.clear()
        for i in list(net.down):
            net.restart(i)
        for _ in range(600):
            net.tick()
            lead = net.leader()
            if lead:
                cs = net.core(lead).conf_state
                if not net.core(lead).lead_transferee and not cs.joint and all(
                    net.core(i).leader_id == lead for i in cs.voters
                ):
                    break
        lead = net.leader()
        assert lead, f"seed {self.seed}: no leader after the faults stopped"
        net.core(lead).propose(b"final")
        net.deliver()
        net.tick(n=5)
        cs = net.core(lead).conf_state
        want = net.applied_data(lead)
        assert want[-1] == b"final"
        for i in cs.voters | cs.learners:
            assert net.applied_data(i) == want, f"seed {self.seed}: node {i} differs"


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_schedule_keeps_safety_and_converges(seed):
    s = Schedule(seed)
    for step in range(2000):
        s.act(step)
        s.deliver_one()
        s.check()
    s.heal_and_converge()


def test_the_schedule_catches_a_core_that_ignores_the_election_restriction(monkeypatch):
    # Break Raft §5.4.1 (vote for any log): committed entries get lost, and the checks see it.
    from dengine.raft.log import RaftLog

    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, index, term: True)
    failures = 0
    for seed in range(2, 8):
        try:
            test_random_schedule_keeps_safety_and_converges(seed)
        except (AssertionError, RuntimeError):
            failures += 1
    assert failures >= 2
