"""Measure what many watchers cost one node: its resident memory before and after opening
``--watchers`` watch streams, and the time for one write to reach all of them.

Run against a node of ``dengine cluster up`` (its pid is in the cluster's ``cluster.json``)::

    python -m dengine.bench.watch_memory --endpoint 127.0.0.1:7002 --pid 12345 --watchers 10000

The watches are raw gRPC (no client-side decoding), carried by ``--streams`` WatchMany streams
(0: one Watch call each), half on one exact key and half on one prefix, so the node holds two
watch groups and 10,000 cursors.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import grpc

from dengine.v1 import client_pb2 as pb
from dengine.v1 import client_pb2_grpc


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--pid", type=int, required=True, help="the node's process id")
    ap.add_argument("--watchers", type=int, default=10_000)
    ap.add_argument("--streams", type=int, default=10,
                    help="WatchMany streams carrying the watchers (0: one Watch call each)")
    args = ap.parse_args()
    chan = grpc.aio.insecure_channel(args.endpoint)
    stub = client_pb2_grpc.WatchStub(chan)
    await asyncio.sleep(1)
    before = rss_kib(args.pid)

    def request(i: int) -> pb.WatchRequest:
        if i % 2:
            return pb.WatchRequest(key=b"mem/", prefix=True, progress_interval_ms=600_000)
        return pb.WatchRequest(key=b"mem/k", progress_interval_ms=600_000)

    if args.streams:
        queues: list[asyncio.Queue[pb.WatchRequest]] = [
            asyncio.Queue() for _ in range(args.streams)]

        async def feed(q: asyncio.Queue):
            while True:
                yield await q.get()

        calls = [stub.WatchMany(feed(q)) for q in queues]
        for i in range(args.watchers):
            queues[i % args.streams].put_nowait(pb.WatchManyRequest(watch_id=i + 1,
                                                                    create=request(i)))
        per_call = [len(range(k, args.watchers, args.streams)) for k in range(args.streams)]
    else:
        calls = [stub.Watch(request(i)) for i in range(args.watchers)]
        per_call = [1] * len(calls)
    for c, n in zip(calls, per_call, strict=True):  # every watch is registered
        for _ in range(n):
            r = await c.read()
            assert (r.response.created if args.streams else r.created), r
    await asyncio.sleep(2)
    after = rss_kib(args.pid)
    from dengine.client import Client

    async with Client([args.endpoint]) as writer:
        await writer.status()  # find the leader before timing
        t0 = time.perf_counter()
        await writer.put(b"mem/k", b"v")
        for c, n in zip(calls, per_call, strict=True):
            for _ in range(n):
                r = await c.read()
                ev = r.response.events if args.streams else r.events
                assert ev and ev[0].kv.key == b"mem/k", r
        fan_out_s = time.perf_counter() - t0
    how = f"on {args.streams} WatchMany streams" if args.streams else "one stream each"
    print(f"node RSS {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB with "
          f"{args.watchers} watchers ({how}): {(after - before) * 1024 / args.watchers:.0f} "
          f"bytes per watcher; one write reached all of them in {fan_out_s * 1000:.0f} ms")
    for c in calls:
        c.cancel()
    await chan.close()


if __name__ == "__main__":
    asyncio.run(main())
