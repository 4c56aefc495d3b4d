"""A follower that lost its disk (data directory wiped, restarted under the same id) is
refused with a clear message within seconds; the cluster goes on; a restart refuses at once."""

from __future__ import annotations

import asyncio
import shutil
import time


def test_a_wiped_follower_refuses_to_serve_and_names_the_way_back(cluster_factory, run):
    lc = cluster_factory(3)

    async def go():
        async with lc.client() as c:
            leader = await lc.wait_leader(c)
            await asyncio.gather(*(c.put(f"k{i}", "v") for i in range(50)))
            top = (await c.status()).commit_index
            victim = next(i for i in lc.nodes if i != leader.id)
            await lc.wait_applied(c, victim, top)
            node = lc.nodes[victim]
            node.kill()
            shutil.rmtree(node.data_dir)
            t0 = time.monotonic()
            node.start()
            code = await asyncio.to_thread(node.wait_exit, 20)
            refused_after = time.monotonic() - t0
            assert code != 0
            log = node.log_path.read_text(errors="replace")
            assert "lost its data" in log and f"dengine member remove {victim}" in log
            assert "--join" in log
            assert refused_after < 15, refused_after
            # The leader said so once, not once per rejected append.
            assert lc.nodes[leader.id].log_count("rejected entries it had acknowledged") <= 1
            # The cluster goes on with the other two.
            rev = await c.put("after", "wipe")
            assert rev > top
            # A restart of the same directory refuses at once, before serving.
            node.start()
            code = await asyncio.to_thread(node.wait_exit, 20)
            assert code != 0
            assert node.log_count("lost its data") >= 2

    run(go)
