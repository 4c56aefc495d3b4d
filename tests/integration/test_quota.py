"""The NOSPACE alarm on real processes, through the CLI: `dengine status` shows it, writes are
refused and reads go on, `dengine alarm disarm` refuses while the node is over its quota and
clears the alarm once space is freed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from dengine.errors import QuotaExceeded

from .conftest import REPO

QUOTA = 64 << 20


def dengine(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "dengine", *args], env=env, text=True,
                          capture_output=True, timeout=60)


def test_nospace_alarm_status_refusal_and_disarm(cluster_factory, run):
    lc = cluster_factory(3, storage={"quota_bytes": QUOTA})

    async def go():
        async with lc.client() as c:
            leader = await lc.wait_leader(c)
            await c.put("before", "alarm")
            node = lc.nodes[leader.id]
            ballast = node.data_dir / "ballast"
            with open(ballast, "wb") as f:  # another program filled the disk
                f.truncate(QUOTA + (1 << 20))
            eps = ",".join(lc.endpoints)
            for _ in range(100):
                st = await c.status(node.address)
                if st.alarms:
                    break
                await asyncio.sleep(0.1)
            assert st.alarms == ("NOSPACE",) and st.used_bytes > QUOTA == st.quota_bytes
            out = dengine("status", "--endpoints", eps)
            assert out.returncode == 0 and f"ALARM node {leader.id}: NOSPACE" in out.stdout
            with pytest.raises(QuotaExceeded):
                await c.put("during", "alarm")
            assert (await c.get("before")).value == b"alarm"
            out = dengine("alarm", "disarm", "--endpoints", eps)
            assert out.returncode != 0 and "still over its quota" in out.stdout
            ballast.unlink()  # the operator frees space
            out = dengine("alarm", "disarm", "--endpoints", eps)
            assert out.returncode == 0, out.stdout + out.stderr
            assert (await c.status(node.address)).alarms == ()
            assert await c.put("after", "disarm")

    run(go)


async def _refused(c, timeout: float = 15) -> QuotaExceeded:
    """Writes are refused within ``timeout``; returns the refusal."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await c.put("probe", "x")
        except QuotaExceeded as e:
            return e
        assert asyncio.get_running_loop().time() < deadline, "writes still accepted"
        await asyncio.sleep(0.2)


def test_a_followers_alarm_stops_writes_everywhere_survives_restarts_and_disarms(
        cluster_factory, run):
    """A follower past its quota raises NOSPACE through the log: the leader refuses writes
    (naming the follower), every member shows it, it survives a restart of the leader and of
    the follower (even once the follower is back under its quota), and `dengine alarm disarm`
    clears it through the log."""
    lc = cluster_factory(3, storage={"quota_bytes": QUOTA})

    async def go():
        async with lc.client() as c:
            leader = await lc.wait_leader(c)
            await c.put("before", "alarm")
            fid = next(i for i in lc.nodes if i != leader.id)
            follower = lc.nodes[fid]
            ballast = follower.data_dir / "ballast"
            with open(ballast, "wb") as f:  # another program filled the follower's disk
                f.truncate(QUOTA + (1 << 20))
            err = await _refused(c)
            assert err.node_id == fid and err.used_bytes > QUOTA == err.quota_bytes
            assert (await c.get("before")).value == b"alarm"  # reads go on
            assert await c.delete("before")  # deletes free space: allowed
            st = await c.status(lc.nodes[leader.id].address)
            assert f"NOSPACE on {fid}" in st.alarms and "NOSPACE" not in st.alarms
            eps = ",".join(lc.endpoints)
            out = dengine("alarm", "list", "--endpoints", eps)
            assert f"node {fid} at {follower.address}: NOSPACE" in out.stdout, out.stdout
            # The follower is restarted with its disk freed: the log still holds its alarm.
            follower.kill()
            ballast.unlink()
            follower.start()
            lc.nodes[leader.id].kill()  # and the leader restarts too
            lc.nodes[leader.id].start()
            await lc.wait_leader(c)
            await _refused(c)
            for _ in range(100):
                st = await c.status(follower.address)
                if st.alarms:
                    break
                await asyncio.sleep(0.1)
            assert st.alarms == ("NOSPACE",) and st.used_bytes < QUOTA
            out = dengine("alarm", "disarm", "--endpoints", eps)
            assert out.returncode == 0, out.stdout + out.stderr
            for _ in range(100):  # every member applies the clearing entry
                states = await lc.statuses(c)
                if all(not s.alarms for s in states.values()):
                    break
                await asyncio.sleep(0.1)
            assert all(not s.alarms for s in states.values()), states
            assert await c.put("after", "disarm")

    run(go)


def test_with_tls_and_auth_a_follower_records_its_alarm_and_no_client_can_forge_one(
        cluster_factory, run, tmp_path):
    """Under mutual TLS and client roles the follower's request to the leader goes through
    (its node certificate proves who it is); a client, even an admin, cannot raise or clear a
    member's alarm (a forged alarm would stop every write)."""
    import grpc

    from dengine.v1 import client_pb2, client_pb2_grpc

    from .test_security import client, creds, secure_cluster

    lc, certs = secure_cluster(cluster_factory, tmp_path, auth=True,
                               storage={"quota_bytes": QUOTA})

    async def go():
        async with client(lc, certs, "admin") as c:
            leader = await lc.wait_leader(c)
            fid = next(i for i in lc.nodes if i != leader.id)
            admin = creds(certs, (certs / "admin.pem").read_bytes(),
                          (certs / "admin.key").read_bytes())
            req = client_pb2.AlarmUpdateRequest(member_id=fid, activate=True, used_bytes=1,
                                                quota_bytes=1)
            async with grpc.aio.secure_channel(lc.nodes[leader.id].address, admin) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as forged:
                    await client_pb2_grpc.ClusterStub(ch).AlarmUpdate(req, timeout=5)
            assert forged.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert await c.put("still", "writable")
            with open(lc.nodes[fid].data_dir / "ballast", "wb") as f:
                f.truncate(QUOTA + (1 << 20))
            err = await _refused(c)
            assert err.node_id == fid

    run(go)


def test_storage_status_and_compact_through_the_cli(cluster_factory, run):
    """`dengine storage compact` flushes and compacts every member's state machine store, one
    member at a time; `dengine storage status` shows what each owes."""
    lc = cluster_factory(3)

    async def go():
        async with lc.client() as c:
            await lc.wait_leader(c)
            for i in range(200):
                await c.put(f"k{i:03d}", "v" * 100)
            eps = ",".join(lc.endpoints)
            out = dengine("storage", "status", "--endpoints", eps)
            assert out.returncode == 0, out.stdout + out.stderr
            assert out.stdout.count("compaction bytes owed") == 3
            out = dengine("storage", "compact", "--endpoints", eps)
            assert out.returncode == 0, out.stdout + out.stderr
            assert out.stdout.count("compacted in") == 3
            for ep in lc.endpoints:
                async with asyncio.timeout(30):  # a follow-up compaction may still run
                    while (st := await c.status(ep)).compactions_running:
                        await asyncio.sleep(0.05)
                assert st.compaction_pending_bytes == 0
            assert (await c.get("k199")).value == b"v" * 100
            out = dengine("storage", "compact", "--endpoints", "127.0.0.1:1", "--timeout", "1")
            assert out.returncode != 0

    run(go)
