"""CompactStorage and the storage fields of Status, over real gRPC: one member flushes and
compacts its state machine store (the others do not), and Status reports what each member's
RocksDB stores owe and run."""

from __future__ import annotations

import asyncio

from dengine.client import Client


def test_compact_storage_compacts_that_member_only_and_status_reports_it(run, cluster_factory):
    async def main():
        c = await cluster_factory(storage="rocksdb", grpc=True).start()
        try:
            leader = await c.leader()
            follower = c.followers()[0]
            async with Client([leader.address], timeout=10) as cl:
                for i in range(300):
                    await cl.put(f"k{i:04d}", "v" * 200)
                await c.wait_applied(leader.state_machine.applied_index())

                def memtable_entries(node) -> int:
                    return node.state_machine.engine._live.property_int_value(
                        "rocksdb.num-entries-active-mem-table")

                assert memtable_entries(follower) > 0 and memtable_entries(leader) > 0
                secs = await cl.compact_storage(follower.address)
                assert secs >= 0
                assert memtable_entries(follower) == 0  # flushed, and compacted
                assert follower.state_machine.engine._live.property_int_value(
                    "rocksdb.num-files-at-level0") == 0
                assert memtable_entries(leader) > 0  # only the member asked
                assert (await cl.get("k0299")).value == b"v" * 200
                async with asyncio.timeout(30):  # a follow-up compaction may still run
                    while (st := await cl.status(follower.address)).compactions_running:
                        await asyncio.sleep(0.05)
                assert st.compaction_pending_bytes == 0
                answers = await cl.statuses()
                assert all(a.compaction_pending_bytes >= 0 for a in answers.values())
        finally:
            await c.close()

    run(main, timeout=60)
