"""The etcd services (KV, Lease, Cluster, Maintenance) of one node; Watch is in :mod:`.watch`.

See :mod:`dengine.etcd` for how revisions, writes, reads and forwarding work.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from dengine.consistency import Consistency
from dengine.errors import ConfigError, NotLeader
from dengine.etcd import store
from dengine.etcd.errors import UNIMPLEMENTED_MESSAGES, etcd_status
from dengine.etcd.pb import rpc_pb2 as pb
from dengine.etcd.pb import rpc_pb2_grpc as pbg
from dengine.node.admission import ApplyLag
from dengine.statemachine import leases as L
from dengine.statemachine.kv import KVStateMachine

if TYPE_CHECKING:
    from dengine.node.node import Node

__all__ = ["EtcdApi", "add_etcd_services", "ETCD_VERSION"]

#: The etcd version reported by Maintenance.Status (the API generation served).
ETCD_VERSION = "3.4.0"
#: Metadata on a request a follower forwards to the leader (it is never forwarded again).
FORWARDED = "dengine-etcd-forwarded"


class EtcdApi:
    """What every etcd service of a node shares: headers, the write path, forwarding."""

    def __init__(self, node: Node, client_url: str = "") -> None:
        from dengine.node.bootstrap import cluster_number

        self.node = node
        sm = node.state_machine
        if not isinstance(sm, KVStateMachine):
            raise ConfigError("etcd_api.listen", node.config.etcd_api.listen,
                              "only with the built-in KV state machine (this node runs "
                              f"{type(sm).__name__})")
        self.sm: KVStateMachine = sm
        self.cluster_num = cluster_number(node.cluster_id)
        self.client_url = client_url
        self._channels: dict[str, Any] = {}
        # etcd itself refuses writes past a gap between commit and apply ("too many requests")
        self.apply_lag = ApplyLag(node.config.network.max_apply_lag_entries)

    def header(self, revision: int = 0) -> pb.ResponseHeader:
        core = self.node.core
        return pb.ResponseHeader(cluster_id=self.cluster_num, member_id=self.node.node_id,
                                 revision=revision or self.sm.applied_index(),
                                 raft_term=core.term if core is not None else 0)

    async def guard(self, context: Any, call: Awaitable[Any]) -> Any:
        """Run a unary call; a failure ends it with etcd's status code and message."""
        try:
            return await call
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - every error goes back as etcd's status
            if not isinstance(e, ValueError | store.EtcdError) and \
                    type(e).__module__ != "dengine.errors":
                self.node.logger.exception("etcd request failed")
            code, message = etcd_status(e)
        await context.abort(code, message)

    def leader_channel(self, context: Any) -> Any:
        """A channel to the leader's node port (which serves the same etcd services)."""
        md = dict(context.invocation_metadata() or ())
        lead = self.node.leader_id
        addr = self.node.address_of(lead) if lead else None
        if FORWARDED in md or not addr or lead == self.node.node_id:
            raise NotLeader(lead, addr)
        ch = self._channels.get(addr)
        if ch is None:
            if self.node.config.tls.enabled:
                from dengine.security.tls import PeerTls

                creds = PeerTls(self.node.config.tls).channel_credentials()
                ch = grpc.aio.secure_channel(addr, creds)
            else:
                ch = grpc.aio.insecure_channel(addr)
            self._channels[addr] = ch
        return ch

    async def forward(self, context: Any, method: str, req: Any, resp_cls: Any) -> Any:
        """Send a unary call to the leader; its answer (or its etcd error) is ours."""
        try:
            ch = self.leader_channel(context)
        except NotLeader as e:  # no leader known, or the leader moved while forwarding
            await context.abort(*etcd_status(e))
        call = ch.unary_unary(
            method, request_serializer=type(req).SerializeToString,
            response_deserializer=resp_cls.FromString)
        try:
            return await call(req, metadata=((FORWARDED, "1"),), timeout=30)
        except grpc.aio.AioRpcError as e:
            await context.abort(e.code(), e.details() or "")

    async def write(self, txn: pb.TxnRequest) -> pb.TxnResponse:
        """One Txn through the log (the caller is the leader); its response with the header."""
        node = self.node
        if node.is_leader:
            self.apply_lag.check(node.core.commit_index, self.sm.applied_index())
        result = await node.propose(bytes((L.OP_ETCD_TXN,)) + txn.SerializeToString())
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, pb.TxnResponse), "OP_ETCD_TXN applies to a TxnResponse"
        result.header.CopyFrom(self.header(result.header.revision))
        return result

    def read_consistency(self, serializable: bool) -> Awaitable[None]:
        return self.node.read_barrier(Consistency.SERIALIZABLE if serializable
                                      else Consistency.LINEARIZABLE)

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()


