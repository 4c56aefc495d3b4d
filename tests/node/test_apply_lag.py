"""Apply-lag shedding: while the leader's state machine trails its commit index by more than
``network.max_apply_lag_entries``, a new write is refused at once with RESOURCE_EXHAUSTED and a
retry hint, and is never applied. The backlog is real: a burst of writes commits in one append
and ``raft.max_committed_bytes_per_ready = 1`` applies it one entry per turn of the drive loop,
with clients served between turns."""

from __future__ import annotations

import asyncio

import pytest

from dengine.errors import Overloaded
from dengine.node.admission import ApplyLag
from dengine.node.service import RequestHandler
from dengine.v1 import client_pb2 as pb


def test_apply_lag_refuses_past_the_limit_with_a_hint():
    lag = ApplyLag(10)
    lag.check(110, 100)  # at the limit: taken
    with pytest.raises(Overloaded) as err:
        lag.check(111, 100)
    assert "trails the commit index by 11 entries" in str(err.value)
    assert err.value.retry_after_ms == ApplyLag.MIN_RETRY_MS
    with pytest.raises(Overloaded) as err:
        lag.check(1_000_000, 0)
    assert err.value.retry_after_ms == ApplyLag.MAX_RETRY_MS
    assert lag.refused == 2
    ApplyLag(0).check(1_000_000, 0)  # 0: no limit


def _probe_during_backlog(run, cluster_factory, max_lag: int) -> tuple[int, int, list[bytes]]:
    """(refusals seen, their smallest retry hint, the refused keys) while a burst applies."""

    async def main():
        c = cluster_factory(1, max_committed_bytes_per_ready=1)
        node = await c.start_node(1, network={"max_apply_lag_entries": max_lag})
        try:
            await c.leader()
            h = RequestHandler(node)

            async def put(key: bytes) -> pb.PutResponse:
                return await h.call("put", pb.PutRequest(key=key, value=b"v"), pb.PutResponse)

            burst = [asyncio.create_task(put(b"burst/%04d" % i)) for i in range(400)]
            probes: dict[bytes, asyncio.Task] = {}
            while not all(t.done() for t in burst):
                key = b"probe/%04d" % len(probes)
                probes[key] = asyncio.create_task(put(key))
                await asyncio.sleep(0.001)
            for t in burst:
                assert not t.result().error.code, t.result().error
            refused, hints = [], []
            for key, t in probes.items():
                err = (await t).error
                if err.code == pb.RESOURCE_EXHAUSTED:
                    refused.append(key)
                    hints.append(err.retry_after_ms)
                else:
                    assert not err.code, err
            await c.wait_applied(node.core.commit_index)
            for key in refused:
                assert node.state_machine.get(key) is None, key  # refused: never applied
            assert len(probes) > len(refused)  # some were taken (before or after the backlog)
            return len(refused), min(hints, default=0), refused
        finally:
            await c.close()

    return run(main)


def test_a_leader_behind_on_applying_sheds_new_writes(run, cluster_factory):
    refusals, hint, _ = _probe_during_backlog(run, cluster_factory, max_lag=20)
    assert refusals > 0 and hint >= ApplyLag.MIN_RETRY_MS
    # the same backlog with the limit off: every probe is taken
    assert _probe_during_backlog(run, cluster_factory, max_lag=0)[0] == 0
