"""Leases with real processes: a lease kept alive through a kill -9 of the leader survives it
(the new leader gives it a full TTL); once no longer kept alive it expires, once, and its keys
are gone on every node, deleted at the same revision everywhere."""

from __future__ import annotations

import asyncio
import signal

from dengine.statemachine import open_kv
from dengine.statemachine.history import DELETE


def test_a_kept_lease_survives_a_leader_kill_then_expires_everywhere(cluster_factory, run):
    lc = cluster_factory(3)

    async def go():
        async with lc.client() as c:
            old = await lc.wait_leader(c)
            lease = await c.grant(2)
            start = await c.put(b"svc/a", b"1", lease=lease.id)
            await c.put(b"svc/b", b"2", lease=lease.id)
            await c.put(b"plain", b"3")

            async def keep():
                async for _ in c.keep_alive(lease.id, interval_s=0.3):
                    pass

            keeper = asyncio.ensure_future(keep())
            # Longer than the TTL on the old leader: by the followers' clocks, which never saw
            # a keep-alive, the lease is long over; only the full TTL a new leader gives every
            # lease keeps it alive.
            await asyncio.sleep(3)
            lc.nodes[old.id].kill()
            survivors = [i for i in lc.nodes if i != old.id]
            await lc.wait_leader(c, among=survivors, timeout=15)
            await asyncio.sleep(3)  # beyond the TTL: still kept alive, through the new leader
            assert not keeper.done(), keeper
            assert (await c.get(b"svc/a")) is not None
            st = await c.time_to_live(lease.id, keys=True)
            assert st.ttl > 0 and st.keys == (b"svc/a", b"svc/b")
            keeper.cancel()
            for _ in range(100):  # no keep-alive now: it expires within about its TTL
                if await c.get(b"svc/a") is None:
                    break
                await asyncio.sleep(0.1)
            assert await c.get(b"svc/a") is None and await c.get(b"svc/b") is None
            assert (await c.get(b"plain")).value == b"3"
            lc.nodes[old.id].start()  # the old leader comes back and catches up
            top = (await c.status()).commit_index
            await lc.wait_applied(c, old.id, top, timeout=20)
            for n in lc.nodes.values():
                got = await c.get_many([b"svc/a", b"svc/b", b"plain"], endpoint=n.address,
                                       consistency="serializable")
                assert set(got) == {b"plain"}, (n.id, got)
            return start

    start = run(go)
    for n in lc.nodes.values():
        n.kill(signal.SIGTERM)
    deletes = []
    for n in lc.nodes.values():
        sm = open_kv("rocksdb", str(n.data_dir / "sm"))
        try:
            events, _ = sm.history.read(start, 100_000)
            deletes.append([(e.key, e.revision) for e in events if e.type == DELETE])
            assert not sm.leases.ttl
        finally:
            sm.close()
    assert len(deletes[0]) == 2 and deletes[0][0][1] == deletes[0][1][1]
    assert all(d == deletes[0] for d in deletes), deletes  # once, at one index, everywhere
