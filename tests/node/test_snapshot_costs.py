"""Snapshots that cost O(changes): a durable state machine is its own snapshot, streamed on
demand from a pinned view; no full copy is written for log compaction."""

from __future__ import annotations

import asyncio
import os

from dengine.node.snapshots import write_snapshot


def test_a_durable_state_machine_compacts_the_log_without_writing_a_snapshot_file(
        run, cluster_factory):
    async def main():
        c = cluster_factory(storage="rocksdb", snapshot_interval_entries=40,
                            compaction_tail_entries=5)
        await c.start()
        try:
            leader = await c.leader()
            cl = c.client(leader)
            await asyncio.gather(*(cl.put(f"k{i:03}", "v" * 100) for i in range(300)))
            await c.wait_applied(leader.state_machine.applied_index())
            async with asyncio.timeout(10):
                while any(n.log_store.first_index() < 200 for n in c.nodes.values()):
                    await asyncio.sleep(0.01)
            for n in c.nodes.values():
                assert n.log_store.snapshot_meta().index >= 200
                assert n.snapshots.list() == []  # nothing copied
                assert os.listdir(n.snapshots.directory) in ([], ["incoming"])
        finally:
            await c.close()

    run(main, timeout=40)


def test_a_lagging_follower_gets_a_view_pinned_when_it_is_needed(run, cluster_factory):
    async def main():
        c = cluster_factory(storage="rocksdb", snapshot_interval_entries=40,
                            compaction_tail_entries=5)
        await c.start()
        try:
            leader = await c.leader()
            lagger = c.followers()[0].node_id
            await c.stop_node(lagger)
            cl = c.client(leader)
            await asyncio.gather(*(cl.put(f"k{i:03}", str(i)) for i in range(200)))
            async with asyncio.timeout(10):
                while leader.log_store.first_index() < 100:
                    await asyncio.sleep(0.01)
            announced = leader.core.snapshot_meta.index
            # Writes after the snapshot point: the view sent is pinned later and holds them.
            await asyncio.gather(*(cl.put(f"late{i}", "x") for i in range(20)))
            back = await c.start_node(lagger)
            await c.wait_applied(leader.state_machine.applied_index(), [back])
            installed = back.log_store.snapshot_meta()
            assert installed.index > announced
            assert back.state_machine.get(b"late0") is not None
            # The received file is gone once the state machine holds the data (a second
            # transfer the leader started meanwhile may still be installing: wait for it).
            async with asyncio.timeout(5):
                while back.snapshots.list():
                    await asyncio.sleep(0.02)
            assert back.state_machine.range(b"", None, 0).items == \
                leader.state_machine.range(b"", None, 0).items
        finally:
            await c.close()

    run(main, timeout=40)


def test_a_restart_after_an_install_cut_short_restores_from_the_kept_file(run, cluster_factory):
    """The install order keeps the file until the state machine holds the data: a node whose
    log was reset to a snapshot point but whose machine is behind it restores from the file
    at start, and a node that is not behind removes leftover files."""
    async def main():
        c = cluster_factory(storage="rocksdb", snapshot_interval_entries=10_000,
                            compaction_tail_entries=5)
        await c.start()
        try:
            leader = await c.leader()
            cl = c.client(leader)
            await asyncio.gather(*(cl.put(f"k{i:03}", str(i)) for i in range(20)))
            await c.wait_applied(leader.state_machine.applied_index())
            fid = c.followers()[0].node_id
            await c.stop_node(fid)
            await asyncio.gather(*(cl.put(f"k{i:03}", str(i)) for i in range(20, 50)))
            # The leader's state as a received-and-adopted file on the stopped follower, and
            # its log reset to that point: what an install leaves when cut after the reset.
            src = leader.state_machine.snapshot()
            conf = leader.core.conf_state_at(src.index)
            back = c.build(fid)
            meta, _path = write_snapshot(back.state_machine, back.snapshots, src, conf,
                                         dict(leader.book.addresses))
            src.close()
            assert back.state_machine.applied_index() < meta.index
            back.log_store.reset(meta.index, meta.term)
            back.log_store.save_snapshot_meta(meta)
            back.log_store.close()
            back.state_machine.close()
            node = await c.start_node(fid)
            assert node.state_machine.applied_index() >= meta.index
            assert node.state_machine.get(b"k049") is not None
            rev = await cl.put("after", "x")
            await c.wait_applied(rev, [node])
            await c.stop_node(fid)
            node = await c.start_node(fid)  # not behind: the leftover file is removed
            assert node.snapshots.list() == []
        finally:
            await c.close()

    run(main, timeout=40)
