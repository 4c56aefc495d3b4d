"""The storage quota: past it the NOSPACE alarm is raised, writes other than deletes are
refused with QuotaExceeded, reads go on; disarm works only once space is freed."""

from __future__ import annotations

import asyncio
import os

import pytest

from dengine.errors import QuotaExceeded
from dengine.node.quota import directory_bytes


def test_data_past_the_quota_raises_the_alarm_and_refuses_writes_not_reads(run,
                                                                            cluster_factory):
    async def main():
        c = cluster_factory(storage="rocksdb")
        for i in (1, 2, 3):
            # Room for about a megabyte of data above what an empty node takes.
            node = c.build(i, storage={"quota_bytes": 1})
            base = directory_bytes(node.config.cluster.data_dir)
            node.log_store.close()
            node.state_machine.close()
            await c.start_node(i, storage={"quota_bytes": base + (1 << 20)})
        try:
            leader = await c.leader()
            cl = c.client(leader)
            value = os.urandom(64 * 1024).hex()[: 64 * 1024]
            refused = None
            async with asyncio.timeout(30):
                n = 0
                while refused is None:
                    try:
                        await cl.put(f"k{n % 8}", value)
                        n += 1
                    except QuotaExceeded as e:
                        refused = e
                    await asyncio.sleep(0.01)
            assert refused.quota_bytes == leader.quota.quota_bytes
            assert refused.used_bytes > refused.quota_bytes
            assert "dengine alarm disarm" in str(refused)
            assert leader.status()["alarms"] == ["NOSPACE"]
            assert "dengine_alarm_nospace 1.0" in leader.metrics.text()
            # Reads go on; deletes (how space is freed) too; other writes do not.
            assert (await cl.get("k0")).value == value.encode()
            await cl.delete("k1")
            with pytest.raises(QuotaExceeded):
                await cl.put("other", "x")
            # Still over: the alarm stays.
            with pytest.raises(QuotaExceeded):
                await leader.quota.disarm()
            assert leader.quota.alarm
        finally:
            await c.close()

    run(main, timeout=60)


def test_disarm_after_space_is_freed_lets_writes_through_again(run, cluster_factory, tmp_path):
    async def main():
        c = cluster_factory(storage="rocksdb")
        await c.start()
        leader = await c.leader()
        quota = leader.quota
        try:
            rev = await c.client(leader).put("a", "1")
            assert rev and not quota.alarm
            # Something else filled the disk: a file in the data directory past the quota.
            quota.quota_bytes = directory_bytes(quota.data_dir) + (4 << 20)
            ballast = os.path.join(quota.data_dir, "ballast")
            with open(ballast, "wb") as f:
                f.write(b"\0" * (8 << 20))
            async with asyncio.timeout(10):
                while not quota.alarm:
                    await asyncio.sleep(0.05)
            with pytest.raises(QuotaExceeded):
                await c.client(leader).put("b", "2")
            os.unlink(ballast)  # the operator frees space
            await quota.disarm()
            assert not quota.alarm and leader.status()["alarms"] == []
            assert await c.client(leader).put("b", "2")
        finally:
            await c.close()

    run(main, timeout=60)


def test_an_alarm_in_the_log_stops_writes_and_a_removed_members_alarm_is_cleared(run,
                                                                           cluster_factory):
    """An alarm entry for a member stops writes on the leader (naming it, with its usage);
    the leader clears the alarm of a member that is not in the cluster at its next check."""
    from dengine.statemachine.alarms import encode_alarm

    async def main():
        c = cluster_factory(storage="rocksdb")
        await c.start()
        leader = await c.leader()
        try:
            await leader.propose(encode_alarm(True, 99, used_bytes=7, quota_bytes=5))
            with pytest.raises(QuotaExceeded) as refused:
                await c.client(leader).put("a", "1")
            assert (refused.value.node_id, refused.value.used_bytes,
                    refused.value.quota_bytes) == (99, 7, 5)
            assert "NOSPACE on 99" in leader.status()["alarms"]
            await leader.cluster_alarm.sync()  # what the quota check runs every second
            assert leader.cluster_alarm.table.active() == {}
            assert await c.client(leader).put("a", "1")
        finally:
            await c.close()

    run(main, timeout=60)
