"""The bench's watch workload against real nodes in this process: every watcher gets every
write, and "all" does not select it (it needs dengine's watch)."""

from __future__ import annotations

from dengine.bench.runner import select_workloads
from dengine.bench.targets import DengineTarget
from dengine.bench.workloads import WORKLOADS, run_workload


def test_watch_workload_delivers_every_write_to_every_watcher(run_uvloop, real_cluster):
    async def go():
        async with real_cluster() as rc:
            target = DengineTarget(rc.endpoints)
            spec = WORKLOADS["watch"].with_(ops=120, watchers=6, clients=4, connections=2)
            await target.open(spec.connections)
            try:
                s = await run_workload(target, spec, progress=False)
            finally:
                await target.close()
            assert (s.ops, s.errors) == (120 * 6, 0)
            assert s.extra["watchers"] == 6 and s.throughput > 0

    run_uvloop(go, timeout=60)


def test_all_does_not_select_the_watch_workload():
    assert "watch" not in [w.name for w in select_workloads(None)]
    assert [w.name for w in select_workloads(["watch"])] == ["watch"]
