"""A minority partition through the test-only transport fault switch: the cut-off leader cannot
commit and steps down, the majority elects a new leader and goes on, and after healing the old
leader rejoins and catches up."""

from __future__ import annotations

import asyncio
import time

import pytest

from dengine import errors as E


def test_a_minority_leader_cannot_commit_steps_down_and_rejoins(
    cluster_factory, run, election_s, writer_cls
):
    lc = cluster_factory(3)

    async def go():
        async with lc.client() as c, lc.client() as wc:
            old = await lc.wait_leader(c)
            await c.put(b"p/before", b"1")
            writer = writer_cls(wc, concurrency=4).start()  # rides through the partition
            await writer.wait_acked(20)
            majority = {i for i in lc.nodes if i != old.id}
            await lc.partition({old.id}, majority)
            # the cut-off leader cannot commit
            with pytest.raises((E.OperationTimeout, E.NotLeader, E.Unavailable)):
                await c.put(b"p/minority", b"lost", endpoint=old.address, timeout=3 * election_s)
            # ...and steps down (check-quorum) while the majority elects a new leader
            new = await lc.wait_leader(c, among=majority, timeout=15)
            assert new.id != old.id and new.term > old.term
            deadline = time.monotonic() + 10 * election_s
            while (st := await c.status(old.address, timeout=1)).role.lower() == "leader":
                assert time.monotonic() < deadline, f"the minority leader did not step down: {st}"
                await asyncio.sleep(0.05)
            rev = await c.put(b"p/during", b"2")
            during = len(writer.acked)
            await writer.wait_acked(during + 20)  # the writer found the new leader
            # heal: the old leader rejoins as a follower of the new one and catches up
            await lc.heal()
            await lc.wait_applied(c, old.id, rev, timeout=20)
            lead = await lc.wait_leader(c, timeout=15)
            st = await c.status(old.address)
            assert st.leader_id == lead.id and st.role.lower() != "leader"
            kv = await c.get(b"p/during", consistency="serializable", endpoint=old.address)
            assert kv is not None and kv.value == b"2"
            assert await c.get(b"p/minority") is None  # never committed
            assert (await c.get(b"p/before")).value == b"1"
            await writer.stop()
            await writer.check_all_readable(c)

    run(go)
