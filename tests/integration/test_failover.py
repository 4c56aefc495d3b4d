"""Crashes for real: kill -9 the leader while a writer runs; a follower down while the leader
compacts its log comes back through a snapshot."""

from __future__ import annotations

import asyncio
import time


def test_kill_the_leader_a_new_one_is_elected_and_nothing_acknowledged_is_lost(
    cluster_factory, run, writer_cls, election_s
):
    lc = cluster_factory(3)

    async def go():
        async with lc.client() as c, lc.client() as wc:
            old = await lc.wait_leader(c)
            writer = writer_cls(wc).start()
            crowd = writer_cls(wc, prefix="crowd/", concurrency=20).start()  # over the stream
            await writer.wait_acked(50)
            await crowd.wait_acked(200)
            t0 = time.monotonic()
            lc.nodes[old.id].kill()  # SIGKILL: no goodbye
            survivors = [i for i in lc.nodes if i != old.id]
            new = await lc.wait_leader(c, among=survivors, timeout=15)
            elected_after = time.monotonic() - t0
            assert new.id != old.id and new.term > old.term
            # "a few election timeouts" (randomized up to 2x, plus pre-vote and detection)
            assert elected_after < 10 * election_s, elected_after
            acked_at_kill = len(writer.acked)
            await writer.wait_acked(acked_at_kill + 50)
            await crowd.wait_acked(len(crowd.acked) + 200)
            await writer.stop()
            await crowd.stop()
            assert not writer.failed, writer.failed[:3]  # the client rode through it
            assert not crowd.failed, crowd.failed[:3]
            assert wc.stats.streams_broken >= 1  # the crowd's stream died with the leader
            await writer.check_all_readable(c)
            await crowd.check_all_readable(c)
            # the killed node restarts on its data and catches up
            lc.nodes[old.id].start()
            top = (await c.status()).commit_index
            st = await lc.wait_applied(c, old.id, top, timeout=20)
            assert st.leader_id == new.id or st.term >= new.term
            sample = sorted(writer.acked)[-20:]
            got = await c.get_many(
                sample, consistency="serializable", endpoint=lc.nodes[old.id].address
            )
            assert {k: v.value for k, v in got.items()} == {k: writer.acked[k] for k in sample}

    run(go)


def test_a_follower_down_during_compaction_gets_a_snapshot_and_catches_up(
    cluster_factory, run, writer_cls
):
    lc = cluster_factory(3, raft={"snapshot_interval_entries": 100, "compaction_tail_entries": 10})

    async def go():
        async with lc.client() as c:
            leader = await lc.wait_leader(c)
            down = next(i for i in lc.nodes if i != leader.id)
            lc.nodes[down].kill()
            expected = {f"s/{j:04}".encode(): f"v{j}".encode() for j in range(400)}
            items = list(expected.items())
            for i in range(0, 400, 50):  # 400 entries (one per put): several snapshots
                await asyncio.gather(*(c.put(k, v) for k, v in items[i : i + 50]))
            top = (await c.status()).commit_index
            await lc.nodes[leader.id].wait_log("log compacted")
            lc.nodes[down].start()
            await lc.wait_applied(c, down, top, timeout=25)
            assert "snapshot installed" in lc.nodes[down].log_path.read_text()
            addr = lc.nodes[down].address
            got = [
                (kv.key, kv.value)
                async for kv in c.scan_iter(prefix=b"s/", consistency="serializable", endpoint=addr)
            ]
            assert dict(got) == expected
            # and it keeps up afterwards, as an ordinary follower
            rev = await c.put(b"after", b"snapshot")
            await lc.wait_applied(c, down, rev)

    run(go)
