"""A scripted fake cluster on real grpc.aio servers, for the client's protocol handling.

Each :class:`FakeNode` is a real gRPC server on a loopback port serving the Kv and Cluster
services from client.proto. The nodes share one dict as their "replicated" state and one
session table (client_id, seq) -> result, so duplicate suppression is observable. A test scripts
who leads, whether followers give a leader hint, failures to inject per operation, lost
responses, a broken batch stream, and delays; the nodes count every unary call and every stream
message they receive. This tests the client's protocol handling, not a cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from dengine import errors as E
from dengine.testing.loops import LOOP_KINDS, run_checked
from dengine.transport import status as S
from dengine.v1 import client_pb2 as pb
from dengine.v1 import client_pb2_grpc as pbg

LOOPS = LOOP_KINDS


@pytest.fixture(params=LOOPS)
def run(request) -> Callable[..., Any]:
    """``run(coro_fn, *args, timeout=20)`` on a fresh asyncio or uvloop loop; fails the test
    on any unhandled loop exception."""

    def runner(coro_fn: Callable[..., Awaitable[Any]], *args: Any, timeout: float = 20) -> Any:
        return run_checked(request.param, coro_fn, *args, timeout=timeout)

    return runner


class Shared:
    """State shared by the fake nodes: the data, the session table, who leads."""

    def __init__(self) -> None:
        self.data: dict[bytes, tuple[bytes, int, int]] = {}  # key -> (value, revision, version)
        self.index = 0
        self.sessions: dict[tuple[int, int], Any] = {}
        self.registered = 0  # sessions opened
        self.expired: set[int] = set()  # session ids that answer SESSION_EXPIRED
        self.expire_after_apply = False  # expire a write's session right after applying it
        self.applied = 0  # writes actually applied (not answered from the session table)
        self.leader_id = 1
        self.term = 1
        self.nodes: dict[int, FakeNode] = {}
        self.max_value_bytes = 1024 * 1024


class FakeNode(pbg.KvServicer, pbg.ClusterServicer):
    """One fake node; see the module docstring."""

    def __init__(self, node_id: int, shared: Shared) -> None:
        self.id = node_id
        self.shared = shared
        self.address = ""
        self.server: grpc.aio.Server | None = None
        self.hint = True  # followers say who leads
        self.fail: dict[str, list[BaseException]] = {}  # op -> errors to answer next, in order
        self.abort: dict[str, list[BaseException]] = {}  # op -> errors to abort the RPC with
        self.lose_response: dict[str, int] = {}  # op -> how many times to apply then abort
        self.delay_s = 0.0
        self.stall: dict[str, int] = {}  # op -> how many calls to hold (unanswered) for 60 s
        self.break_stream_after = 0  # abort Batch after this many received messages (0: never)
        self.batch_unimplemented = False
        self.calls: dict[str, int] = {}
        self.stream_messages = 0
        self.stream_requests = 0
        self.streams_opened = 0

    # ------------------------------------------------------------------------------ plumbing

    async def start(self) -> None:
        self.server = grpc.aio.server()
        pbg.add_KvServicer_to_server(self, self.server)
        pbg.add_ClusterServicer_to_server(self, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)

    def _count(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1

    def _leader(self) -> FakeNode | None:
        return self.shared.nodes.get(self.shared.leader_id)

    def _not_leader(self) -> E.NotLeader:
        leader = self._leader()
        if not self.hint or leader is None:
            return E.NotLeader(None, None)
        return E.NotLeader(leader.id, leader.address)

    async def _handle(self, op: str, req: Any, *, write: bool, needs_leader: bool = True) -> Any:
        """Common path of every KV op: scripted failures, leadership, then ``_do_<op>``."""
        self._count(op)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.stall.get(op):
            self.stall[op] -= 1
            await asyncio.sleep(60)
        if self.fail.get(op):
            raise self.fail[op].pop(0)
        if needs_leader and self.shared.leader_id != self.id:
            raise self._not_leader()
        if write:
            key = (req.session.client_id, req.session.seq)
            if req.session.client_id in self.shared.expired:
                raise E.SessionExpired(*key)
            if req.session.client_id and key in self.shared.sessions:
                return self.shared.sessions[key]
            result = getattr(self, f"_do_{op}")(req)
            self.shared.applied += 1
            if self.shared.expire_after_apply:
                self.shared.expired.add(req.session.client_id)
            if req.session.client_id:
                self.shared.sessions[key] = result
            return result
        return getattr(self, f"_do_{op}")(req)

    def _next_index(self) -> int:
        self.shared.index += 1
        return self.shared.index

    def _kv(self, key: bytes) -> pb.KeyValue | None:
        got = self.shared.data.get(key)
        if got is None:
            return None
        return pb.KeyValue(key=key, value=got[0], revision=got[1], version=got[2])

    def _set(self, key: bytes, value: bytes, index: int) -> None:
        old = self.shared.data.get(key)
        self.shared.data[key] = (value, index, (old[2] if old else 0) + 1)

    # ------------------------------------------------------------------------------ KV logic

    def _do_put(self, req: pb.PutRequest) -> pb.PutResponse:
        if len(req.value) > self.shared.max_value_bytes:
            raise E.PayloadTooLarge(len(req.value), self.shared.max_value_bytes, "value")
        index = self._next_index()
        self._set(req.key, req.value, index)
        return pb.PutResponse(revision=index)

    def _do_get(self, req: pb.GetRequest) -> pb.GetResponse:
        kv = self._kv(req.key)
        return pb.GetResponse(found=kv is not None, kv=kv)

    def _do_get_many(self, req: pb.GetManyRequest) -> pb.GetManyResponse:
        return pb.GetManyResponse(kvs=[kv for k in req.keys if (kv := self._kv(k)) is not None])

    def _do_delete(self, req: pb.DeleteRequest) -> pb.DeleteResponse:
        index = self._next_index()
        existed = self.shared.data.pop(req.key, None) is not None
        return pb.DeleteResponse(deleted=existed, revision=index)

    def _do_cas(self, req: pb.CompareAndSetRequest) -> pb.CompareAndSetResponse:
        kv = self._kv(req.key)
        ok = True
        if req.HasField("expected_value"):
            ok = ok and kv is not None and kv.value == req.expected_value
        if req.HasField("expected_version"):
            ok = ok and (kv.version if kv is not None else 0) == req.expected_version
        index = self._next_index()
        if ok:
            if req.HasField("new_value"):
                self._set(req.key, req.new_value, index)
            else:
                self.shared.data.pop(req.key, None)
        return pb.CompareAndSetResponse(succeeded=ok, current=self._kv(req.key), revision=index)

    def _do_batch(self, req: pb.WriteBatchRequest) -> pb.WriteBatchResponse:
        index = self._next_index()
        for op in req.ops:
            if op.WhichOneof("op") == "put":
                self._set(op.put.key, op.put.value, index)
            else:
                self.shared.data.pop(op.delete.key, None)
        return pb.WriteBatchResponse(revision=index)

    def _do_scan(self, req: pb.ScanRequest) -> pb.ScanResponse:
        keys = sorted(
            k
            for k in self.shared.data
            if k >= req.start and (not req.end or k < req.end) and k.startswith(req.prefix)
        )
        limit = req.limit or 1000
        page, rest = keys[:limit], keys[limit:]
        return pb.ScanResponse(
            kvs=[self._kv(k) for k in page], continuation=rest[0] if rest else b""
        )

    # ----------------------------------------------------------------------------- services

    async def _unary(self, op: str, field: str, req: Any, context: Any, **kw: Any) -> Any:
        resp_cls = type(getattr(pb.ClientResponse(), field))
        if self.abort.get(op):
            self._count(op)
            await S.abort(context, self.abort[op].pop(0))
        try:
            resp = await self._handle(op, req, **kw)
        except E.DengineError as e:
            return resp_cls(error=S.to_proto(e))
        if self.lose_response.get(op):
            self.lose_response[op] -= 1
            await S.abort(context, E.Unavailable("connection reset (scripted lost response)"))
        return resp

    async def Put(self, request, context):
        return await self._unary("put", "put", request, context, write=True)

    async def Get(self, request, context):
        serializable = request.consistency == pb.SERIALIZABLE
        return await self._unary(
            "get", "get", request, context, write=False, needs_leader=not serializable
        )

    async def GetMany(self, request, context):
        return await self._unary("get_many", "get_many", request, context, write=False)

    async def Delete(self, request, context):
        return await self._unary("delete", "delete", request, context, write=True)

    async def CompareAndSet(self, request, context):
        return await self._unary("cas", "cas", request, context, write=True)

    async def WriteBatch(self, request, context):
        return await self._unary("batch", "batch", request, context, write=True)

    async def Scan(self, request, context):
        return await self._unary("scan", "scan", request, context, write=False)

    async def RegisterSession(self, request, context):
        """Session ids come from the index of the entry that registered them, as on a node."""
        self._count("register")
        if self.fail.get("register"):
            return pb.RegisterSessionResponse(error=S.to_proto(self.fail["register"].pop(0)))
        if self.shared.leader_id != self.id:
            return pb.RegisterSessionResponse(error=S.to_proto(self._not_leader()))
        count = request.count or 1
        self.shared.registered += count
        return pb.RegisterSessionResponse(client_id=self._next_index() * 256, count=count)

    async def _one(self, creq: pb.ClientRequest) -> pb.ClientResponse:
        field = creq.WhichOneof("request")
        req = getattr(creq, field)
        write = field in ("put", "delete", "cas", "batch")
        needs_leader = not (field == "get" and req.consistency == pb.SERIALIZABLE)
        out = pb.ClientResponse(request_id=creq.request_id)
        try:
            resp = await self._handle(field, req, write=write, needs_leader=needs_leader)
        except E.DengineError as e:
            getattr(out, field).error.CopyFrom(S.to_proto(e))
            return out
        getattr(out, field).CopyFrom(resp)
        return out

    async def Batch(self, request_iterator, context):
        """Requests run concurrently; answers leave as they complete, batched."""
        if self.batch_unimplemented:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no Batch here")
        self.streams_opened += 1
        out: asyncio.Queue = asyncio.Queue()
        tasks: set[asyncio.Task] = set()

        async def answer(r: pb.ClientRequest) -> None:
            out.put_nowait(await self._one(r))

        async def read() -> None:
            async for batch in request_iterator:
                self.stream_messages += 1
                self.stream_requests += len(batch.requests)
                if self.break_stream_after and self.stream_messages >= self.break_stream_after:
                    self.break_stream_after = 0
                    out.put_nowait(E.Unavailable("scripted stream break"))
                    return
                for r in batch.requests:
                    t = asyncio.create_task(answer(r))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
            await asyncio.gather(*list(tasks))
            out.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while True:
                item = await out.get()
                if isinstance(item, BaseException):
                    await S.abort(context, item)
                if item is None:
                    return
                items = [item]
                while not out.empty() and isinstance(out._queue[0], pb.ClientResponse):
                    items.append(out.get_nowait())
                yield pb.ClientResponseBatch(responses=items)
        finally:
            reader.cancel()
            for t in list(tasks):
                t.cancel()

    async def Status(self, request, context):
        self._count("status")
        leader = self._leader()
        role = "leader" if self.shared.leader_id == self.id else "follower"
        return pb.StatusResponse(
            id=self.id,
            role=role,
            term=self.shared.term,
            leader_id=leader.id if leader and (self.hint or leader is self) else 0,
            leader_addr=leader.address if leader and (self.hint or leader is self) else "",
            members=[
                pb.Member(id=n.id, address=n.address, role=pb.VOTER)
                for n in self.shared.nodes.values()
            ],
            cluster_id="fake",
        )

    async def _member_op(self, op: str, context) -> pb.MembershipResponse:
        self._count(op)
        if self.fail.get(op):
            return pb.MembershipResponse(error=S.to_proto(self.fail[op].pop(0)))
        if self.shared.leader_id != self.id:
            return pb.MembershipResponse(error=S.to_proto(self._not_leader()))
        return pb.MembershipResponse(
            members=[
                pb.Member(id=n.id, address=n.address, role=pb.VOTER)
                for n in self.shared.nodes.values()
            ]
        )

    async def TransferLeader(self, request, context):
        self._count("transfer_leader")
        if self.shared.leader_id != self.id:
            return pb.TransferLeaderResponse(error=S.to_proto(self._not_leader()))
        if request.target_id not in self.shared.nodes:
            return pb.TransferLeaderResponse(
                error=S.to_proto(E.ConfChangeError(f"no member {request.target_id}"))
            )
        self.shared.leader_id = request.target_id
        self.shared.term += 1
        return pb.TransferLeaderResponse()

    async def AddLearner(self, request, context):
        return await self._member_op("add_learner", context)

    async def Promote(self, request, context):
        return await self._member_op("promote", context)

    async def RemoveMember(self, request, context):
        if request.id not in self.shared.nodes:
            self._count("remove_member")
            return pb.MembershipResponse(
                error=S.to_proto(E.ConfChangeError(f"node {request.id} is not a member"))
            )
        return await self._member_op("remove_member", context)


class FakeCluster:
    """``n`` fake nodes on loopback ports; use ``async with FakeCluster(3) as fc``."""

    def __init__(self, n: int = 3) -> None:
        self.shared = Shared()
        self.nodes = [FakeNode(i, self.shared) for i in range(1, n + 1)]
        for node in self.nodes:
            self.shared.nodes[node.id] = node

    @property
    def endpoints(self) -> list[str]:
        return [n.address for n in self.nodes]

    def node(self, node_id: int) -> FakeNode:
        return self.shared.nodes[node_id]

    def set_leader(self, node_id: int | None) -> None:
        self.shared.leader_id = node_id or 0
        self.shared.term += 1

    def total(self, op: str) -> int:
        return sum(n.calls.get(op, 0) for n in self.nodes)

    async def __aenter__(self) -> FakeCluster:
        for n in self.nodes:
            await n.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for n in self.nodes:
            await n.stop()


@pytest.fixture
def fake_cluster() -> type[FakeCluster]:
    """The :class:`FakeCluster` class (test modules cannot import this conftest)."""
    return FakeCluster


# ---------------------------------------------------------------------------------------------
# Real nodes in this process (the node's own Kv and Cluster services over real gRPC)


class RealCluster:
    """``n`` real :class:`~dengine.node.node.Node` objects in this process, each serving the
    client API on its own loopback port; use ``async with RealCluster(tmp_path) as rc``."""

    def __init__(self, root: Any, n: int = 3, **sections: dict) -> None:
        import socket

        socks = [socket.socket() for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        self.members = {i + 1: f"127.0.0.1:{s.getsockname()[1]}" for i, s in enumerate(socks)}
        for s in socks:
            s.close()
        self.root = root
        self.sections = sections
        self.nodes: dict[int, Any] = {}

    @property
    def endpoints(self) -> list[str]:
        return list(self.members.values())

    def _config(self, node_id: int) -> Any:
        from dengine.config import build_config

        layers: dict[str, dict] = {
            "cluster": {
                "cluster_id": "client-tests",
                "node_id": node_id,
                "initial_members": self.members,
                "data_dir": str(self.root / f"node-{node_id}"),
            },
            "raft": {"tick_ms": 10, "heartbeat_ms": 50, "election_ms": 400, "lease_ms": 300},
            "observability": {"log_level": "warning"},
        }
        for name, values in self.sections.items():
            layers.setdefault(name, {}).update(values)
        return build_config(layers)

    async def __aenter__(self) -> RealCluster:
        from dengine.node.builder import NodeBuilder

        for node_id in self.members:
            self.nodes[node_id] = NodeBuilder(self._config(node_id)).seed(node_id).build()
        for node in self.nodes.values():
            await node.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for node in self.nodes.values():
            await node.stop()

    async def leader_id(self, timeout: float = 10) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            leaders = [i for i, n in self.nodes.items() if n.is_leader]
            if len(leaders) == 1:
                return leaders[0]
            await asyncio.sleep(0.02)
        raise AssertionError("no leader elected")


@pytest.fixture
def real_cluster(tmp_path) -> Callable[..., RealCluster]:
    """``real_cluster(n=3, **sections)``: a :class:`RealCluster` under tmp_path."""
    count = iter(range(1000))
    return lambda n=3, **kw: RealCluster(tmp_path / f"rc{next(count)}", n, **kw)


@pytest.fixture
def run_uvloop() -> Callable[..., Any]:
    """Like ``run``, on uvloop only (what a node runs on)."""

    def runner(coro_fn: Callable[..., Awaitable[Any]], *args: Any, timeout: float = 30) -> Any:
        return run_checked("uvloop", coro_fn, *args, timeout=timeout)

    return runner


@pytest.fixture
def serve_in_thread(fake_cluster) -> Callable[..., Any]:
    """``serve_in_thread(n=1, setup=None)``: a fake cluster of ``n`` nodes on its own uvloop in a
    thread (for the blocking SyncClient); returns (cluster, stop)."""
    import threading

    import uvloop

    def start(n: int = 1, setup: Callable[[FakeCluster], None] | None = None) -> Any:
        ready, stop = threading.Event(), threading.Event()
        holder: dict = {}

        def serve() -> None:
            async def main() -> None:
                async with fake_cluster(n) as fc:
                    if setup is not None:
                        setup(fc)
                    holder["fc"] = fc
                    ready.set()
                    while not stop.is_set():
                        await asyncio.sleep(0.02)

            uvloop.run(main())

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        assert ready.wait(10)

        def stop_it() -> None:
            stop.set()
            thread.join(10)

        return holder["fc"], stop_it

    return start
