"""``spread_reads`` against scripted fake nodes: reads are spread by caller (asyncio task), not
read by read, so every member serves reads and the callers of one member still share its batch
stream messages; a caller whose member fails moves on to another one, and stays there."""

from __future__ import annotations

import asyncio
import gc

from dengine.client import Client, Consistency

SER = Consistency.SERIALIZABLE


def record_gets(fc) -> list[tuple[int, bytes]]:
    """Every get a node answers, as (node id, key), in order."""
    served: list[tuple[int, bytes]] = []
    for node in fc.nodes:
        def do_get(req, node=node, orig=node._do_get):
            served.append((node.id, req.key))
            return orig(req)

        node._do_get = do_get
    return served


def by_caller(served: list[tuple[int, bytes]]) -> dict[bytes, set[int]]:
    out: dict[bytes, set[int]] = {}
    for node_id, key in served:
        out.setdefault(key, set()).add(node_id)
    return out


def test_concurrent_callers_reach_every_member_and_share_its_messages(run, fake_cluster):
    """60 callers reading in a loop: each keeps to one member, 20 callers per member, and the
    callers of a member share its stream's messages (read by read, the callers woken by one
    answer scatter over the three streams and the reads leave nearly one per message)."""
    callers, reads = 60, 20

    async def go():
        async with fake_cluster(3) as fc, Client(fc.endpoints, spread_reads=True,
                                                 pool_size=1) as c:
            for i in range(callers):
                fc.shared.data[b"c%d" % i] = (b"v", 1, 1)
            served = record_gets(fc)

            async def caller(i: int) -> None:
                for _ in range(reads):
                    assert (await c.get(b"c%d" % i, consistency=SER)).value == b"v"

            await asyncio.gather(*(caller(i) for i in range(callers)))
            assert len(served) == callers * reads and c.unary_calls == 0
            for n in fc.nodes:
                # 20 callers per member, each message carries about all of them (20 here;
                # read by read, 7 to 10)
                assert n.stream_requests == callers // 3 * reads, n.id
                per_message = n.stream_requests / n.stream_messages
                assert per_message >= 12, (n.id, n.stream_requests, n.stream_messages)
            members = by_caller(served)
            assert all(len(ids) == 1 for ids in members.values()), members
            per_member = {n.id: sum(1 for ids in members.values() if ids == {n.id})
                          for n in fc.nodes}
            assert per_member == {1: 20, 2: 20, 3: 20}, per_member

    run(go)


def test_a_member_going_down_moves_its_callers_to_the_others(run, fake_cluster):
    """Node 3 stops between two rounds of reads: its callers move on after one failed attempt
    each, shared out over nodes 1 and 2, and stay there; the other callers do not move; no read
    fails."""
    callers = 30

    async def go():
        async with fake_cluster(3) as fc, Client(fc.endpoints, spread_reads=True, pool_size=1,
                                                 timeout=10) as c:
            for i in range(callers):
                fc.shared.data[b"c%d" % i] = (b"v", 1, 1)
            served = record_gets(fc)
            first_done = asyncio.Event()
            go_on = asyncio.Event()
            done = [0]

            async def caller(i: int) -> None:
                for _ in range(5):
                    assert (await c.get(b"c%d" % i, consistency=SER)).value == b"v"
                done[0] += 1
                if done[0] == callers:
                    first_done.set()
                await go_on.wait()
                for _ in range(10):
                    assert (await c.get(b"c%d" % i, consistency=SER)).value == b"v"

            tasks = [asyncio.create_task(caller(i)) for i in range(callers)]
            await first_done.wait()
            before = by_caller(served)
            assert all(len(ids) == 1 for ids in before.values()), before
            on3 = {k for k, ids in before.items() if ids == {3}}
            assert len(on3) == callers // 3
            await fc.node(3).stop()
            del served[:]
            go_on.set()
            await asyncio.gather(*tasks)

            after = by_caller(served)
            assert len(served) == callers * 10  # every read answered, none by node 3
            assert all(len(ids) == 1 for ids in after.values()), after  # moved once, stayed
            for k, ids in before.items():
                if k not in on3:
                    assert after[k] == ids, k  # callers of live members did not move
            moved_to = [next(iter(after[k])) for k in on3]
            assert set(moved_to) == {1, 2}, moved_to  # shared out, not all on one member

    run(go)


def test_finished_callers_leave_no_entry_behind(run, fake_cluster):
    """The member of each caller is kept per task, weakly: 300 short-lived callers leave no
    trace once they are gone."""

    async def go():
        async with fake_cluster(3) as fc, Client(fc.endpoints, spread_reads=True) as c:
            fc.shared.data[b"k"] = (b"v", 1, 1)
            served = record_gets(fc)

            async def one() -> None:
                await c.get(b"k", consistency=SER)

            for _ in range(3):
                await asyncio.gather(*(one() for _ in range(100)))
            assert {node_id for node_id, _ in served} == {1, 2, 3}
            await asyncio.sleep(0)  # the loop lets go of the last gather (and its tasks)
            gc.collect()
            assert len(c._readers) == 0

    run(go)
