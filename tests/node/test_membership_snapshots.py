"""Membership changes, snapshot catch-up, restart from storage, graceful stop, identity."""

from __future__ import annotations

import asyncio
import os

import pytest

from dengine.errors import ClusterMismatch, ConfChangeError, Unavailable
from dengine.node.bootstrap import NODE_FILE


def test_add_learner_promote_and_remove_while_writing(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        stop = asyncio.Event()
        acked: dict[str, int] = {}

        async def writer():
            i = 0
            while not stop.is_set():
                leader = await c.leader()
                try:
                    acked[f"w{i}"] = await c.client(leader).put(f"w{i}", "x")
                    i += 1
                except Exception:  # noqa: BLE001 - leader changes: retry
                    await asyncio.sleep(0.02)

        task = asyncio.create_task(writer())
        try:
            leader = await c.leader()
            new = await c.start_node(4, join=c.addresses[1])
            assert new.core.role.name == "LEARNER"
            cl = c.client(leader)
            members = await cl.add_learner(4, c.addresses[4])
            assert {(m.id, m.role) for m in members} >= {(4, "learner")}
            # What `--join` does with the answer: learn where the members listen.
            new.membership.learn_members((m.id, m.address) for m in members)
            await asyncio.sleep(0.2)
            await c.wait_applied(leader.state_machine.applied_index(), [new])
            await cl.promote(4)
            assert 4 in leader.core.conf_state.voters
            with pytest.raises(ConfChangeError):
                await cl.promote(5)
            victim = next(i for i in (1, 2, 3) if i != leader.node_id)
            members = await cl.remove_member(victim)
            assert victim not in {m.id for m in members}
            await asyncio.sleep(0.3)
            stop.set()
            await task
            assert len(acked) > 5
            leader = await c.leader()
            survivors = [n for i, n in c.nodes.items() if i != victim]
            await c.wait_applied(leader.state_machine.applied_index(), survivors)
            for key, rev in acked.items():
                kv = new.state_machine.get(key.encode())
                assert kv is not None and kv.revision == rev
            st = await c.client(new).status()
            assert {(m.id, m.role) for m in st.members} == (
                {(i, "voter") for i in (1, 2, 3, 4) if i != victim})
        finally:
            stop.set()
            await task
            await c.close()

    run(main, timeout=40)


def test_lagging_follower_catches_up_from_a_snapshot(run, cluster_factory):
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
                while leader.log_store.first_index() < 100:  # compacted behind the lagger
                    await asyncio.sleep(0.01)
            back = await c.start_node(lagger)
            await c.wait_applied(leader.state_machine.applied_index(), [back])
            async with asyncio.timeout(10):  # the sender learns of the install just after
                while leader.transport.stats.snapshots_sent < 1:
                    await asyncio.sleep(0.01)
            assert back.transport.stats.snapshots_received >= 1
            assert back.log_store.first_index() > 100
            assert back.state_machine.range(b"k", None, 0).items == \
                leader.state_machine.range(b"k", None, 0).items
            # It keeps replicating normally afterwards.
            rev = await cl.put("after", "snapshot")
            await c.wait_applied(rev, [back])
            assert back.log_store.snapshot_meta().index >= 100
        finally:
            await c.close()

    run(main, timeout=40)


@pytest.mark.parametrize("engine", ["rocksdb", "file"])
def test_restart_reads_state_and_membership_from_storage(run, cluster_factory, engine):
    async def main():
        c = cluster_factory(storage=engine, snapshot_interval_entries=30,
                            compaction_tail_entries=3)
        await c.start()
        leader = await c.leader()
        await asyncio.gather(*(c.client(leader).put(f"k{i}", "v") for i in range(100)))
        applied = leader.state_machine.applied_index()
        await c.wait_applied(applied)
        async with asyncio.timeout(10):  # snapshots are taken in the background
            while any(n.log_store.first_index() == 1 for n in c.nodes.values()):
                await asyncio.sleep(0.01)
        await c.close()
        # A different initial_members in the file must be ignored on restart.
        c.initial = {**c.initial, 9: "127.0.0.1:1"}
        for i in (1, 2, 3):
            await c.start_node(i)
        try:
            leader = await c.leader()
            assert set(leader.core.conf_state.voters) == {1, 2, 3}
            for n in c.nodes.values():
                assert n.state_machine.applied_index() >= applied
                assert n.log_store.first_index() > 1  # the compacted log was reopened
            assert (await c.client(leader).get("k99")).value == b"v"
        finally:
            await c.close()

    run(main, timeout=40)


def test_graceful_stop_fails_in_flight_requests_clearly(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            cl = c.client(leader)
            await cl.put("a", "1")
            # Cut the leader off so that a write cannot commit, then stop it.
            leader.transport.faults.isolate(*[i for i in c.nodes if i != leader.node_id])
            pending = asyncio.create_task(cl.put("b", "2"))
            await asyncio.sleep(0.05)
            assert not pending.done()
            await leader.stop("SIGTERM")
            with pytest.raises(Unavailable, match="stopped before the request completed"):
                await pending
            with pytest.raises(Unavailable):
                await cl.put("c", "3")
            assert leader.stopped.is_set()
        finally:
            await c.close()

    run(main)


def test_data_dir_of_another_cluster_or_node_is_refused(tmp_path, cluster_factory):
    c = cluster_factory(storage="rocksdb")
    node = c.build(1)
    node.log_store.close()
    node.state_machine.close()
    assert os.path.exists(tmp_path / "n1" / NODE_FILE)
    c.cluster_id = "other"
    with pytest.raises(ClusterMismatch, match="cluster id"):
        c.build(1)
    c.cluster_id = "test"
    os.rename(tmp_path / "n1", tmp_path / "n2")
    with pytest.raises(ClusterMismatch, match="node id"):
        c.build(2)


def test_fault_file_cuts_and_heals_links(run, cluster_factory, tmp_path):
    async def main():
        import json

        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            others = [i for i in c.nodes if i != leader.node_id]
            path = tmp_path / f"n{leader.node_id}" / "FAULTS"
            path.write_text(json.dumps({"drop_to": others, "drop_from": others}))
            async with asyncio.timeout(10):  # check-quorum: the cut-off leader steps down
                while leader.is_leader:
                    await asyncio.sleep(0.02)
            assert leader.transport.faults.blocks_to(others[0])
            path.unlink()
            async with asyncio.timeout(10):
                while leader.transport.faults.blocks_to(others[0]):
                    await asyncio.sleep(0.02)
            new = await c.leader()
            rev = await c.client(new).put("healed", "yes")
            await c.wait_applied(rev, [leader])
        finally:
            await c.close()

    run(main)


def test_a_memory_state_machine_is_rebuilt_from_the_snapshot_file_on_restart(run,
                                                                           cluster_factory):
    async def main():
        c = cluster_factory(storage="rocksdb", snapshot_interval_entries=30,
                            compaction_tail_entries=3)
        mem = {"statemachine": {"engine": "memory"}}
        for i in (1, 2, 3):
            await c.start_node(i, **mem)
        try:
            leader = await c.leader()
            cl = c.client(leader)
            await asyncio.gather(*(cl.put(f"k{i}", str(i)) for i in range(100)))
            node = c.followers()[0]
            async with asyncio.timeout(10):
                while node.log_store.first_index() == 1:
                    await asyncio.sleep(0.01)
            await c.stop_node(node.node_id)
            back = await c.start_node(node.node_id, **mem)
            assert back.state_machine.applied_index() >= back.log_store.first_index() - 1
            await c.wait_applied(leader.state_machine.applied_index(), [back])
            for i in range(100):
                assert back.state_machine.get(f"k{i}".encode()).value == str(i).encode()
        finally:
            await c.close()

    run(main)


def test_a_learner_that_has_not_caught_up_is_not_promoted(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            cl = c.client(leader)
            await cl.add_learner(4, c.addresses[4])  # node 4 never starts
            with pytest.raises(ConfChangeError, match="catching up"):
                await cl.promote(4)
            members = await cl.remove_member(4)
            assert 4 not in {m.id for m in members}
            members = await cl.remove_member(4)  # a retry of an applied removal: success
            assert 4 not in {m.id for m in members}
            with pytest.raises(ConfChangeError, match="not a member"):
                await cl.remove_member(99)  # never a member
        finally:
            await c.close()

    run(main)


def test_a_damaged_snapshot_file_is_refused_and_the_follower_is_unharmed(run, cluster_factory,
                                                                         tmp_path):
    async def main():
        from dengine.raft.types import SnapshotMeta
        from dengine.transport.base import IncomingSnapshot

        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            follower = c.followers()[0]
            rev = await c.client(leader).put("k", "v")
            await c.wait_applied(rev, [follower])
            bad = tmp_path / "bad.snap"
            bad.write_bytes(b"DGSNAP01 not really a snapshot")
            meta = SnapshotMeta(rev + 100, leader.core.term, leader.core.conf_state)
            incoming = IncomingSnapshot(leader.node_id, leader.core.term, meta, bad, 30)
            with pytest.raises(Exception, match="snapshot"):
                await follower.on_snapshot(incoming)
            assert follower.running and follower.core.commit_index < rev + 100
            rev = await c.client(leader).put("k2", "v2")
            await c.wait_applied(rev, [follower])
        finally:
            await c.close()

    run(main)


def test_a_change_asked_while_another_is_pending_waits_for_it(run, cluster_factory):
    """One change at a time is the core's rule, not the caller's problem: a second change (two
    operators at once, or a retry that reaches a new leader before its first commit, whose
    log may hold an uncommitted change) waits for the pending one and then goes ahead."""
    async def main():
        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            cl = c.client(leader)
            await asyncio.gather(cl.add_learner(4, "127.0.0.1:1"),
                                 cl.add_learner(5, "127.0.0.1:2"))
            assert {4, 5} <= leader.core.conf_state.learners
            # A new leader counts its whole log as possibly holding a change until its first
            # commit; a change asked the moment it wins waits for that commit.
            target = c.followers()[0]
            await cl.transfer_leader(target.node_id)
            await asyncio.gather(*(c.client(target).remove_member(i) for i in (4, 5)))
            assert not {4, 5} & target.core.conf_state.learners
        finally:
            await c.close()

    run(main, timeout=40)
