"""kill -9 a follower again and again while it catches up from a streamed snapshot: wherever
the kills land (start-up, transfer, install, after: it depends on timing), the restarted node
serves a whole state (never half of one) and ends with every acknowledged key. The install
points themselves are covered one by one in tests/statemachine/test_restore_crash.py and
tests/node/test_snapshot_costs.py."""

from __future__ import annotations

import asyncio
import os


def test_kill_9_during_snapshot_catch_up_never_leaves_a_half_state(cluster_factory, run):
    lc = cluster_factory(3, raft={"snapshot_interval_entries": 50, "compaction_tail_entries": 5,
                                  "snapshot_interval_bytes": 1 << 20})

    async def go():
        async with lc.client() as c:
            leader = await lc.wait_leader(c)
            down = next(i for i in lc.nodes if i != leader.id)
            lc.nodes[down].kill()
            value = os.urandom(2048)
            expected = {f"s/{j:05}".encode(): value for j in range(6000)}
            items = list(expected.items())
            for i in range(0, len(items), 200):
                await c.write_batch(puts=items[i : i + 200])
            await lc.nodes[leader.id].wait_log("log compacted")
            node = lc.nodes[down]
            for delay in (0.6, 0.8, 1.0, 1.2, 1.4):
                node.start()
                await asyncio.sleep(delay)
                node.kill()  # SIGKILL, wherever the transfer or install is
            node.start()
            top = (await c.status()).commit_index
            await lc.wait_applied(c, down, top, timeout=40)
            got = {kv.key: kv.value async for kv in c.scan_iter(
                prefix=b"s/", consistency="serializable", endpoint=node.address)}
            assert got == expected

    run(go, timeout=120)
