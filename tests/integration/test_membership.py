"""Membership on real processes while a writer runs: add a learner, let it catch up, promote
it, remove an old member; no acknowledged write is lost."""

from __future__ import annotations

import pytest

from dengine import errors as E


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
            lc.nodes[old].kill()

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
