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