def _key(key: bytes) -> None:
    if not key:
        raise store.EtcdError("INVALID_ARGUMENT", "etcdserver: key is not provided")


def _writing(method: str, resp_cls: Any,
             body: Callable[[Any, Any], Awaitable[Any]]) -> Callable:
    """A write RPC: forwarded to the leader from a follower, else ``body`` under the guard."""

    async def rpc(self: Any, req: Any, context: Any) -> Any:
        api: EtcdApi = self.api
        if not api.node.is_leader:
            return await api.forward(context, method, req, resp_cls)
        return await api.guard(context, body(self, req))

    return rpc


class KVService(pbg.KVServicer):
    def __init__(self, api: EtcdApi) -> None:
        self.api = api

    async def Range(self, req: pb.RangeRequest, context: Any) -> pb.RangeResponse:
        async def go() -> pb.RangeResponse:
            _key(req.key)
            await self.api.read_consistency(req.serializable)
            recs = store.range_at(self.api.sm, req.key, req.range_end, req.revision)
            resp = store.range_response(recs, req)
            resp.header.CopyFrom(self.api.header())
            return resp

        return await self.api.guard(context, go())

    async def _put(self, req: pb.PutRequest) -> pb.PutResponse:
        _key(req.key)
        r = await self.api.write(pb.TxnRequest(success=[pb.RequestOp(request_put=req)]))
        resp = r.responses[0].response_put
        resp.header.CopyFrom(r.header)
        return resp

    async def _delete(self, req: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        _key(req.key)
        r = await self.api.write(pb.TxnRequest(success=[pb.RequestOp(request_delete_range=req)]))
        resp = r.responses[0].response_delete_range
        resp.header.CopyFrom(r.header)
        return resp

    async def _txn(self, req: pb.TxnRequest) -> pb.TxnResponse:
        store.check_txn(req)
        return await self.api.write(req)

    Put = _writing("/etcdserverpb.KV/Put", pb.PutResponse, _put)
    DeleteRange = _writing("/etcdserverpb.KV/DeleteRange", pb.DeleteRangeResponse, _delete)
    Txn = _writing("/etcdserverpb.KV/Txn", pb.TxnResponse, _txn)

    async def Compact(self, req: pb.CompactionRequest, context: Any) -> pb.CompactionResponse:
        async def go() -> pb.CompactionResponse:
            sm = self.api.sm
            applied = sm.applied_index()
            if req.revision > applied:
                raise store.EtcdError("OUT_OF_RANGE", store.FUTURE_REV)
            if req.revision + 1 < sm.history.oldest_revision(applied):
                raise store.EtcdError("OUT_OF_RANGE", store.COMPACTED)
            return pb.CompactionResponse(header=self.api.header())

        return await self.api.guard(context, go())


class LeaseService(pbg.LeaseServicer):
    def __init__(self, api: EtcdApi) -> None:
        self.api = api

    @property
    def keeper(self) -> Any:
        from dengine.node.leases import LeaseKeeper

        node = self.api.node
        keeper = getattr(node, "lease_keeper", None)
        if keeper is None:
            keeper = node.lease_keeper = LeaseKeeper(node)
        return keeper

    async def _grant(self, req: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
        lease_id = req.ID or (secrets.randbits(62) or 1)
        if lease_id < 0:
            raise store.EtcdError("INVALID_ARGUMENT", "etcdserver: lease ID must be positive")
        await self.api.node.propose(L.encode_grant(lease_id, max(req.TTL, 1)))
        return pb.LeaseGrantResponse(header=self.api.header(), ID=lease_id, TTL=max(req.TTL, 1))

    async def _revoke(self, req: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        if req.ID <= 0:
            raise store.EtcdError("NOT_FOUND", "etcdserver: requested lease not found")
        r: Any = await self.api.node.propose(L.encode_revoke(req.ID))
        if isinstance(r, BaseException):
            raise r
        return pb.LeaseRevokeResponse(header=self.api.header(r.revision))

    async def _ttl(self, req: pb.LeaseTimeToLiveRequest) -> pb.LeaseTimeToLiveResponse:
        ttl = self.keeper.remaining(req.ID) if req.ID > 0 else -1
        table = self.keeper.table
        keys = table.attached(req.ID) if req.keys and ttl >= 0 else []
        return pb.LeaseTimeToLiveResponse(header=self.api.header(), ID=req.ID, TTL=ttl,
                                          grantedTTL=table.ttl.get(req.ID, 0), keys=keys)

    LeaseGrant = _writing("/etcdserverpb.Lease/LeaseGrant", pb.LeaseGrantResponse, _grant)
    LeaseRevoke = _writing("/etcdserverpb.Lease/LeaseRevoke", pb.LeaseRevokeResponse, _revoke)
    LeaseTimeToLive = _writing("/etcdserverpb.Lease/LeaseTimeToLive",
                               pb.LeaseTimeToLiveResponse, _ttl)

    async def LeaseLeases(self, req: pb.LeaseLeasesRequest, context: Any) -> Any:
        async def go() -> pb.LeaseLeasesResponse:
            await self.api.read_consistency(False)
            ids = sorted(self.api.sm.leases.ttl)
            return pb.LeaseLeasesResponse(header=self.api.header(),
                                          leases=[pb.LeaseStatus(ID=i) for i in ids])

        return await self.api.guard(context, go())

    async def LeaseKeepAlive(self, request_iterator: Any, context: Any) -> Any:
        api = self.api
        if not api.node.is_leader:  # the leader's clock keeps the deadlines: pipe to it
            try:
                ch = api.leader_channel(context)
            except NotLeader as e:
                await context.abort(*etcd_status(e))
            call = ch.stream_stream("/etcdserverpb.Lease/LeaseKeepAlive",
                                    request_serializer=pb.LeaseKeepAliveRequest.SerializeToString,
                                    response_deserializer=pb.LeaseKeepAliveResponse.FromString)
            try:
                async for resp in call(request_iterator, metadata=((FORWARDED, "1"),)):
                    yield resp
            except grpc.aio.AioRpcError as e:
                await context.abort(e.code(), e.details() or "")
            return
        async for req in request_iterator:
            try:
                ttl = self.keeper.keep_alive(req.ID)
            except NotLeader as e:
                await context.abort(*etcd_status(e))
            except Exception:  # noqa: BLE001 - lease not found: etcd answers TTL 0
                ttl = 0
            yield pb.LeaseKeepAliveResponse(header=api.header(), ID=req.ID, TTL=ttl)


class ClusterService(pbg.ClusterServicer):
    def __init__(self, api: EtcdApi) -> None:
        self.api = api

    async def MemberList(self, req: pb.MemberListRequest, context: Any) -> Any:
        async def go() -> pb.MemberListResponse:
            node = self.api.node
            members = []
            for i, addr, voter in node.members():
                url = f"http://{addr}" if addr else ""
                mine = i == node.node_id and self.api.client_url
                members.append(pb.Member(ID=i, name=f"dengine-{i}", peerURLs=[url] if url else [],
                                         clientURLs=[self.api.client_url] if mine else [],
                                         isLearner=not voter))
            return pb.MemberListResponse(header=self.api.header(), members=members)

        return await self.api.guard(context, go())


class MaintenanceService(pbg.MaintenanceServicer):
    def __init__(self, api: EtcdApi) -> None:
        self.api = api

    async def Status(self, req: pb.StatusRequest, context: Any) -> pb.StatusResponse:
        async def go() -> pb.StatusResponse:
            st = self.api.node.status()
            voter = any(i == st["id"] and v for i, _a, v in st["members"])
            return pb.StatusResponse(
                header=self.api.header(), version=ETCD_VERSION, dbSize=st["used_bytes"],
                leader=st["leader_id"] or 0, raftIndex=st["commit_index"],
                raftTerm=st["term"], raftAppliedIndex=st["applied_index"],
                errors=[str(a) for a in st["alarms"]], dbSizeInUse=st["used_bytes"],
                isLearner=not voter)

        return await self.api.guard(context, go())


def _unimplemented(service: str, servicer: Any, base: type) -> None:
    """Every RPC of ``base`` that ``servicer`` does not define answers UNIMPLEMENTED, saying so."""
    message = UNIMPLEMENTED_MESSAGES[service]
    for name in dir(base):
        if name.startswith("_") or name in type(servicer).__dict__:
            continue

        async def rpc(req: Any, context: Any, name: str = name) -> Any:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{service}.{name}: {message}")

        setattr(servicer, name, rpc)


class AuthService(pbg.AuthServicer):
    pass


def add_etcd_services(server: Any, api: EtcdApi) -> None:
    """Register etcd's services (and the Watch service) for ``api`` on a ``grpc.aio`` server."""
    from dengine.etcd.watch import WatchService

    cluster, maintenance, auth = ClusterService(api), MaintenanceService(api), AuthService()
    _unimplemented("Cluster", cluster, pbg.ClusterServicer)
    _unimplemented("Maintenance", maintenance, pbg.MaintenanceServicer)
    _unimplemented("Auth", auth, pbg.AuthServicer)
    pbg.add_KVServicer_to_server(KVService(api), server)
    pbg.add_LeaseServicer_to_server(LeaseService(api), server)
    pbg.add_ClusterServicer_to_server(cluster, server)
    pbg.add_MaintenanceServicer_to_server(maintenance, server)
    pbg.add_AuthServicer_to_server(auth, server)
    pbg.add_WatchServicer_to_server(WatchService(api), server)
