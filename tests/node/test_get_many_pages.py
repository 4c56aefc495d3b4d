"""get_many within a byte budget: a page stops at ``network.scan_max_bytes`` (at least one
value) and says where to resume (``next_key_index``); the embedded client follows it."""

from __future__ import annotations

from dengine.node import EmbeddedClient
from dengine.node.service import RequestHandler
from dengine.v1 import client_pb2 as pb


def test_get_many_pages_by_bytes_and_the_embedded_client_follows(run, cluster_factory):
    async def main():
        c = cluster_factory(1)
        node = await c.start_node(1, network={"scan_max_bytes": 1024})
        try:
            await c.leader()
            cl = EmbeddedClient(node)
            keys = [b"k%02d" % i for i in range(10)]
            for k in keys:
                await cl.put(k, k * 100)  # 303 bytes with its key: three to a 1 KiB page
            want = [keys[0], b"absent", *keys[1:]]
            h = RequestHandler(node)
            page = await h.call("get_many", pb.GetManyRequest(keys=want), pb.GetManyResponse)
            assert [kv.key for kv in page.kvs] == keys[:3]
            assert page.next_key_index == 4  # want[4] is keys[3]
            got = await cl.get_many(want)
            assert sorted(got) == keys and all(got[k].value == k * 100 for k in keys)
            small = await h.call("get_many", pb.GetManyRequest(keys=keys[:2]), pb.GetManyResponse)
            assert len(small.kvs) == 2 and small.next_key_index == 0
        finally:
            await c.close()

    run(main)


def test_the_embedded_get_many_timeout_bounds_all_its_pages(run, cluster_factory):
    """Three pages that take 0.3 s each do not fit a 0.5 s timeout, though each page does."""
    import asyncio

    import pytest

    from dengine.errors import OperationTimeout

    async def main():
        c = cluster_factory(1)
        node = await c.start_node(1, network={"scan_max_bytes": 1024})
        try:
            await c.leader()
            cl = EmbeddedClient(node, timeout=5)
            keys = [b"k%02d" % i for i in range(9)]
            for k in keys:
                await cl.put(k, k * 100)  # three to a page
            real = cl._h.call
            pages = 0

            async def slow(name, req, cls):
                nonlocal pages
                if name == "get_many":
                    pages += 1
                    await asyncio.sleep(0.3)
                return await real(name, req, cls)

            cl._h.call = slow  # type: ignore[method-assign]
            assert len(await cl.get_many(keys, timeout=2)) == 9 and pages == 3
            with pytest.raises(OperationTimeout):
                await cl.get_many(keys, timeout=0.5)
        finally:
            await c.close()

    run(main)
