"""Measure what many watchers cost one node: its resident memory before and after opening
``--watchers`` watch streams, and the time for one write to reach all of them.

Run against a node of ``dengine cluster up`` (its pid is in the cluster's ``cluster.json``)::

    python -m dengine.bench.watch_memory --endpoint 127.0.0.1:7002 --pid 12345 --watchers 10000

The streams are raw gRPC calls on ``--channels`` channels (no client-side decoding), half on
one exact key and half on one prefix, so the node holds two watch groups and 10,000 cursors.
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
    ap.add_argument("--channels", type=int, default=20)
    args = ap.parse_args()
    chans = [grpc.aio.insecure_channel(args.endpoint, options=[("grpc.use_local_subchannel_pool",
                                                                 1)])
             for _ in range(args.channels)]
    stubs = [client_pb2_grpc.WatchStub(c) for c in chans]
    await asyncio.sleep(1)
    before = rss_kib(args.pid)
    calls = []
    for i in range(args.watchers):
        req = (pb.WatchRequest(key=b"mem/", prefix=True, progress_interval_ms=600_000) if i % 2
               else pb.WatchRequest(key=b"mem/k", progress_interval_ms=600_000))
        calls.append(stubs[i % len(stubs)].Watch(req))
    for c in calls:  # the "created" response: every stream is registered
        await c.read()
    await asyncio.sleep(2)
    after = rss_kib(args.pid)
    from dengine.client import Client

    async with Client([args.endpoint]) as writer:
        await writer.status()  # find the leader before timing
        t0 = time.perf_counter()
        await writer.put(b"mem/k", b"v")
    for c in calls:
        r = await c.read()
        assert r.events and r.events[0].kv.key == b"mem/k", r
    fan_out_s = time.perf_counter() - t0
    print(f"node RSS {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB with "
          f"{args.watchers} watchers: {(after - before) * 1024 / args.watchers:.0f} bytes per "
          f"watcher; one write reached all of them in {fan_out_s * 1000:.0f} ms")
    for c in calls:
        c.cancel()
    for c in chans:
        await c.close()


if __name__ == "__main__":
    asyncio.run(main())
