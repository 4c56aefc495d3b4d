"""The Raft core alone: a 3-node cluster on an in-process network with no faults.

The leader takes proposals in batches of 64 entries of 256 bytes; each loop turn every node
runs one Ready cycle (persist to a MemoryStorage, report it, send, apply, advance) and every
message sent is stepped into its target. The figure is entries committed and applied on every
node per second of CPU. The kernels the core uses (``LogIndex``, ``quorum``) are switched
between the pure-Python references and the compiled modules, so one run gives the ratio.
Run directly for the figures and a cProfile breakdown::

    PYTHONPATH=. python asv_bench/benchmarks/core.py [--profile]
"""

from __future__ import annotations

import random
import sys
import time

from dengine import _core
from dengine.raft import RaftConfig, RaftCore, Role, _roles, read_only, tracker
from dengine.raft import log as raft_log
from dengine.raft.log import MemoryStorage

BATCH = 64
PAYLOAD = bytes(256)


def use_kernels(kind: str) -> None:
    """Point the core's kernel imports at the references or at the compiled modules."""
    if kind == "reference":
        quorum = _core.load("quorum", compiled=False)
        log_index = _core.load("log_index", compiled=False)
    else:
        quorum = _core.load("quorum", compiled=True)
        log_index = _core.load("log_index", compiled=True)
    for module in (_roles, read_only, tracker):
        module.quorum = quorum
    raft_log.LogIndex = log_index.LogIndex


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


def entries_per_cpu_second(batches: int = 400, kernels: str = "compiled") -> float:
    use_kernels(kernels)
    cluster = Cluster()
    t0 = time.process_time()
    n = cluster.run(batches)
    return n / (time.process_time() - t0)


class CoreThroughput:
    """asv: entries committed and applied (on all three nodes) per CPU second."""

    timeout = 120
    params = ["reference", "compiled"]
    param_names = ["kernels"]

    def setup(self, kernels: str) -> None:
        if kernels == "compiled" and not _core.COMPILED:
            raise NotImplementedError("the compiled kernels are not built")  # asv: skip
        use_kernels(kernels)
        self.cluster = Cluster()

    def time_400_batches_of_64(self, kernels: str) -> None:
        self.cluster.run(400)

    def track_entries_per_cpu_second(self, kernels: str) -> float:
        return entries_per_cpu_second(400, kernels)

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
    for kind in ("reference", "compiled"):
        rates = sorted(entries_per_cpu_second(400, kind) for _ in range(5))
        print(f"{kind:9s} kernels: entries committed+applied per CPU second "
              f"(median of 5): {rates[2]:,.0f}")
    if "--profile" in sys.argv:
        use_kernels("compiled")
        _profile()
