"""Outside the history window (``statemachine.history_revisions``), as etcd outside its
compacted revision: a Range at an old revision, a Compact and a Watch from it are refused with
etcd's "required revision has been compacted", which etcdctl reports as etcd's."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import grpc
import pytest

from dengine.etcd.pb import rpc_pb2 as pb
from dengine.etcd.pb import rpc_pb2_grpc as pbg

pytestmark = pytest.mark.timeout(240)
CLUSTER_CONFIG = "[statemachine]\nhistory_revisions = 10\n"
COMPACTED = "etcdserver: mvcc: required revision has been compacted"


def test_old_revisions_are_compacted(cluster):
    eps, lead, env = cluster
    ep = eps[next(i for i in eps if i != lead)]

    async def go() -> None:
        async with grpc.aio.insecure_channel(ep) as ch:
            kv = pbg.KVStub(ch)
            first = await kv.Put(pb.PutRequest(key=b"c", value=b"0"), timeout=10)
            for i in range(30):
                last = await kv.Put(pb.PutRequest(key=b"c", value=b"%d" % (i + 1)), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await kv.Range(pb.RangeRequest(key=b"c", revision=first.header.revision),
                               timeout=10)
            assert (e.value.code(), e.value.details()) == (grpc.StatusCode.OUT_OF_RANGE,
                                                           COMPACTED)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await kv.Compact(pb.CompactionRequest(revision=first.header.revision))
            assert e.value.details() == COMPACTED
            r = await kv.Range(pb.RangeRequest(key=b"c", revision=last.header.revision - 1),
                               timeout=10)
            assert r.kvs[0].value == b"29"  # still within the window
            await kv.Compact(pb.CompactionRequest(revision=last.header.revision - 1))

            async def reqs():
                yield pb.WatchRequest(create_request=pb.WatchCreateRequest(
                    key=b"c", start_revision=first.header.revision))
                await asyncio.sleep(30)

            got = []
            async for resp in pbg.WatchStub(ch).Watch(reqs(), timeout=20):
                got.append(resp)
                if resp.canceled:
                    break
            assert got[0].created and got[-1].canceled
            assert got[-1].compact_revision > first.header.revision
            assert got[-1].cancel_reason == COMPACTED

    asyncio.run(go())
    if shutil.which("etcdctl") is None:
        pytest.skip("etcdctl is not installed (Debian: apt-get install etcd-client)")
    out = subprocess.run(["etcdctl", f"--endpoints={ep}", "get", "c", "--rev=2"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and COMPACTED in out.stderr, out.stderr
