"""The leader's side of a follower that lost its log: one probe per heartbeat, one warning."""

from __future__ import annotations

import asyncio

from dengine.statemachine import open_kv
from dengine.storage.memory import MemoryLogStore


class Recorder:
    """Wraps a logger and keeps the warnings."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.warnings: list[str] = []

    def warning(self, event: str, **kw) -> None:
        self.warnings.append(event)
        self.inner.warning(event, **kw)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def test_a_follower_back_without_its_log_is_not_probed_in_a_loop(run, cluster_factory):
    async def main():
        c = cluster_factory(storage="memory")
        await c.start()
        try:
            leader = await c.leader()
            cl = c.client(leader)
            await asyncio.gather(*(cl.put(f"k{i}", "v") for i in range(30)))
            victim = c.followers()[0].node_id
            await c.wait_applied(leader.state_machine.applied_index())
            await c.stop_node(victim)
            c._memory[victim] = (MemoryLogStore(), open_kv("memory"))  # its "disk" is gone
            rec = leader.logger = Recorder(leader.logger)
            sent = leader.metrics.sent.labels("append", str(victim))
            await c.start_node(victim)
            before = sent._value.get()
            t0 = asyncio.get_running_loop().time()
            for i in range(50):  # writes keep the leader sending to it
                await cl.put(f"w{i}", "v")
                await asyncio.sleep(0.01)
            elapsed = asyncio.get_running_loop().time() - t0
            appends = sent._value.get() - before
            # About one probe per 20 ms heartbeat, plus one per write (a loop of probes sends
            # tens of thousands a second).
            assert appends <= 50 + 2 * elapsed * 1000 / c.raft["heartbeat_ms"], appends
            lost = [w for w in rec.warnings if "rejected entries it had acknowledged" in w]
            assert len(lost) == 1
            # The rest of the cluster is unharmed.
            assert await cl.put("after", "x")
        finally:
            await c.close()

    run(main, timeout=40)
