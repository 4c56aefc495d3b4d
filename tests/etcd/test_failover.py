"""The etcd API across a leader failure: writes through a follower resume on the new leader,
and a member without a quorum answers etcd's retryable "no leader"."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import grpc
import pytest

from dengine.etcd.pb import rpc_pb2 as pb
from dengine.etcd.pb import rpc_pb2_grpc as pbg

pytestmark = pytest.mark.timeout(240)


def _kill(cluster, node_id: int) -> None:
    _eps, _lead, env = cluster
    out = subprocess.run([sys.executable, "-m", "dengine", "cluster", "kill-node", str(node_id),
                          "--data-dir", env["ETCD_TESTS_DATA_DIR"]], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


async def _put_until(ep: str, key: bytes, deadline_s: float) -> list[tuple[str, str]]:
    """Put until one succeeds; the (status, message) of every failure on the way."""
    failures = []
    async with grpc.aio.insecure_channel(ep) as ch:
        kv = pbg.KVStub(ch)
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                await kv.Put(pb.PutRequest(key=key, value=b"v"), timeout=3)
                return failures
            except grpc.aio.AioRpcError as e:
                failures.append((e.code().name, e.details()))
            await asyncio.sleep(0.1)
    raise AssertionError(f"no put succeeded: {failures[-5:]}")


def test_writes_survive_a_leader_kill_and_no_quorum_is_etcds_no_leader(cluster):
    eps, lead, _env = cluster
    others = [i for i in eps if i != lead]
    _kill(cluster, lead)
    failures = asyncio.run(_put_until(eps[others[0]], b"after-failover", 30))
    assert all(code == "UNAVAILABLE" for code, _m in failures), failures
    _kill(cluster, others[1])

    async def no_leader() -> tuple[str, str]:
        async with grpc.aio.insecure_channel(eps[others[0]]) as ch:
            kv = pbg.KVStub(ch)
            end = time.monotonic() + 30
            last = ("", "")
            while time.monotonic() < end:
                try:
                    await kv.Put(pb.PutRequest(key=b"k", value=b"v"), timeout=3)
                except grpc.aio.AioRpcError as e:
                    last = (e.code().name, e.details())
                    if last == ("UNAVAILABLE", "etcdserver: no leader"):
                        return last
                await asyncio.sleep(0.1)
            return last

    assert asyncio.run(no_leader()) == ("UNAVAILABLE", "etcdserver: no leader")
    # serializable reads still come from the survivor
    async def read() -> bytes:
        async with grpc.aio.insecure_channel(eps[others[0]]) as ch:
            r = await pbg.KVStub(ch).Range(pb.RangeRequest(key=b"after-failover",
                                                           serializable=True), timeout=5)
            return r.kvs[0].value

    assert asyncio.run(read()) == b"v"
