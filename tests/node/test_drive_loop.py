"""The drive loop on three in-process nodes (in-memory transport, memory storage): election,
writes, reads at every consistency level, redirects, failover, transfer, exactly-once."""

from __future__ import annotations

import asyncio

import pytest

from dengine.client.types import Delete, Put
from dengine.errors import (
    InvalidArgument,
    NotLeader,
    OperationTimeout,
    OutcomeUnknown,
    PayloadTooLarge,
)
from dengine.node.service import RequestHandler
from dengine.v1 import client_pb2 as pb


def test_one_leader_is_elected_and_writes_reach_every_node(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            assert sum(n.is_leader for n in c.nodes.values()) == 1
            cl = c.client(leader)
            rev = await cl.put("a", "1")
            assert rev > 1
            await c.wait_applied(rev)
            for n in c.nodes.values():
                kv = n.state_machine.get(b"a")
                assert kv is not None and kv.value == b"1" and kv.revision == rev
                assert n.leader_id == leader.node_id
        finally:
            await c.close()

    run(main)


def test_concurrent_writes_are_batched_and_all_answered(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            cl = c.client(await c.leader())
            revs = await asyncio.gather(*(cl.put(f"k{i}", str(i)) for i in range(500)))
            assert len(set(revs)) == 500  # one entry each, each answered with its own index
            page = await cl.scan(prefix="k", limit=1000)
            assert len(page.kvs) == 500
            assert {kv.key: kv.revision for kv in page.kvs} == {
                f"k{i}".encode(): r for i, r in enumerate(revs)}
        finally:
            await c.close()

    run(main)


def test_reads_at_every_consistency_level(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            cl = c.client(leader)
            rev = await cl.put("k", "v1")
            for level in ("linearizable", "lease", "serializable"):
                kv = await cl.get("k", consistency=level)
                assert kv.value == b"v1", level
            assert await cl.get("missing") is None
            many = await cl.get_many(["k", "missing"])
            assert set(many) == {b"k"}
            follower = c.followers()[0]
            await c.wait_applied(rev, [follower])
            fc = c.client(follower)
            assert (await fc.get("k", consistency="serializable")).value == b"v1"
            # A follower serves linearizable (and lease) reads through a ReadIndex round to
            # the leader: a write acknowledged by the leader is seen at once, no waiting.
            for i, level in enumerate(("linearizable", "lease")):
                await cl.put("k", f"v{i + 2}")
                assert (await fc.get("k", consistency=level)).value == f"v{i + 2}".encode()
        finally:
            await c.close()

    run(main)


def test_a_follower_batches_concurrent_reads_into_few_read_index_rounds(run,
                                                                      cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            await c.client(leader).put("k", "v")
            follower = c.followers()[0]
            fc = c.client(follower)
            before = follower.reads.follower.rounds
            got = await asyncio.gather(*(fc.get("k") for _ in range(200)))
            assert all(kv.value == b"v" for kv in got)
            rounds = follower.reads.follower.rounds - before
            assert 1 <= rounds <= 20, rounds  # one round per round trip, not one per read
        finally:
            await c.close()

    run(main)


def test_follower_refuses_writes_with_the_leader_hint(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            follower = c.followers()[0]
            async with asyncio.timeout(10):  # it learns the leader from its first message
                while follower.core.leader_id != leader.node_id:
                    await asyncio.sleep(0.01)
            fc = c.client(follower)
            with pytest.raises(NotLeader) as info:
                await fc.put("x", "y")
            assert (info.value.leader_id, info.value.leader_addr) == (leader.node_id,
                                                                      leader.address)
        finally:
            await c.close()

    run(main)


def test_cas_delete_batch_and_scan_pages(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            cl = c.client(await c.leader())
            await cl.put("a", "1")
            r = await cl.cas("a", expected_value="0", new_value="2")
            assert not r.succeeded and r.current.value == b"1"
            r = await cl.cas("a", expected_value="1", new_value="2")
            assert r.succeeded and r.current.value == b"2" and r.current.version == 2
            await cl.batch([Put("b", "x"), Put("c", "y"), Delete("a")])
            await cl.write_batch(puts={"d": "1"}, deletes=["d"])
            assert await cl.get("d") is None
            assert await cl.get("a") is None
            assert await cl.delete("b") is True
            assert await cl.delete("b") is False
            for i in range(5):
                await cl.put(f"p/{i}", "v")
            first = await cl.scan(prefix="p/", limit=3)
            assert [kv.key for kv in first.kvs] == [b"p/0", b"p/1", b"p/2"] and first.more
            rest = await cl.scan(start=first.continuation, prefix="p/", limit=3)
            assert [kv.key for kv in rest.kvs] == [b"p/3", b"p/4"] and not rest.more
        finally:
            await c.close()

    run(main)


def test_a_retried_write_is_applied_once(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            h = RequestHandler(leader)
            reg = await h.call("register_session", pb.RegisterSessionRequest(),
                               pb.RegisterSessionResponse)
            cid = reg.client_id
            assert not reg.HasField("error") and cid > 0
            req = pb.PutRequest(key=b"k", value=b"v", session=pb.Session(client_id=cid, seq=1))
            first = await h.call("put", req, pb.PutResponse)
            again = await h.call("put", req, pb.PutResponse)  # the response was "lost"
            assert not first.HasField("error") and not again.HasField("error")
            assert again.revision == first.revision
            kv = leader.state_machine.get(b"k")
            assert kv.version == 1 and kv.revision == first.revision
            nxt = pb.PutRequest(key=b"k", value=b"w", session=pb.Session(client_id=cid, seq=2))
            await h.call("put", nxt, pb.PutResponse)
            assert leader.state_machine.get(b"k").version == 2
            # a session nobody registered: refused with SESSION_EXPIRED, never applied
            forged = pb.PutRequest(key=b"k", value=b"forged",
                                   session=pb.Session(client_id=cid + 10**9, seq=1))
            bad = await h.call("put", forged, pb.PutResponse)
            assert bad.error.code == pb.SESSION_EXPIRED
            assert leader.state_machine.get(b"k").value == b"w"
        finally:
            await c.close()

    run(main)


def test_bad_requests_get_clear_errors_and_the_node_keeps_serving(run, cluster_factory):
    async def main():
        c = await cluster_factory(max_msg_bytes=64 * 1024).start()
        try:
            leader = await c.leader()
            cl = c.client(leader)
            with pytest.raises(PayloadTooLarge):
                await cl.put("big", b"x" * (65 * 1024))
            with pytest.raises(InvalidArgument):
                await cl.put("", "empty key")
            with pytest.raises(InvalidArgument):
                await cl.get("k", consistency=99)
            h = RequestHandler(leader)
            bad = await h.call("put", pb.PutRequest(key=b"k", session=pb.Session(client_id=1)),
                               pb.PutResponse)
            assert bad.error.code == pb.INVALID_ARGUMENT
            bad = await h.call("scan", pb.ScanRequest(start=b"b", end=b"a"), pb.ScanResponse)
            assert bad.error.code == pb.INVALID_ARGUMENT
            bad = await h.call("write_batch", pb.WriteBatchRequest(), pb.WriteBatchResponse)
            assert bad.error.code == pb.INVALID_ARGUMENT
            with pytest.raises(InvalidArgument):
                await cl.add_learner(0, "127.0.0.1:1")
            for bad_addr in ("", "nohost", "h:port", "h:0", "h:70000"):
                with pytest.raises(InvalidArgument):
                    await cl.add_learner(7, bad_addr)
            assert await cl.put("still", "serving") > 0
        finally:
            await c.close()

    run(main)


def test_leader_failover_keeps_acknowledged_writes(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            old = await c.leader()
            cl = c.client(old)
            acked = {f"k{i}": await cl.put(f"k{i}", str(i)) for i in range(20)}
            await c.stop_node(old.node_id)
            new = await c.leader(exclude=(old.node_id,))
            assert new.node_id != old.node_id
            nc = c.client(new)
            for key in acked:
                assert (await nc.get(key)).value == key[1:].encode()
            assert await nc.put("after", "failover") > max(acked.values())
            # The old leader restarts from its (memory) storage and catches up.
            back = await c.start_node(old.node_id)
            await c.wait_applied(new.state_machine.applied_index(), [back])
            assert back.state_machine.get(b"after").value == b"failover"
            assert not back.is_leader
        finally:
            await c.close()

    run(main)


def test_leadership_transfer_to_a_named_node(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            target = c.followers()[0].node_id
            await c.client(leader).put("before", "transfer")
            await c.client(leader).transfer_leader(target)
            assert c.nodes[target].is_leader
            assert not leader.is_leader
            assert await c.client(target).put("after", "transfer") > 0
        finally:
            await c.close()

    run(main)


def test_status_reports_role_term_indexes_and_members(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            rev = await c.client(leader).put("a", "b")
            st = await c.client(leader).status()
            assert st.is_leader and st.role == "leader" and st.cluster_id == "test"
            assert st.commit_index >= rev and st.applied_index >= rev
            assert {(m.id, m.role) for m in st.members} == {(1, "voter"), (2, "voter"),
                                                            (3, "voter")}
            assert {m.address for m in st.members} == set(c.initial.values())
        finally:
            await c.close()

    run(main)


def test_a_write_that_cannot_commit_times_out(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            leader.transport.faults.isolate(*[i for i in c.nodes if i != leader.node_id])
            with pytest.raises(OperationTimeout):
                await c.client(leader).put("k", "v", timeout=0.2)
        finally:
            await c.close()

    run(main)


def test_lease_reads_need_no_round_trip_while_the_lease_holds(run, cluster_factory):
    async def main():
        # A long lease, so that it still holds when the leader is cut off below.
        c = await cluster_factory(election_ms=600, lease_ms=500, heartbeat_ms=20).start()
        try:
            leader = await c.leader()
            cl = c.client(leader)
            await cl.put("k", "v")
            await cl.get("k")  # a confirmed round: the lease starts
            leader.transport.faults.isolate(*[i for i in c.nodes if i != leader.node_id])
            assert (await cl.get("k", consistency="lease", timeout=0.2)).value == b"v"
            with pytest.raises((OperationTimeout, NotLeader)):  # needs the cut-off quorum
                await cl.get("k", consistency="linearizable", timeout=0.2)
        finally:
            await c.close()

    run(main)


def test_a_write_overwritten_by_a_new_leader_fails_at_once(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            old = await c.leader()
            await c.client(old).put("a", "1")
            old.transport.faults.isolate(*[i for i in c.nodes if i != old.node_id])
            cl = c.client(old)
            # More entries than the new leader will write: those past its log are truncated,
            # never applied, and must still be answered.
            lost = [asyncio.create_task(cl.put(f"lost{i}", "x", timeout=20)) for i in range(5)]
            new = await c.leader(exclude=(old.node_id,))
            await c.client(new).put("b", "2")
            old.transport.faults.heal()
            for task in lost:
                # Gone from the old leader's log, but as far as it can know another log may
                # hold it: outcome unknown (retry with the session), never PROPOSAL_DROPPED.
                with pytest.raises(OutcomeUnknown, match="new leader"):
                    await asyncio.wait_for(task, 5)
            assert await c.client(new).get("lost0") is None
        finally:
            await c.close()

    run(main)


def test_a_scan_without_a_limit_is_paged_by_the_server(run, cluster_factory):
    async def main():
        from dengine.node.service import DEFAULT_SCAN_LIMIT

        c = await cluster_factory().start()
        try:
            cl = c.client(await c.leader())
            n = DEFAULT_SCAN_LIMIT + 5
            await cl.write_batch(puts={f"s/{i:05}": "v" for i in range(n)})
            first = await cl.scan(prefix="s/")
            assert len(first.kvs) == DEFAULT_SCAN_LIMIT and first.more
            rest = await cl.scan(first.continuation, prefix="s/")
            assert len(rest.kvs) == 5 and not rest.more
            assert [kv.key async for kv in cl.scan_iter(prefix="s/", page_size=400)] == [
                f"s/{i:05}".encode() for i in range(n)]
        finally:
            await c.close()

    run(main)


def test_callers_that_give_up_early_do_not_upset_the_node(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            target = c.followers()[0].node_id
            follower = c.nodes[target]
            # Each call is abandoned before the drive loop gets to it.
            for call in (leader.transfer_leader(target), follower.add_learner(9, "h:9"),
                         leader.add_learner(2, "h:2"), leader.read_barrier()):
                task = asyncio.create_task(call)
                await asyncio.sleep(0)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(0.2)
            assert all(n.running and n.fatal is None for n in c.nodes.values())
            lead = await c.leader()
            assert await c.client(lead).put("still", "fine") > 0
        finally:
            await c.close()

    run(main)


def test_a_peer_message_the_core_chokes_on_is_dropped_not_fatal(run, cluster_factory):
    async def main():
        from dengine.raft.messages import Message, MessageType

        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            follower = c.followers()[0]
            original = follower.core.step

            def choke(msg):
                if msg.context == b"poison":
                    raise RuntimeError("core bug")
                return original(msg)

            follower.core.step = choke
            follower.on_message(Message(MessageType.HEARTBEAT, follower.node_id,
                                        leader.node_id, leader.core.term, context=b"poison"))
            rev = await c.client(leader).put("k", "v")
            await c.wait_applied(rev, [follower])
            assert follower.running and follower.fatal is None
        finally:
            await c.close()

    run(main)


def test_compare_and_set_expect_absent_is_explicit(run, cluster_factory):
    async def main():
        c = await cluster_factory().start()
        try:
            cl = c.client(await c.leader())
            r = await cl.compare_and_set("fresh", expected_absent=True, new_value="1")
            assert r.succeeded and r.current.value == b"1"
            r = await cl.compare_and_set("fresh", expected_absent=True, new_value="2")
            assert not r.succeeded and r.current.value == b"1"  # it exists now
            with pytest.raises(TypeError, match="needs a condition"):
                await cl.compare_and_set("fresh", expected_value=None, new_value="3")
            assert (await cl.get("fresh")).value == b"1"  # nothing was written
        finally:
            await c.close()

    run(main)


def test_a_broken_core_invariant_stops_the_node(run, cluster_factory):
    async def main():
        from dengine.errors import InvariantViolation, Unavailable
        from dengine.raft.messages import Message, MessageType

        c = await cluster_factory().start()
        try:
            leader = await c.leader()
            follower = c.followers()[0]
            core = follower.core
            original = core.step

            def corrupt(msg):
                if msg.context == b"corrupt":
                    # A core bug: commit past the log. The real check must refuse it.
                    core.log.commit_to(core.last_index + 5)
                return original(msg)

            core.step = corrupt
            follower.on_message(Message(MessageType.HEARTBEAT, follower.node_id,
                                        leader.node_id, leader.core.term, context=b"corrupt"))
            await asyncio.wait_for(follower.stopped.wait(), 5)
            assert isinstance(follower.fatal, InvariantViolation)
            assert "past the last index" in str(follower.fatal)
            assert not follower.running
            assert core.commit_index <= core.last_index  # it never went on wrong
            with pytest.raises(Unavailable):
                await follower.read_barrier()
        finally:
            await c.close()

    run(main)
