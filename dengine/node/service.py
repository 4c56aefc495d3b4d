"""The server side of the client API: the ``Kv`` and ``Cluster`` services of client.proto.

Theory of operation
-------------------
:class:`RequestHandler` turns one request message into one response message against a
:class:`~dengine.node.node.Node`, with no gRPC in sight: the unary RPCs, the ``Batch`` stream
and the in-process embedded client all go through it, so all three behave alike. Every failure
becomes the response's ``error`` field (``dengine.transport.status.to_proto``): a follower
answers writes and linearizable or lease reads with NOT_LEADER plus the leader's id and address;
a command over ``raft.max_msg_bytes`` is PAYLOAD_TOO_LARGE; a malformed request is
INVALID_ARGUMENT; an unexpected exception is INTERNAL, logged, and never takes the node down.
A scan without a limit returns at most ``DEFAULT_SCAN_LIMIT`` keys and a continuation, and any
scan stops at ``network.scan_max_bytes`` of keys and values (with a continuation); so does a
``get_many`` (``next_key_index``). A unary
RPC whose response carries an error ends with the matching gRPC status instead (see
:mod:`dengine.transport.status`); the ``Batch`` stream keeps errors per request.

``Batch`` is a bidirectional stream: each ``ClientRequestBatch`` carries many requests; each is
handled concurrently and the answers go back as they complete, whatever is ready at the moment
leaving as one ``ClientResponseBatch``, matched to its request by ``request_id``. A request with
no operation set is answered with a ``put`` response carrying INVALID_ARGUMENT. Flow control
(:mod:`dengine.node._stream`): a request's slot is freed only once its answer was written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dengine._core import codec
from dengine.errors import DengineError, InvalidArgument, Overloaded, PayloadTooLarge
from dengine.node._stream import StreamBudget, run_batch_stream
from dengine.node.admission import Admission, ApplyLag
from dengine.observability.tracing import request_tracing
from dengine.statemachine.kv import KVStateMachine
from dengine.statemachine.sessions import MAX_REGISTER, encode_register
from dengine.transport.status import status_of_error, to_proto
from dengine.transport.strict import add_strict
from dengine.v1 import client_pb2, client_pb2_grpc

if TYPE_CHECKING:
    from dengine.node.node import Node

__all__ = ["RequestHandler", "KvService", "ClusterService", "add_client_services"]

pb = client_pb2
MAX_U64 = (1 << 64) - 1
MAX_SCAN_LIMIT = 10_000
#: Keys a scan returns when the request sets no limit (the rest come with a continuation).
DEFAULT_SCAN_LIMIT = 1000
MAX_GET_MANY_KEYS = 10_000


def _kv(kv: Any) -> client_pb2.KeyValue:
    return pb.KeyValue(key=kv.key, value=kv.value, revision=kv.revision, version=kv.version)


class RequestHandler:
    """One request message in, one response message out; errors go in the response."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.logger = node.logger
        self._metrics = getattr(node, "metrics", None)
        self._tracing = request_tracing(node)
        net = getattr(getattr(node, "config", None), "network", None)
        self.admission = (Admission(net.max_pending_requests, net.max_pending_bytes)
                          if net is not None else None)
        self.apply_lag = ApplyLag(net.max_apply_lag_entries) if net is not None else None

    async def call(self, name: str, request: Any, response_cls: type) -> Any:
        """Run ``name`` (a method of this class) and wrap any error in ``response_cls``; past
        the node's limits, refuse it at once (:mod:`dengine.node.admission`)."""
        if self.admission is None:
            return await self._traced(name, request, response_cls)
        nbytes = request.ByteSize()
        try:
            self.admission.admit(nbytes)
        except Overloaded as e:
            resp = response_cls(error=to_proto(e))
            if self._metrics is not None:
                self._metrics.on_client_request(name, resp)
            return resp
        try:
            return await self._traced(name, request, response_cls)
        finally:
            self.admission.release(nbytes)

    async def _traced(self, name: str, request: Any, response_cls: type) -> Any:
        tracing = self._tracing
        span = tracing.start(name) if tracing is not None else None
        if tracing is None or span is None:
            resp = await self._call(name, request, response_cls)
        else:
            try:
                with tracing.use(span):
                    resp = await self._call(name, request, response_cls)
            except BaseException:
                span.end()  # cancelled: the request has no answer
                raise
            tracing.end(span, resp)
        if self._metrics is not None:
            self._metrics.on_client_request(name, resp)
        return resp

    async def _call(self, name: str, request: Any, response_cls: type) -> Any:
        try:
            return await getattr(self, name)(request)
        except (DengineError, ValueError, OverflowError) as e:
            return response_cls(error=to_proto(_as_dengine(e)))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug answers INTERNAL, the node goes on
            self.logger.exception("request failed", method=name)
            return response_cls(error=to_proto(e))

    # -- helpers --------------------------------------------------------------------------
    @property
    def _kv(self) -> KVStateMachine:
        """The node's state machine: the client API reads the KV machine's keys."""
        sm = self.node.state_machine
        assert isinstance(sm, KVStateMachine), "the client API needs the KV state machine"
        return sm

    def _key(self, key: bytes) -> bytes:
        if not key:
            raise InvalidArgument("the key is empty")
        return key

    def _session(self, cmd: bytes, session: Any, has: bool) -> bytes:
        if not has:
            return cmd
        if not (0 < session.client_id <= MAX_U64 and 0 < session.seq <= MAX_U64):
            raise InvalidArgument("a session needs a client_id > 0 and a seq > 0")
        return codec.encode_session(session.client_id, session.seq, cmd)

    async def _write(self, cmd: bytes) -> Any:
        limit = self.node.max_command_bytes
        if len(cmd) > limit:
            raise PayloadTooLarge(len(cmd), limit, "request", "raft.max_msg_bytes")
        node = self.node
        if self.apply_lag is not None and node.is_leader:  # a follower answers NOT_LEADER
            self.apply_lag.check(node.core.commit_index, node.state_machine.applied_index())
        return await node.propose(cmd)

    # -- Kv -------------------------------------------------------------------------------
    async def put(self, req: client_pb2.PutRequest) -> client_pb2.PutResponse:
        if req.lease:  # attached to a lease: dengine.node.leases
            from dengine.node.leases import lease_put

            return await lease_put(self, req)
        cmd = codec.encode_put(self._key(req.key), req.value)
        r = await self._write(self._session(cmd, req.session, req.HasField("session")))
        return pb.PutResponse(revision=r.revision)

    async def delete(self, req: client_pb2.DeleteRequest) -> client_pb2.DeleteResponse:
        cmd = codec.encode_delete(self._key(req.key))
        r = await self._write(self._session(cmd, req.session, req.HasField("session")))
        return pb.DeleteResponse(deleted=r.ok, revision=self.node.state_machine.applied_index())

    async def cas(self, req: client_pb2.CompareAndSetRequest) -> client_pb2.CompareAndSetResponse:
        key = self._key(req.key)
        cmd = codec.encode_cas(
            key,
            req.expected_value if req.HasField("expected_value") else None,
            req.expected_version if req.HasField("expected_version") else None,
            req.new_value if req.HasField("new_value") else None,
        )
        r = await self._write(self._session(cmd, req.session, req.HasField("session")))
        resp = pb.CompareAndSetResponse(succeeded=r.ok, revision=r.revision)
        cur = self._kv.get(key)
        if cur is not None:
            resp.current.CopyFrom(_kv(cur))
        return resp

    async def write_batch(self, req: client_pb2.WriteBatchRequest) -> client_pb2.WriteBatchResponse:
        ops: list[tuple] = []
        for op in req.ops:
            kind = op.WhichOneof("op")
            if kind == "put":
                ops.append((codec.OP_PUT, self._key(op.put.key), op.put.value))
            elif kind == "delete":
                ops.append((codec.OP_DELETE, self._key(op.delete.key)))
            else:
                raise InvalidArgument("a batch op must be a put or a delete")
        if not ops:
            raise InvalidArgument("the batch is empty")
        cmd = codec.encode_batch(ops)
        r = await self._write(self._session(cmd, req.session, req.HasField("session")))
        return pb.WriteBatchResponse(revision=r.revision)

    async def register_session(self, req: Any) -> client_pb2.RegisterSessionResponse:
        count = req.count or 1
        if count > MAX_REGISTER:
            raise InvalidArgument(f"count {count}: one call registers at most {MAX_REGISTER} "
                                  "sessions")
        r = await self._write(encode_register(count))
        return pb.RegisterSessionResponse(client_id=r.client_id, count=r.count)

    async def get(self, req: client_pb2.GetRequest) -> client_pb2.GetResponse:
        key = self._key(req.key)
        await self.node.read_barrier(req.consistency)
        kv = self._kv.get(key)
        if kv is None:
            return pb.GetResponse(found=False)
        return pb.GetResponse(found=True, kv=_kv(kv))

    async def get_many(self, req: client_pb2.GetManyRequest) -> client_pb2.GetManyResponse:
        if len(req.keys) > MAX_GET_MANY_KEYS:
            raise InvalidArgument(f"{len(req.keys)} keys in one get_many; at most "
                                  f"{MAX_GET_MANY_KEYS}")
        keys = [self._key(k) for k in req.keys]
        await self.node.read_barrier(req.consistency)
        # One page within the scan budget (at least one value, however large), read with no
        # await in between: one point in time. The rest: next_key_index (the client follows).
        sm, budget, used = self._kv, scan_budget(self.node.config), 0
        out: list[client_pb2.KeyValue] = []
        for i, key in enumerate(keys):
            kv = sm.get(key)
            if kv is None:
                continue
            used += len(kv.key) + len(kv.value)
            if out and used > budget:
                return pb.GetManyResponse(kvs=out, next_key_index=i)
            out.append(_kv(kv))
        return pb.GetManyResponse(kvs=out)

    async def scan(self, req: client_pb2.ScanRequest) -> client_pb2.ScanResponse:
        limit = req.limit or DEFAULT_SCAN_LIMIT
        if limit > MAX_SCAN_LIMIT:
            raise InvalidArgument(f"limit {limit} is above {MAX_SCAN_LIMIT}")
        if req.prefix and req.end:
            raise InvalidArgument("give a prefix or an end key, not both")
        if req.end and req.end <= req.start:
            raise InvalidArgument("the end key must be above the start key")
        await self.node.read_barrier(req.consistency)
        sm = self._kv
        budget = scan_budget(self.node.config)
        if req.prefix:
            page = sm.prefix(req.prefix, limit, req.start or None, max_bytes=budget)
        else:
            page = sm.range(req.start, req.end or None, limit, max_bytes=budget)
        return pb.ScanResponse(kvs=[_kv(kv) for kv in page.items],
                               continuation=page.next_key or b"")

    # -- Cluster --------------------------------------------------------------------------
    def _members(self) -> list[client_pb2.Member]:
        return [pb.Member(id=i, address=a, role=pb.VOTER if v else pb.LEARNER)
                for i, a, v in self.node.members()]

    async def status(self, _req: Any) -> client_pb2.StatusResponse:
        st = self.node.status()
        return pb.StatusResponse(
            id=st["id"], role=st["role"], term=st["term"], leader_id=st["leader_id"] or 0,
            leader_addr=st["leader_addr"] or "", commit_index=st["commit_index"],
            applied_index=st["applied_index"], members=self._members(),
            cluster_id=st["cluster_id"], alarms=st["alarms"], used_bytes=st["used_bytes"],
            quota_bytes=st["quota_bytes"], compaction_pending_bytes=st["compaction_pending_bytes"],
            compactions_running=st["compactions_running"],
        )

    async def compact_storage(self, _req: Any) -> client_pb2.CompactStorageResponse:
        return pb.CompactStorageResponse(seconds=await self.node.compact_storage())

    async def alarm_disarm(self, _req: Any) -> client_pb2.AlarmDisarmResponse:
        q = self.node.quota
        await q.disarm()  # and records it in the log
        return pb.AlarmDisarmResponse(alarms=q.alarms(), used_bytes=q.used_bytes,
                                      quota_bytes=q.quota_bytes)

    async def alarm_update(self, req: Any) -> client_pb2.AlarmDisarmResponse:
        q = self.node.quota
        await self.node.cluster_alarm.handle_request(req)
        return pb.AlarmDisarmResponse(alarms=q.alarms(), used_bytes=q.used_bytes,
                                      quota_bytes=q.quota_bytes)

    async def transfer_leader(self, req: Any) -> client_pb2.TransferLeaderResponse:
        await self.node.transfer_leader(req.target_id)
        return pb.TransferLeaderResponse()

    async def add_learner(self, req: Any) -> client_pb2.MembershipResponse:
        await self.node.add_learner(req.id, req.address)
        return pb.MembershipResponse(members=self._members())

    async def promote(self, req: Any) -> client_pb2.MembershipResponse:
        await self.node.promote(req.id)
        return pb.MembershipResponse(members=self._members())

    async def remove_member(self, req: Any) -> client_pb2.MembershipResponse:
        await self.node.remove_member(req.id)
        return pb.MembershipResponse(members=self._members())


