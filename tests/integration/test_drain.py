"""SIGTERM drains a leader with writes in flight (the issue: 547 of 600 in-flight writes got a
bare CANCELLED and one reported as failed had committed).

The leader hands over leadership, answers what it holds and exits 0 within its drain deadline;
every write the client saw succeed is in the log exactly once, and every write that failed
failed with a typed error whose class matches what the log holds: a "not applied" error
(NOT_LEADER, RESOURCE_EXHAUSTED, PAYLOAD_TOO_LARGE...) only for a write that is absent.
"""

from __future__ import annotations

import asyncio
import signal
import time

from dengine.errors import DengineError, NotLeader, Overloaded

NOT_APPLIED = (NotLeader, Overloaded)


def test_sigterm_on_the_leader_drains_writes_in_flight(cluster_factory, run, writer_cls):
    lc = cluster_factory(3)

    async def go():
        async with lc.client() as c, lc.client(timeout=20) as wc:
            leader = lc.nodes[(await lc.wait_leader(c)).id]
            writer = writer_cls(wc, concurrency=30).start()
            await writer.wait_acked(200)
            t0 = time.monotonic()
            leader.proc.send_signal(signal.SIGTERM)
            code = await asyncio.get_running_loop().run_in_executor(None, leader.wait_exit, 20)
            took = time.monotonic() - t0
            before = len(writer.acked)
            await writer.wait_acked(before + 100, timeout=30)  # the others carry on
            await writer.stop()
            assert code == 0, leader.log_tail()
            assert took < 10, took  # drain_timeout_ms is 5 s; stopping adds little
            assert leader.log_count("leadership handed over before stopping") == 1
            await writer.check_all_readable(c)  # acked: present, applied exactly once
            for key, err in writer.failed:
                assert isinstance(err, DengineError), repr(err)
                if isinstance(err, NOT_APPLIED):
                    assert await c.get(key) is None, (key, err)

    run(go)
