"""SIGTERM drains a leader with writes in flight (the issue: 547 of 600 in-flight writes got a
bare CANCELLED and one reported as failed had committed).

The leader hands over leadership, answers what it holds and exits 0 within its drain deadline;
every write the client saw succeed is in the log exactly once, and every write that failed
failed with a typed error whose class matches what the log holds: a "not applied" error
(NOT_LEADER, RESOURCE_EXHAUSTED, PAYLOAD_TOO_LARGE...) only for a write that is absent. Clients
doing puts, compare-and-sets and linearizable reads on shared keys through the same stop record
their history (outcomes "unknown" included): it must be linearizable.
"""

from __future__ import annotations

import asyncio
import signal
import time

from dengine.errors import DengineError, NotLeader, Overloaded

NOT_APPLIED = (NotLeader, Overloaded)


def test_sigterm_on_the_leader_drains_writes_in_flight(cluster_factory, run, writer_cls,
                                                        history_cls):
    lc = cluster_factory(3)

    async def go():
        async with lc.client() as c, lc.client(timeout=20) as wc, lc.client() as hc:
            leader = lc.nodes[(await lc.wait_leader(c)).id]
            writer = writer_cls(wc, concurrency=30).start()
            history = history_cls([hc], workers=6, seed=4).start()
            await writer.wait_acked(200)
            await history.wait_ok(30)
            t0 = time.monotonic()
            leader.proc.send_signal(signal.SIGTERM)
            code = await asyncio.get_running_loop().run_in_executor(None, leader.wait_exit, 20)
            took = time.monotonic() - t0
            before = len(writer.acked)
            await writer.wait_acked(before + 100, timeout=30)  # the others carry on
            await history.wait_ok(30, timeout=30)
            await writer.stop()
            await history.stop()
            await history.read_all(hc)
            assert code == 0, leader.log_tail()
            assert took < 10, took  # drain_timeout_ms is 5 s; stopping adds little
            assert leader.log_count("leadership handed over before stopping") == 1
            await writer.check_all_readable(c)  # acked: present, applied exactly once
            for key, err in writer.failed:
                assert isinstance(err, DengineError), repr(err)
                if isinstance(err, NOT_APPLIED):
                    assert await c.get(key) is None, (key, err)
        result = history.check()
        assert result.ok, f"{history.summary()}\n{result.describe()}"

    run(go)
