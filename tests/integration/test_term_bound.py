"""A node whose storage holds a term past the guard's bound (2^62) refuses to start and names
the way back; the way back works: remove the member, empty its directory, rejoin."""

from __future__ import annotations

import asyncio
import shutil

from dengine.raft.types import HardState
from dengine.storage import open_log_store


def test_a_stored_term_past_the_bound_refuses_to_start_and_the_named_recovery_works(
        cluster_factory, run):
    lc = cluster_factory(3)

    async def go():
        async with lc.client() as c:
            leader = await lc.wait_leader(c)
            for i in range(20):
                await c.put(f"k{i}", "v")
            top = (await c.status()).commit_index
            victim = next(i for i in lc.nodes if i != leader.id)
            await lc.wait_applied(c, victim, top)
            node = lc.nodes[victim]
            node.kill()
            # What one forged message wrote before terms were bounded: term 2^64-1, on disk.
            store = open_log_store("rocksdb", str(node.data_dir / "log"))
            try:
                hs = store.hard_state()
                store.save_hard_state(HardState(2**64 - 1, 0, hs.commit))
                store.sync()
            finally:
                store.close()
            node.start()
            code = await asyncio.to_thread(node.wait_exit, 30)
            assert code != 0
            log = node.log_path.read_text(errors="replace")
            assert f"the term in its storage is {2**64 - 1}, at or past 2^62" in log
            assert f"dengine member remove {victim}" in log and "--join" in log
            # The way back the error names, as an operator runs it.
            await c.remove_member(victim, timeout=20)
            shutil.rmtree(node.data_dir)
            node.start("--cluster.join", lc.nodes[leader.id].address)
            rev = await c.put("after", "rejoin")
            st = await lc.wait_applied(c, victim, rev, timeout=60)
            assert st.term < 2**62
            got = await c.get("k7", endpoint=node.address, consistency="serializable")
            assert got is not None and got.value == b"v"

    run(go, timeout=150)
