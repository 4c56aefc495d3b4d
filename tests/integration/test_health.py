"""The gRPC health service means something: ``dengine.v1.Kv`` (and the overall status) is
SERVING only on a node that can reach the leader of its term (or, leading, holds its quorum
lease); a node partitioned away turns NOT_SERVING, and SERVING again once healed (the issue:
SERVING was reported on a node with no quorum, and Kv was not registered at all)."""

from __future__ import annotations

import asyncio
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _status(address: str, service: str) -> int:
    async with grpc.aio.insecure_channel(address) as ch:
        r = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=3)
        return r.status


async def _wait_status(address: str, want: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = [await _status(address, s) for s in ("", "dengine.v1.Kv")]
        if got == [want, want]:
            return
        assert time.monotonic() < deadline, f"{address}: health {got}, expected {want}"
        await asyncio.sleep(0.1)


def test_kv_health_follows_reachability_of_the_leader(cluster_factory, run):
    lc = cluster_factory(3)

    async def go():
        async with lc.client() as c:
            leader = await lc.wait_leader(c)
            for n in lc.nodes.values():
                await _wait_status(n.address, SERVING)
                assert await _status(n.address, "dengine.v1.RaftPeer") == SERVING
            follower = next(n for n in lc.nodes.values() if n.id != leader.id)
            await lc.partition({follower.id}, set(lc.nodes) - {follower.id})
            await _wait_status(follower.address, NOT_SERVING)
            assert await _status(follower.address, "dengine.v1.RaftPeer") == SERVING
            assert await _status(leader.address, "dengine.v1.Kv") == SERVING  # a quorum left
            # The leader alone loses its lease: NOT_SERVING; the other two elect a leader.
            await lc.heal()
            await _wait_status(follower.address, SERVING)
            await lc.partition({leader.id}, set(lc.nodes) - {leader.id})
            await _wait_status(leader.address, NOT_SERVING)
            await lc.heal()
            for n in lc.nodes.values():
                await _wait_status(n.address, SERVING, timeout=15)

    run(go)
