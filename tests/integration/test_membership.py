"""Membership on real processes while a writer runs: add a learner, let it catch up, promote
it, remove an old member; no acknowledged write is lost."""

from __future__ import annotations

import asyncio

import pytest

from dengine import errors as E


async def _exit_code(node, timeout: float) -> int | None:
    """The process's exit code once it exits by itself within ``timeout`` (None: still up)."""
    for _ in range(int(timeout / 0.1)):
        if not node.running:
            return node.kill()
        await asyncio.sleep(0.1)
    return None


def test_add_learner_promote_and_remove_while_writing(cluster_factory, run, writer_cls):
    lc = cluster_factory(3)

    async def go():
        async with lc.client() as c, lc.client() as wc:
            leader = await lc.wait_leader(c)
            writer = writer_cls(wc).start()
            await writer.wait_acked(30)

            new = lc.add_joining_node(4, join=leader.address)
            members = await c.add_learner(4, new.address)
            assert {m.id: m.role for m in members}[4] == "learner"
            new.start()
            top = (await c.status()).commit_index
            await lc.wait_applied(c, 4, top, timeout=20)
            st = await c.status()
            assert {m.id: m.role for m in st.members}[4] == "learner"

            members = await c.promote(4)
            assert {m.id: m.role for m in members}[4] == "voter"

            old = next(i for i in (1, 2, 3) if i != leader.id)
            members = await c.remove_member(old)
            assert sorted(m.id for m in members) == sorted({1, 2, 3, 4} - {old})
            # The removed node learns it, stops and exits 0 by itself; retrying the removal
            # (as a client whose answer was lost would) is a success, not "not a member".
            assert await _exit_code(lc.nodes[old], 15) == 0, lc.nodes[old].log_tail()
            assert lc.nodes[old].log_count("removed from the cluster; it stops now") == 1
            members = await c.remove_member(old)
            assert old not in {m.id for m in members}

            before = len(writer.acked)
            await writer.wait_acked(before + 30)
            await writer.stop()
            assert not writer.failed, writer.failed[:3]  # the client rode through it
            await writer.check_all_readable(c)
            st = await c.status()
            assert sorted(m.id for m in st.members if m.role == "voter") == sorted(
                {1, 2, 3, 4} - {old}
            )
            # the new voter holds the data
            rev = await c.put(b"m/last", b"x")
            await lc.wait_applied(c, 4, rev)
            kv = await c.get(b"m/last", consistency="serializable", endpoint=new.address)
            assert kv is not None and kv.value == b"x"

    run(go)


def test_add_learner_of_an_existing_voter_is_refused(cluster_factory, run):
    lc = cluster_factory(3)

    async def go():
        async with lc.client() as c:
            leader = await lc.wait_leader(c)
            voter = next(i for i in lc.nodes if i != leader.id)
            try:
                with pytest.raises(E.ConfChangeError):
                    await c.add_learner(voter, lc.nodes[voter].address)
            finally:
                st = await c.status()
                assert {m.id: m.role for m in st.members}[voter] == "voter"

    run(go)


def test_removing_the_leader_succeeds_and_it_exits_cleanly(cluster_factory, run, writer_cls):
    """The leader hands over first, so the cluster stays led; the removal is then a
    follower's, proposed by the new leader."""
    lc = cluster_factory(3)

    async def go():
        async with lc.client() as c, lc.client() as wc:
            leader = await lc.wait_leader(c)
            writer = writer_cls(wc).start()
            await writer.wait_acked(20)
            members = await c.remove_member(leader.id)
            assert leader.id not in {m.id for m in members}
            assert await _exit_code(lc.nodes[leader.id], 15) == 0, lc.nodes[leader.id].log_tail()
            # It handed leadership over first; the new leader proposed the removal.
            old = lc.nodes[leader.id]
            assert old.log_count("leadership handed over before removing this node") == 1
            assert old.log_count("membership change proposed") == 0, old.log_tail()
            assert sum(n.log_count("membership change proposed") for n in lc.nodes.values()
                       if n.id != leader.id) == 1
            members = await c.remove_member(leader.id)  # a retry of an applied removal
            assert leader.id not in {m.id for m in members}
            before = len(writer.acked)
            await writer.wait_acked(before + 20)
            await writer.stop()
            await writer.check_all_readable(c)
            rest = [n for n in lc.nodes.values() if n.id != leader.id]
            count = [n.log_count("refused peer stream") for n in rest]
            await asyncio.sleep(2)  # nobody keeps dialing the removed node, nor it them
            assert [n.log_count("refused peer stream") for n in rest] == count
            st = await c.status()
            assert leader.id not in {m.id for m in st.members}

    run(go)


def test_a_removed_node_that_was_down_learns_it_from_a_peer(cluster_factory, run):
    lc = cluster_factory(3)

    async def go():
        async with lc.client() as c:
            leader = await lc.wait_leader(c)
            gone = next(i for i in lc.nodes if i != leader.id)
            lc.nodes[gone].kill()
            await c.remove_member(gone)
            await c.put(b"after", b"removal")
            lc.nodes[gone].start()  # its log still names it a member: a peer must tell it
            assert await _exit_code(lc.nodes[gone], 20) == 0, lc.nodes[gone].log_tail()
            assert lc.nodes[gone].log_count("a peer says this node was removed") >= 1

    run(go)
