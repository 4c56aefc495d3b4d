"""``bench --preload`` on the embedded cluster: a member that took the leadership from the
in-process node hands it back (regain_leadership), over real gRPC."""

from __future__ import annotations

from dengine.bench.preload import regain_leadership
from dengine.client import Client


def test_regain_leadership_brings_it_back_to_the_given_node(run, cluster_factory):
    async def main():
        c = await cluster_factory(grpc=True).start()
        try:
            first = await c.leader()
            other = c.followers()[0]
            eps = [n.address for n in c.nodes.values()]
            async with Client(eps, timeout=10) as cl:
                await cl.transfer_leader(other.node_id, timeout=10)
            await c.leader(exclude=(first.node_id,))
            assert not first.is_leader
            await regain_leadership(first, eps, timeout=30)
            assert first.is_leader
            await regain_leadership(first, eps, timeout=30)  # already leading: nothing to do
            assert first.is_leader
        finally:
            await c.close()

    run(main, timeout=60)
