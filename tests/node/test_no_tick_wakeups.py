"""Requests on an idle in-memory cluster are answered without waiting for a clock tick.

A linearizable read's ReadIndex round and a write's appends must go out as soon as the drive
loop takes the request, and the in-memory transport must wake the peers' drive loops when it
delivers. If either waited for the next heartbeat (or any tick), a cluster whose tickers are
stopped would never answer. Stopping the tickers makes that a yes/no question instead of a
timing one; the clock is frozen, so no election can start meanwhile either.
"""

from __future__ import annotations

import asyncio


def _freeze_clocks(nodes) -> None:
    for node in nodes:
        node._tasks[1].cancel()  # the ticker (the drive loop is _tasks[0])


def _read_rounds(node) -> float:
    return node.metrics.registry.get_sample_value("dengine_read_index_rounds_total")


def test_reads_and_writes_need_no_tick_on_an_idle_cluster(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            cl = c.client(leader)
            await cl.put("k", "0")  # the leader's term has a committed entry: reads may go
            _freeze_clocks(c.nodes.values())
            await asyncio.sleep(0.05)  # let every node go idle on its drive loop
            ticks: list[int] = []
            for node in c.nodes.values():
                tick = node.core.tick
                node.core.tick = lambda tick=tick: (ticks.append(1), tick())[1]
            rounds = _read_rounds(leader)
            for i in range(5):
                async with asyncio.timeout(2):
                    rev = await cl.put("k", str(i + 1))
                    kv = await cl.get("k", consistency="linearizable")
                assert kv.value == str(i + 1).encode() and kv.revision == rev
            assert _read_rounds(leader) - rounds == 5  # each read was a ReadIndex round
            assert ticks == []
        finally:
            await c.close()

    run(main)
