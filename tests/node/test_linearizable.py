"""Clients against three in-process nodes while leaders are stopped, restarted and cut off:
the history of what they saw must be linearizable (dengine.testing.linearizability)."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from dengine.errors import (
    DengineError,
    InvalidArgument,
    NotLeader,
    OperationTimeout,
    ProposalDropped,
    Unavailable,
)
from dengine.node import EmbeddedClient
from dengine.testing.linearizability import History, OpKind, check

KEYS = [b"x", b"y"]


async def _client(c, h: History, cid: int, rng: random.Random, stop: asyncio.Event) -> None:
    n = 0
    cl: EmbeddedClient | None = None
    while not stop.is_set():
        node = next((x for x in c.nodes.values() if x.running and x.is_leader), None)
        if node is None:
            await asyncio.sleep(0.01)
            continue
        if cl is None:
            cl = EmbeddedClient(node, timeout=0.5)
        cl.use(node)  # one session per client, whichever node leads
        key = rng.choice(KEYS)
        roll = rng.random()
        n += 1
        if roll < 0.4:
            value = f"{cid}-{n}".encode()
            op = h.invoke(cid, OpKind.PUT, key, value=value)
            call = cl.put(key, value)
        elif roll < 0.6:
            expected = rng.choice([f"{cid}-{n - 1}".encode(), b"none"])
            value = f"{cid}-{n}".encode()
            op = h.invoke(cid, OpKind.CAS, key, value=value, expected=expected)
            call = cl.compare_and_set(key, expected_value=expected, new_value=value)
        else:
            level = rng.choice(["linearizable", "lease"])
            op = h.invoke(cid, OpKind.GET, key)
            call = cl.get(key, consistency=level)
        try:
            result = await call
        except (NotLeader, ProposalDropped, InvalidArgument):
            h.failed(op)  # refused before proposing, or its entry was replaced: no effect
            continue
        except (OperationTimeout, Unavailable, DengineError):
            h.unknown(op)  # it may or may not have taken effect
            continue
        if roll < 0.4:
            h.ok(op)
        elif roll < 0.6:
            h.ok(op, result.succeeded)
        else:
            h.ok(op, None if result is None else result.value)


async def _chaos(c, rng: random.Random, stop: asyncio.Event, events: list[int]) -> None:
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.2, 0.4))
        leader = next((x for x in c.nodes.values() if x.running and x.is_leader), None)
        if leader is None:
            continue
        events[0] += 1
        if rng.random() < 0.5:
            await c.stop_node(leader.node_id)
            await asyncio.sleep(rng.uniform(0.1, 0.3))
            await c.start_node(leader.node_id)
        else:
            others = [i for i in c.nodes if i != leader.node_id]
            leader.transport.faults.isolate(*others)
            await asyncio.sleep(rng.uniform(0.2, 0.4))
            leader.transport.faults.heal()


#: More seeds: DENGINE_NODE_LIN_SEEDS=20 (each seed is ~3 s).
SEEDS = list(range(1, 1 + int(os.environ.get("DENGINE_NODE_LIN_SEEDS", "2"))))


@pytest.mark.parametrize("seed", SEEDS)
def test_histories_under_failover_and_partitions_are_linearizable(run, cluster_factory, seed):
    _linearizable_under_chaos(run, cluster_factory, seed)


def test_histories_over_grpc_with_rocksdb_are_linearizable(run, cluster_factory):
    """The same over real gRPC peer streams and snapshot streaming, on rocksdb storage."""
    _linearizable_under_chaos(run, cluster_factory, 7, grpc=True, storage="rocksdb")


def _linearizable_under_chaos(run, cluster_factory, seed: int, **kw) -> None:
    async def main():
        rng = random.Random(seed)
        # Frequent snapshots and short log tails: restarted nodes often catch up by snapshot.
        c = await cluster_factory(snapshot_interval_entries=10, compaction_tail_entries=1,
                                  **kw).start()
        h = History()
        stop = asyncio.Event()
        chaos_events = [0]
        try:
            await c.leader()
            tasks = [asyncio.create_task(_client(c, h, cid, random.Random(seed * 100 + cid),
                                                 stop)) for cid in range(1, 6)]
            tasks.append(asyncio.create_task(_chaos(c, rng, stop, chaos_events)))
            await asyncio.sleep(2.5)
            stop.set()
            await asyncio.gather(*tasks)
        finally:
            stop.set()
            await c.close()
        ops = h.ops()
        done = [o for o in ops if o.ret is not None]
        assert len(done) > 50, f"too few operations completed: {len(done)}"
        assert chaos_events[0] >= 3
        result = check(ops)
        assert result.ok, f"seed {seed}: {result.describe()}"

    run(main, timeout=60)
