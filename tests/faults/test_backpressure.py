"""Bounded memory under any client (real ``dengine serve`` processes).

* A client that opens a ``Batch`` stream, sends thousands of reads of a 64 KiB value and never
  reads an answer: the node's RSS grows by a bounded amount (before: 606 MB for 10,000 unread
  answers, the in-flight cap freed a slot when an answer was queued, not written).
* A scan over values far larger in total than one gRPC message: each page stops at
  ``network.scan_max_bytes`` and carries a continuation; the client and ``dengine scan``
  follow it to the end (before: the node built a 127 MB answer gRPC refused to send).
* A value near the size limit is readable by get, by scan and by get_many; a get_many whose
  answer would pass the scan budget answers one page and ``next_key_index`` (before: one call
  built a 131 MB answer), which the client follows.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import grpc

from dengine.client import SyncClient
from dengine.v1 import client_pb2 as pb
from dengine.v1 import client_pb2_grpc as pbg

KIB = 1024
MIB = 1024 * KIB


async def _wait_writable(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as ch:
        kv = pbg.KvStub(ch)
        deadline = time.monotonic() + 20
        while True:
            try:
                r = await kv.Put(pb.PutRequest(key=b"probe", value=b"x"), timeout=2)
                if not r.HasField("error"):
                    return
            except grpc.aio.AioRpcError:
                pass
            assert time.monotonic() < deadline, "the node never accepted a write"
            await asyncio.sleep(0.1)


def test_a_stream_that_is_never_read_does_not_grow_the_node(serve):
    node = serve()
    n_requests = 10_000

    async def run() -> tuple[int, int, int]:
        await _wait_writable(node.address)
        async with grpc.aio.insecure_channel(node.address) as ch:
            kv = pbg.KvStub(ch)
            r = await kv.Put(pb.PutRequest(key=b"big", value=b"v" * (64 * KIB)), timeout=5)
            assert not r.HasField("error")
            await asyncio.sleep(0.5)
            before = node.rss_bytes()
            call = kv.Batch()
            sent = 0
            try:
                while sent < n_requests:
                    reqs = [pb.ClientRequest(request_id=sent + i, get=pb.GetRequest(
                        key=b"big", consistency=pb.SERIALIZABLE)) for i in range(100)]
                    # A node that stops reading blocks this write: that is the backpressure.
                    await asyncio.wait_for(call.write(pb.ClientRequestBatch(requests=reqs)), 3)
                    sent += 100
            except TimeoutError:
                pass
            await asyncio.sleep(3)  # let the node answer whatever it took
            peak = node.rss_bytes()
            # Another client is still served meanwhile.
            got = await kv.Get(pb.GetRequest(key=b"big"), timeout=5)
            assert got.found and len(got.kv.value) == 64 * KIB
            call.cancel()
            return before, peak, sent

    before, peak, sent = asyncio.run(run())
    grown = peak - before
    # Unbounded, the answers to `sent` requests alone would be sent * 64 KiB (about 640 MB for
    # 10,000). Bounded: the stream's 16 MiB budget, gRPC's windows and allocator slack.
    print(f"never-read Batch stream: node grew {grown / MIB:.0f} MiB for {sent} requests")
    assert grown < 120 * MIB, (grown, sent)


def test_a_scan_pages_by_bytes_and_the_client_and_cli_follow_it(serve, proc_env):
    node = serve("--network.scan-max-bytes", str(1 * MIB))
    asyncio.run(_wait_writable(node.address))
    value = b"s" * (64 * KIB)
    with SyncClient([node.address], timeout=10) as c:
        for i in range(40):  # 2.5 MiB of values: three pages of at most 1 MiB (+ one value)
            c.put(b"scan/%03d" % i, value)
        page = c.scan(prefix=b"scan/")
        assert 0 < len(page.kvs) < 40 and page.continuation
        assert sum(len(kv.key) + len(kv.value) for kv in page.kvs) <= 1 * MIB + 64 * KIB + 16
        keys = [kv.key for kv in c.scan_iter(prefix=b"scan/")]
        assert keys == [b"scan/%03d" % i for i in range(40)]
    r = subprocess.run([sys.executable, "-m", "dengine", "scan", "--endpoints", node.address,
                        "scan/"], env=proc_env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert sum(line.startswith("scan/") for line in r.stdout.splitlines()) == 40


def test_a_value_near_the_size_limit_is_readable(serve):
    node = serve()
    asyncio.run(_wait_writable(node.address))
    big = b"b" * (1 * MIB - 256)  # raft.max_msg_bytes is 1 MiB: room for the key and framing
    with SyncClient([node.address], timeout=10) as c:
        for i in range(20):  # 20 MiB: more than one gRPC message (16 MiB) can carry
            c.put(b"big/%02d" % i, big)
        assert c.get_value(b"big/03") == big
        got = list(c.scan_iter(prefix=b"big/"))
        assert [kv.key for kv in got] == [b"big/%02d" % i for i in range(20)]
        assert all(kv.value == big for kv in got)
        keys = [b"big/%02d" % i for i in range(20)] + [b"absent"]
        many = c.get_many(keys)  # 20 MiB: in pages, followed by the client
        assert sorted(many) == keys[:20] and all(kv.value == big for kv in many.values())

    async def one_page() -> pb.GetManyResponse:
        async with grpc.aio.insecure_channel(node.address) as ch:
            return await pbg.KvStub(ch).GetMany(pb.GetManyRequest(keys=keys), timeout=10)

    page = asyncio.run(one_page())
    # network.scan_max_bytes (4 MiB) holds three of these values, and a page may run one past
    n = len(page.kvs)
    assert 3 <= n <= 5 and page.next_key_index == n, (n, page.next_key_index)
    assert [kv.key for kv in page.kvs] == keys[:n]
