"""Exactly-once on a running cluster (Raft thesis §6.3, dengine.statemachine.sessions).

Many clients fill a small session table; the client pushed out retries writes it had made,
and every replica refuses them with SESSION_EXPIRED instead of applying them a second time:
on the leader, on a follower that caught up from a snapshot (and then leads), and after the
whole cluster restarts. Both state machine engines.
"""

from __future__ import annotations

import asyncio

import pytest

from dengine.node.embedded import EmbeddedClient
from dengine.node.service import RequestHandler
from dengine.statemachine import open_kv
from dengine.storage.memory import MemoryLogStore
from dengine.v1 import client_pb2 as pb

MAX_SESSIONS = 8


def _start_kw(c) -> dict:
    return {"statemachine": {"max_sessions": MAX_SESSIONS}}


async def _start(c, engine: str):
    if engine == "memory":  # the harness's in-memory machines take their limits here
        for i in c.initial:
            c._memory[i] = (MemoryLogStore(), open_kv("memory", max_sessions=MAX_SESSIONS))
    for i in c.initial:
        await c.start_node(i, **_start_kw(c))


async def _call(node, name: str, req, cls):
    return await RequestHandler(node).call(name, req, cls)


def _put(cid: int, seq: int, value: bytes) -> pb.PutRequest:
    return pb.PutRequest(key=b"k", value=value, session=pb.Session(client_id=cid, seq=seq))


def _cas(cid: int, seq: int) -> pb.CompareAndSetRequest:
    return pb.CompareAndSetRequest(key=b"k", expected_value=b"v1", new_value=b"v2",
                                   session=pb.Session(client_id=cid, seq=seq))


async def _retries_refused(node, old: int) -> None:
    """The evicted client's two writes, retried through ``node``: refused, not applied."""
    put = await _call(node, "put", _put(old, 1, b"v1"), pb.PutResponse)
    assert put.error.code == pb.SESSION_EXPIRED, put
    cas = await _call(node, "cas", _cas(old, 2), pb.CompareAndSetResponse)
    assert cas.error.code == pb.SESSION_EXPIRED, cas


def _same_everywhere(c, old: int, version: int) -> None:
    tables = {n.node_id: n.state_machine.sessions.dump() for n in c.nodes.values() if n.running}
    first = next(iter(tables.values()))
    assert all(t == first for t in tables.values()), "replicas disagree on the session table"
    assert old not in first and len(first) <= MAX_SESSIONS
    for n in c.nodes.values():
        if n.running:
            kv = n.state_machine.get(b"k")
            assert (kv.value, kv.version) == (b"newest", version), n.node_id


@pytest.mark.parametrize("engine", ["memory", "rocksdb"])
def test_an_evicted_clients_retries_are_refused_on_every_replica(run, cluster_factory, engine):
    async def main():
        c = cluster_factory(storage=engine, snapshot_interval_entries=30,
                            compaction_tail_entries=3)
        await _start(c, engine)
        try:
            leader = await c.leader()
            reg = await _call(leader, "register_session", pb.RegisterSessionRequest(),
                              pb.RegisterSessionResponse)
            old = reg.client_id
            first_put = await _call(leader, "put", _put(old, 1, b"v1"), pb.PutResponse)
            first_cas = await _call(leader, "cas", _cas(old, 2), pb.CompareAndSetResponse)
            assert first_cas.succeeded
            # a retry while the session lives: the first answers, succeeded stays succeeded
            await c.client(leader).put("other", "x")
            again = await _call(leader, "cas", _cas(old, 2), pb.CompareAndSetResponse)
            assert again.succeeded and again.revision == first_cas.revision
            assert (await _call(leader, "put", _put(old, 1, b"v1"), pb.PutResponse)).revision \
                == first_put.revision
            await c.wait_applied(leader.state_machine.applied_index())
            lagger = c.followers()[0].node_id
            await c.stop_node(lagger)
            # more clients than the table holds: the old session is the least recently used
            clients = [EmbeddedClient(leader) for _ in range(3 * MAX_SESSIONS)]
            for i, cl in enumerate(clients):
                await cl.put(f"c{i}", "x")
            newest = clients[0]  # evicted too; its next write registers again, applied once
            gone = newest.client_id
            assert gone not in leader.state_machine.sessions.dump()
            await newest.put("k", "newest")
            assert newest.client_id != gone
            assert newest.client_id in leader.state_machine.sessions.dump()
            await asyncio.gather(*(clients[-1].put(f"fill{i}", "y") for i in range(60)))
            version = leader.state_machine.get(b"k").version
            await _retries_refused(leader, old)
            async with asyncio.timeout(10):  # compacted behind the stopped follower
                while leader.log_store.first_index() <= first_cas.revision + 5:
                    await asyncio.sleep(0.01)
            back = await c.start_node(lagger, **_start_kw(c))
            await c.wait_applied(leader.state_machine.applied_index(), [back])
            async with asyncio.timeout(10):  # it caught up from a snapshot, not the log
                while back.transport.stats.snapshots_received < 1:
                    await asyncio.sleep(0.01)
            _same_everywhere(c, old, version)
            # the restored follower leads: it refuses the old retries as well
            await leader.transfer_leader(lagger)
            new_leader = await c.leader()
            assert new_leader.node_id == lagger
            await _retries_refused(new_leader, old)
            await c.wait_applied(new_leader.state_machine.applied_index())
            _same_everywhere(c, old, version)
            # and after the whole cluster restarts from its storage
            before = new_leader.state_machine.sessions.dump()
            await c.close()
            for i in c.initial:
                await c.start_node(i, **_start_kw(c))
            leader = await c.leader()
            assert leader.state_machine.sessions.dump().keys() >= before.keys() - {old}
            await _retries_refused(leader, old)
            await c.wait_applied(leader.state_machine.applied_index())
            _same_everywhere(c, old, version)
        finally:
            await c.close()

    run(main, timeout=60)


def test_a_write_on_a_session_nobody_registered_is_refused(run, cluster_factory):
    async def main():
        c = cluster_factory()
        await c.start()
        try:
            leader = await c.leader()
            r = await _call(leader, "put", _put(123456, 1, b"x"), pb.PutResponse)
            assert r.error.code == pb.SESSION_EXPIRED
            await c.wait_applied(leader.state_machine.applied_index())
            assert all(n.state_machine.get(b"k") is None for n in c.nodes.values())
        finally:
            await c.close()

    run(main)
