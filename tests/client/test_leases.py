"""Leases against real nodes in this process: grant, attach, keep alive, revoke, expiry at one
index on every replica with watchers seeing the deletes, and a lease kept alive across a leader
change."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from dengine import errors as E
from dengine.client import Client
from dengine.statemachine.history import DELETE


def test_grant_attach_ttl_revoke(run_uvloop, real_cluster):
    async def go():
        async with real_cluster() as rc, Client(rc.endpoints, timeout=10) as c:
            lease = await c.grant(30)
            assert lease.id > 0 and lease.ttl == 30
            await c.put(b"svc/a", b"1", lease=lease.id)
            await c.put(b"svc/b", b"2", lease=lease.id)
            st = await c.time_to_live(lease.id, keys=True)
            assert 28 <= st.ttl <= 30 and st.granted_ttl == 30 and st.keys == (b"svc/a", b"svc/b")
            assert await c.keep_alive_once(lease.id) == 30
            rev = await c.revoke(lease.id)
            assert await c.get(b"svc/a") is None and await c.get(b"svc/b") is None
            assert (await c.time_to_live(lease.id)).ttl == -1
            with pytest.raises(E.LeaseNotFound):
                await c.put(b"svc/c", b"3", lease=lease.id)
            with pytest.raises(E.LeaseNotFound):
                await c.keep_alive_once(lease.id)
            with pytest.raises(E.LeaseNotFound):
                await c.revoke(lease.id)
            with pytest.raises(E.InvalidArgument):
                await c.grant(0)
            await _applied_everywhere(rc, rev)
            for node in rc.nodes.values():  # the revoke's deletes share one revision everywhere
                events, _ = node.state_machine.history.read(rev)
                assert [(e.type, e.key, e.revision) for e in events] == [
                    (DELETE, b"svc/a", rev), (DELETE, b"svc/b", rev)]

    run_uvloop(go)


def test_expiry_once_at_one_index_everywhere_and_watchers_see_it(run_uvloop, real_cluster):
    async def go():
        async with real_cluster() as rc, Client(rc.endpoints, timeout=10) as c:
            lease = await c.grant(1)
            start = await c.put(b"e/k1", b"v", lease=lease.id)
            await c.put(b"e/k2", b"v", lease=lease.id)
            await c.put(b"e/free", b"v")
            seen = []

            async def watch():
                async for u in c.watch(b"e/", prefix=True, start_revision=start):
                    seen.extend(u.events)
                    if any(e.type == "delete" for e in u.events):
                        return

            await asyncio.wait_for(watch(), 10)
            deletes = [e for e in seen if e.type == "delete"]
            assert {e.key for e in deletes} == {b"e/k1", b"e/k2"}
            rev = deletes[0].revision
            assert all(e.revision == rev for e in deletes)
            await asyncio.sleep(0.5)  # any second expiry would have been proposed by now
            await _applied_everywhere(rc, rev)
            leader = rc.nodes[await rc.leader_id()]
            for node in rc.nodes.values():
                events, _ = node.state_machine.history.read(start)
                dels = [(e.key, e.revision) for e in events if e.type == DELETE]
                assert dels == [(b"e/k1", rev), (b"e/k2", rev)]
                assert node.state_machine.get(b"e/k1") is None
                assert node.state_machine.get(b"e/free") is not None
                assert lease.id not in node.state_machine.leases.ttl
            assert leader.lease_keeper.expired_proposed == 1

    run_uvloop(go)


def test_a_lease_kept_alive_survives_a_leader_change(run_uvloop, real_cluster):
    async def go():
        async with real_cluster() as rc, Client(rc.endpoints, timeout=10) as c:
            lease = await c.grant(2)
            await c.put(b"held", b"v", lease=lease.id)
            ka = c.keep_alive(lease.id, interval_s=0.3)
            keeping = asyncio.ensure_future(_drain(ka))
            await asyncio.sleep(3)  # past the TTL by the followers' clocks (see below)
            old = await rc.leader_id()
            await c.transfer_leader(next(i for i in rc.nodes if i != old))
            await asyncio.sleep(3)  # longer than the TTL: kept alive on the new leader
            assert not keeping.done()
            new = await rc.leader_id()
            assert new != old
            assert (await c.get(b"held")) is not None
            keeping.cancel()
            await asyncio.sleep(3.5)  # no keep-alive now: it expires
            assert await c.get(b"held") is None

    run_uvloop(go, timeout=60)


async def _drain(agen) -> None:
    async for _ in agen:
        pass


async def _applied_everywhere(rc, index: int) -> None:
    for _ in range(200):
        if all(n.state_machine.applied_index() >= index for n in rc.nodes.values()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not every node applied {index}")


class _LoseGrantAnswer(grpc.aio.UnaryUnaryClientInterceptor):
    """Lets the first Grant (or ``method``) reach the server and complete, then reports the
    answer lost."""

    def __init__(self, method: str = "/Grant") -> None:
        self.lost = 0
        self.method = method

    async def intercept_unary_unary(self, continuation, details, request):
        call = await continuation(details, request)
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if method.endswith(self.method) and not self.lost:
            await call  # applied on the server
            self.lost += 1
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                       grpc.aio.Metadata(), details="answer lost (test)")
        return call


def test_a_grant_retried_after_a_lost_answer_grants_one_lease(run_uvloop, real_cluster):
    async def go():
        lose = _LoseGrantAnswer()
        async with real_cluster() as rc, Client(rc.endpoints, timeout=10,
                                                interceptors=[lose]) as c:
            lease = await c.grant(30)
            assert lose.lost == 1
            await _applied_everywhere(rc, (await c.status()).commit_index)
            for node in rc.nodes.values():
                assert list(node.state_machine.leases.ttl) == [lease.id]

    run_uvloop(go)


def test_a_revoke_retried_after_a_lost_answer_succeeds(run_uvloop, real_cluster):
    async def go():
        lose = _LoseGrantAnswer("/Revoke")
        async with real_cluster() as rc, Client(rc.endpoints, timeout=10,
                                                interceptors=[lose]) as c:
            lease = await c.grant(30)
            await c.put("r/k", "v", lease=lease.id)
            assert await c.revoke(lease.id) == 0  # the retry found its own revoke done
            assert lose.lost == 1
            assert await c.get("r/k") is None
            with pytest.raises(E.LeaseNotFound):  # a first try on a missing lease still says so
                await c.revoke(lease.id)

    run_uvloop(go)


def test_the_sync_client_watches_and_keeps_a_lease(run_uvloop, real_cluster):
    from dengine.client import SyncClient

    def blocking(endpoints):
        with SyncClient(endpoints, timeout=10) as c:
            lease = c.grant(30)
            rev = c.put("s/k", "v", lease=lease.id)
            ttls = []
            for ttl in c.keep_alive(lease.id, interval_s=0.05):
                ttls.append(ttl)
                if len(ttls) == 3:
                    break
            c.revoke(lease.id)
            seen = []
            for u in c.watch("s/", prefix=True, start_revision=rev):
                seen += [(e.type, e.key) for e in u.events]
                if len(seen) >= 2:
                    break
            return ttls, seen

    async def go():
        async with real_cluster() as rc:
            ttls, seen = await asyncio.to_thread(blocking, rc.endpoints)
            assert ttls == [30, 30, 30]
            assert seen == [("put", b"s/k"), ("delete", b"s/k")]

    run_uvloop(go)