def scan_budget(config: Any) -> int:
    """A scan page's byte budget: ``network.scan_max_bytes``, but never so close to the gRPC
    message limit that the one value a page may run past it would not fit."""
    net = config.network
    room = net.max_message_bytes - config.raft.max_msg_bytes - 64 * 1024
    return max(1024, min(net.scan_max_bytes, room))


def _as_dengine(e: BaseException) -> BaseException:
    if isinstance(e, DengineError):
        return e
    return InvalidArgument(str(e))


#: Batch stream: request oneof field -> (handler method, response class).
BATCH_OPS: dict[str, tuple[str, type]] = {
    "put": ("put", pb.PutResponse),
    "get": ("get", pb.GetResponse),
    "delete": ("delete", pb.DeleteResponse),
    "cas": ("cas", pb.CompareAndSetResponse),
    "batch": ("write_batch", pb.WriteBatchResponse),
    "scan": ("scan", pb.ScanResponse),
    "get_many": ("get_many", pb.GetManyResponse),
}


def _unary(name: str, response_cls: type) -> Callable:
    async def method(self: Any, request: Any, context: Any) -> Any:
        resp = await self.handler.call(name, request, response_cls)
        if resp.error.code:  # a unary call fails with a gRPC status, not an OK with an error
            code, details, trailing = status_of_error(resp.error)
            await context.abort(code, details, trailing_metadata=trailing)
        return resp

    method.__name__ = name
    return method


