"""Three real Raft cores over the transports: they elect a leader and replicate a proposal.

A minimal shell (tick, step what arrived, run each Ready) drives each core; this proves the
message conversion and the transports carry everything the core sends, not just what the
unit tests think of.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque

import pytest

from dengine.raft.core import RaftCore
from dengine.raft.driver import drive_ready
from dengine.raft.log import MemoryStorage
from dengine.transport import GrpcTransport, MemoryNetwork, TcpTransport

IDS = (1, 2, 3)
RAFT = {"tick_ms": 10, "heartbeat_ms": 30, "election_ms": 300, "lease_ms": 200}


class Shell:
    def __init__(self, node_id: int, core_config) -> None:
        self.storage = MemoryStorage()
        self.core = RaftCore(node_id, core_config, random.Random(node_id), peers=IDS,
                             storage=self.storage)  # fmt: skip
        self.inbox: deque = deque()
        self.applied: list = []
        self.transport = None

    def on_message(self, msg) -> None:
        self.inbox.append(msg)

    async def drive(self, tick_s: float) -> None:
        core = self.core
        while True:
            core.tick()
            while self.inbox:
                core.step(self.inbox.popleft())
            while core.has_ready():
                await drive_ready(core, core.ready(), self)
            await asyncio.sleep(tick_s)

    # The I/O steps of raft.driver.ReadyIO (no snapshots or membership changes here).
    def install_snapshot(self, meta) -> None:
        raise AssertionError("no snapshot in this test")

    def observe(self, rd) -> None:
        return None

    def reconnect(self, conf_state) -> None:
        return None

    def send(self, messages) -> None:
        self.transport.send(messages)

    def persist(self, rd) -> None:
        self.storage.append(rd.entries)

    def apply(self, entries, read_states) -> None:
        self.applied.extend(entries)

    def compact(self, index, conf_state) -> None:
        self.storage.compact(index, conf_state)


async def elect_and_replicate(shells, eventually) -> None:
    tasks = [asyncio.create_task(s.drive(0.01)) for s in shells]
    try:
        await eventually(lambda: sum(s.core.is_leader for s in shells) == 1, timeout=15)
        (leader,) = [s for s in shells if s.core.is_leader]
        await eventually(lambda: leader.core.commit_index >= 1, timeout=15)  # its no-op
        leader.core.propose(b"hello")
        await eventually(
            lambda: all(any(e.data == b"hello" for e in s.applied) for s in shells), timeout=15
        )
        logs = [[(e.index, e.term, e.data) for e in s.applied] for s in shells]
        n = min(len(log) for log in logs)
        assert logs[0][:n] == logs[1][:n] == logs[2][:n]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize("kind", ["grpc", "tcp"])
def test_over_grpc(run, config_for, eventually, kind):
    cls = TcpTransport if kind == "tcp" else GrpcTransport

    async def body():
        configs = {i: config_for(i, raft=RAFT, network={"peer_transport": kind}) for i in IDS}
        shells = [Shell(i, configs[i].core_config()) for i in IDS]
        for s, i in zip(shells, IDS, strict=True):
            s.transport = cls(configs[i], on_message=s.on_message)
            await s.transport.start()
        for s in shells:
            for other in shells:
                if other is not s:
                    s.transport.set_peer(other.core.id, other.transport.address)
        try:
            await elect_and_replicate(shells, eventually)
        finally:
            for s in shells:
                await s.transport.stop()

    run(body, timeout=60)


@pytest.mark.parametrize("wire", [False, True])
def test_in_memory(run, config_for, eventually, wire):
    async def body():
        net = MemoryNetwork("test", wire=wire)
        shells = [Shell(i, config_for(i, raft=RAFT).core_config()) for i in IDS]
        for s in shells:
            s.transport = net.transport(s.core.id, on_message=s.on_message, peers=IDS)
            await s.transport.start()
        try:
            await elect_and_replicate(shells, eventually)
        finally:
            for s in shells:
                await s.transport.stop()

    run(body, timeout=60)
