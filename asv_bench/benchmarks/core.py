"""The Raft core alone: a 3-node cluster on an in-process network with no faults.

The leader takes proposals in batches of 64 entries of 256 bytes; each loop turn every node
runs one Ready cycle (persist to a MemoryStorage, report it, send, apply, advance) and every
message sent is stepped into its target. The figure is entries committed and applied on every
node per second of CPU. Run directly for the figure and a cProfile breakdown::

    PYTHONPATH=. python asv_bench/benchmarks/core.py [--profile]
"""

from __future__ import annotations

import random
import sys
import time

from dengine.raft import RaftConfig, RaftCore, Role
from dengine.raft.log import MemoryStorage

BATCH = 64
PAYLOAD = bytes(256)


class Cluster:
    """Three cores, their storages, and a FIFO of messages in flight."""

    def __init__(self, n: int = 3) -> None:
        ids = list(range(1, n + 1))
        cfg = RaftConfig(max_inflight_msgs=64)
        self.storages = {i: MemoryStorage() for i in ids}
        self.cores = {
            i: RaftCore(i, cfg, random.Random(i), peers=ids, storage=self.storages[i])
            for i in ids
        }
        self.applied = dict.fromkeys(ids, 0)
        self.inbox: list = []
        self.cores[1].campaign()
        for _ in range(1000):
            self.turn()
            if self.cores[1].role == Role.LEADER and self._quiet():
                break
        else:
            raise RuntimeError("the benchmark cluster did not elect node 1")

    def _quiet(self) -> bool:
        return not self.inbox and not any(c.has_ready() for c in self.cores.values())

    def turn(self) -> None:
        inbox = self.inbox
        for i, core in self.cores.items():
            if not core.has_ready():
                continue
            rd = core.ready()
            inbox.extend(rd.messages)
            if rd.entries:
                self.storages[i].append(rd.entries)
            core.on_persisted(rd.number)
            inbox.extend(rd.persisted_messages)
            if rd.committed_entries:
                self.applied[i] += len(rd.committed_entries)
            core.advance(rd)
        self.inbox = []
        cores = self.cores
        for m in inbox:
            cores[m.to].step(m)

    def run(self, batches: int) -> int:
        """Propose ``batches`` batches, one per turn, then drain; returns entries applied."""
        leader = self.cores[1]
        start = min(self.applied.values())
        payloads = [PAYLOAD] * BATCH
        for _ in range(batches):
            leader.propose_batch(payloads)
            self.turn()
        target = start + batches * BATCH
        while min(self.applied.values()) < target:
            self.turn()
        return batches * BATCH


def entries_per_cpu_second(batches: int = 400) -> float:
    cluster = Cluster()
    t0 = time.process_time()
    n = cluster.run(batches)
    return n / (time.process_time() - t0)


class CoreThroughput:
    """asv: entries committed and applied (on all three nodes) per CPU second."""

    timeout = 120

    def setup(self) -> None:
        self.cluster = Cluster()

    def time_400_batches_of_64(self) -> None:
        self.cluster.run(400)

    def track_entries_per_cpu_second(self) -> float:
        return entries_per_cpu_second(400)

    track_entries_per_cpu_second.unit = "entries/s"  # type: ignore[attr-defined]


def _profile() -> None:
    import cProfile
    import pstats

    cluster = Cluster()
    prof = cProfile.Profile()
    prof.enable()
    cluster.run(400)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    from dengine import core_info

    print(core_info())
    rates = sorted(entries_per_cpu_second() for _ in range(5))
    print(f"entries committed+applied per CPU second (median of 5): {rates[2]:,.0f}")
    if "--profile" in sys.argv:
        _profile()