class KvService(client_pb2_grpc.KvServicer):
    """The ``Kv`` service: unary calls and the ``Batch`` stream."""

    def __init__(self, handler: RequestHandler) -> None:
        self.handler = handler

    Put = _unary("put", pb.PutResponse)
    Get = _unary("get", pb.GetResponse)
    GetMany = _unary("get_many", pb.GetManyResponse)
    Delete = _unary("delete", pb.DeleteResponse)
    CompareAndSet = _unary("cas", pb.CompareAndSetResponse)
    WriteBatch = _unary("write_batch", pb.WriteBatchResponse)
    Scan = _unary("scan", pb.ScanResponse)
    RegisterSession = _unary("register_session", pb.RegisterSessionResponse)

    async def Batch(self, request_iterator: Any, context: Any) -> Any:
        net = self.handler.node.config.network
        budget = StreamBudget(net.stream_max_in_flight, net.stream_max_queued_bytes)
        async for batch in run_batch_stream(request_iterator, self._one,
                                            lambda rs: pb.ClientResponseBatch(responses=rs),
                                            budget):
            yield batch

    async def _one(self, req: client_pb2.ClientRequest) -> client_pb2.ClientResponse:
        kind = req.WhichOneof("request")
        resp = pb.ClientResponse(request_id=req.request_id)
        if kind is None:
            err = to_proto(InvalidArgument("the request carries no operation"))
            resp.put.CopyFrom(pb.PutResponse(error=err))
        else:
            name, cls = BATCH_OPS[kind]
            result = await self.handler.call(name, getattr(req, kind), cls)
            getattr(resp, kind).CopyFrom(result)
        return resp


class ClusterService(client_pb2_grpc.ClusterServicer):
    """The ``Cluster`` service: status, leadership transfer, membership."""

    def __init__(self, handler: RequestHandler) -> None:
        self.handler = handler

    Status = _unary("status", pb.StatusResponse)
    TransferLeader = _unary("transfer_leader", pb.TransferLeaderResponse)
    AddLearner = _unary("add_learner", pb.MembershipResponse)
    Promote = _unary("promote", pb.MembershipResponse)
    RemoveMember = _unary("remove_member", pb.MembershipResponse)
    AlarmDisarm = _unary("alarm_disarm", pb.AlarmDisarmResponse)
    _alarm_update = _unary("alarm_update", pb.AlarmDisarmResponse)
    CompactStorage = _unary("compact_storage", pb.CompactStorageResponse)

    async def AlarmUpdate(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
        """Only the member itself may record its alarm (see ClusterAlarm.caller_refusal)."""
        refusal = self.handler.node.cluster_alarm.caller_refusal(context, request.member_id)
        if refusal is not None:
            import grpc

            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
        return await self._alarm_update(request, context)


def add_client_services(server: Any, node: Node, *more: Any) -> RequestHandler:
    """Register ``Kv`` and ``Cluster`` (and ``Watch``, ``Lease``) for ``node`` on a
    ``grpc.aio`` server, and the same servicers on each of ``more`` (the client-only port):
    one handler, so one set of admission limits, whichever port a request comes in on."""
    handler = RequestHandler(node)
    kv, cluster = KvService(handler), ClusterService(handler)
    auth = getattr(node.config, "auth", None)
    authorizer = None
    if auth is not None and auth.enabled:  # roles checked before the handler (security.auth)
        from dengine.security.auth import Authorizer, protect_services

        authorizer = Authorizer(auth.users_path, node.logger)
        protect_services(kv, cluster, authorizer, node.logger)
    # Strict: a unary request that does not parse is INVALID_ARGUMENT, not gRPC's UNKNOWN.
    from dengine.node.leases import add_lease_service
    from dengine.node.watch import add_watch_service

    for srv in (server, *more):
        add_strict(client_pb2_grpc.add_KvServicer_to_server, kv, srv)
        add_strict(client_pb2_grpc.add_ClusterServicer_to_server, cluster, srv)
        add_watch_service(srv, node, authorizer)
        add_lease_service(srv, handler, authorizer)
    return handler
