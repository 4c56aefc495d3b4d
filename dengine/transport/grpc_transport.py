"""The production :class:`~dengine.transport.base.Transport`: gRPC on ``grpc.aio``.

Theory of operation
-------------------
Sending. Each peer has a :class:`_PeerLink`: a queue of core messages and one task that keeps
ONE long-lived ``RaftPeer.Stream`` call open to that peer. The call's request iterator drains
whatever is queued into one ``RaftBatch`` (up to ``network.max_message_bytes``), so under load
one gRPC message carries many Raft messages and at rest a single message leaves at once. The
receiver answers with its initial metadata as soon as the stream is up; only then is the link
*connected*. When the stream fails the link waits (exponential backoff with jitter, from
``network.backoff_initial_ms`` to ``backoff_max_ms``) and reconnects; while it waits, messages to
that peer are dropped and counted rather than piled up (Raft retransmits what matters, and a
stale backlog would only delay the fresh messages behind it). ``on_unreachable`` is told, so the
node can let the core probe that follower.

Snapshots go on a separate ``InstallSnapshot`` call in a background task on the same channel
(HTTP/2 multiplexes them), so a long transfer never blocks the stream of appends.

Receiving is :class:`~dengine.transport.service.RaftPeerService`. The standard gRPC health
service is served beside it on the same server.

One server per node: the transport makes its own unless the node hands it one (to serve its
client API on the same port), in which case the node binds and starts it.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from dengine.config import Config
from dengine.errors import ClusterMismatch, RemoteProtocolError, Unavailable
from dengine.observability import timeline as _tl
from dengine.raft.messages import Message
from dengine.raft.types import SnapshotMeta
from dengine.security.refusals import RefusalLog
from dengine.security.tls import PeerTls, bind_port, peer_san
from dengine.transport import convert
from dengine.transport.base import (
    FaultSwitch,
    OnMessage,
    OnSnapshot,
    SnapshotData,
    SnapshotResult,
    TransportStats,
    chunk_snapshot,
    start_snapshot_task,
)
from dengine.transport.channels import (
    ChannelCache,
    payload_limit,
    server_options,
)
from dengine.transport.service import STREAM_UP_KEY, RaftPeerService
from dengine.transport.status import from_rpc_error
from dengine.v1 import raft_pb2, raft_pb2_grpc

__all__ = ["GrpcTransport", "PEER_SERVICE_NAME"]

PEER_SERVICE_NAME = "dengine.v1.RaftPeer"
#: Messages queued for one peer before new ones are dropped (a peer that does not drain).
MAX_PENDING_MESSAGES = 10_000
#: Entry bytes queued for one peer before new messages are dropped, in max_message_bytes.
MAX_PENDING_BATCHES = 8


class _PeerLink:
    """The sending side toward one peer: a queue and the task that owns the stream."""

    def __init__(self, transport: GrpcTransport, peer_id: int, address: str) -> None:
        self.t = transport
        self.peer_id = peer_id
        self.address = address
        self.pending: deque[Message] = deque()
        self.pending_bytes = 0
        self.max_pending_bytes = MAX_PENDING_BATCHES * transport.config.network.max_message_bytes
        self.wake = asyncio.Event()
        self.connected = False
        self.backing_off = False
        self.last_error = ""
        self.sent_batches = 0
        self.refused = False
        self.told_removed = False  # the peer's ack said it committed our removal
        #: Bumped when a stream ends: its request generator sees the change and returns, so
        #: grpc.aio's task consuming it ends too (a call that is already done does not cancel
        #: that task, and one left parked in ``wake.wait()`` would take messages meant for the
        #: next stream, or be destroyed pending when the link goes away).
        self.stream_no = 0
        self.task: asyncio.Task[None] | None = None

    def enqueue(self, messages: list[Message]) -> None:
        stats = self.t.stats
        size = sum([m.entries_bytes for m in messages if m.entries])
        if (
            self.backing_off
            or len(self.pending) + len(messages) > MAX_PENDING_MESSAGES
            or self.pending_bytes + size > self.max_pending_bytes
        ):
            stats.messages_dropped += len(messages)
            return
        self.pending.extend(messages)
        self.pending_bytes += size
        self.wake.set()
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(
                self.run(), name=f"dengine-peer-{self.peer_id}"
            )

    async def run(self) -> None:
        net = self.t.config.network
        delay = net.backoff_initial_ms / 1000
        while True:
            was_connected = await self._one_stream()
            self.connected = False
            if self.refused:  # wrong cluster or unknown to the peer: no use hurrying back
                delay = net.backoff_max_ms / 1000
            elif was_connected:
                delay = net.backoff_initial_ms / 1000
            self.t.stats.messages_dropped += len(self.pending)
            self.pending.clear()
            self.pending_bytes = 0
            self.backing_off = True
            if self.t.on_unreachable is not None:
                try:
                    self.t.on_unreachable(self.peer_id)
                except Exception:  # noqa: BLE001 - a node bug must not stop reconnecting
                    self.t.logger.exception("on_unreachable failed", peer=self.peer_id)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, net.backoff_max_ms / 1000)
            self.backing_off = False
            self.t.stats.reconnects += 1
            # Wait for something to send before reconnecting: an idle peer costs nothing.
            while not self.pending:
                self.wake.clear()
                await self.wake.wait()

    async def _one_stream(self) -> bool:
        """Run one stream until it fails; True if the peer had accepted it."""
        t = self.t
        self.sent_batches = 0
        self.refused = False
        self.told_removed = False  # the peer's ack said it committed our removal
        stub = raft_pb2_grpc.RaftPeerStub(t.channels.get(self.address))
        call = stub.Stream(self._batches(self.stream_no))
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # lands as the awaited call completes, and stop() would then wait forever.
            async with asyncio.timeout(t.config.network.connect_timeout_ms / 1000):
                metadata = await call.initial_metadata()
            # A call that failed to connect ends with empty metadata: only the key proves it.
            self.connected = any(k == STREAM_UP_KEY for k, _ in metadata or ())
            async for ack in call:
                if ack.error:
                    self.last_error = ack.error
                if ack.sender_removed:
                    self.told_removed = True
            await call  # the final status (raises on error)
            self.last_error = "the peer closed the stream"
        except grpc.aio.AioRpcError as e:
            self._on_failure(from_rpc_error(e), e)
        except TimeoutError:
            self._on_failure(Unavailable(f"no connection to {self.address} within the timeout"))
        finally:
            self.stream_no += 1
            self.wake.set()
            call.cancel()
        return self.connected

    def _on_failure(self, err: Exception, rpc: grpc.aio.AioRpcError | None = None) -> None:
        t = self.t
        self.last_error = str(err)
        if self.told_removed and t.on_removed is not None:
            t.logger.info("a peer says this node was removed", peer=self.peer_id)
            t.on_removed()
            return
        if isinstance(err, ClusterMismatch | RemoteProtocolError) or (
            rpc is not None and rpc.code() == grpc.StatusCode.PERMISSION_DENIED
        ):
            self.refused = True
            t.stats.refused("refused_by_peer")
            t.logger.error("peer refused our stream", peer=self.peer_id, reason=str(err))
        elif self.connected:
            t.logger.info("peer stream lost", peer=self.peer_id, reason=str(err))
        else:
            t.logger.debug("peer unreachable", peer=self.peer_id, reason=str(err))

    async def _batches(self, stream_no: int) -> Any:
        """The requests of stream number ``stream_no``; returns once that stream has ended."""
        t = self.t
        limit = payload_limit(t.config.network)
        encode, stats, pending = t.encode, t.stats, self.pending
        carry: tuple[Message, Any, int] | None = None  # encoded, did not fit the last batch
        while self.stream_no == stream_no:
            if not pending:
                self.wake.clear()
                await self.wake.wait()
                continue
            batch = raft_pb2.RaftBatch(cluster_id=t.cluster_id)
            setattr(batch, "from", t.node_id)
            out = batch.messages
            size = 0
            while pending:
                msg = pending[0]
                if carry is not None and carry[0] is msg:
                    _, pb, n = carry
                else:
                    pb = encode(msg)
                    n = pb.ByteSize() + 8
                carry = None
                if n > limit:
                    pending.popleft()
                    self.pending_bytes -= msg.entries_bytes if msg.entries else 0
                    stats.oversized_dropped += 1
                    t.logger.error(
                        "dropped a message larger than network.max_message_bytes",
                        peer=self.peer_id,
                        size_bytes=n,
                        limit_bytes=limit,
                    )
                    continue
                if size and size + n > limit:
                    carry = (msg, pb, n)
                    break
                pending.popleft()
                self.pending_bytes -= msg.entries_bytes if msg.entries else 0
                out.append(pb)
                size += n
            if not out:
                continue
            stats.batches_sent += 1
            stats.messages_sent += len(out)
            self.sent_batches += 1
            if _tl.ON:
                _tl.mark("t.out", self.peer_id, len(out))
            yield batch


class GrpcTransport:
    """Peer transport over gRPC: one stream per peer, snapshots apart, health service.

    ``peers`` defaults to ``config.cluster.initial_members`` without this node; the node keeps it
    current with :meth:`set_peer` / :meth:`remove_peer` as membership changes. A node joining a
    cluster sets ``accept_unknown_senders`` until it learns its membership.
    """

    #: The sending side of one peer (a subclass sends over another wire).
    link_class: type[_PeerLink] = _PeerLink

    def __init__(
        self,
        config: Config,
        *,
        on_message: OnMessage,
        on_snapshot: OnSnapshot | None = None,
        on_unreachable: Callable[[int], None] | None = None,
        peers: Mapping[int, str] | None = None,
        snapshot_dir: str | Path | None = None,
        server: grpc.aio.Server | None = None,
        accept_unknown_senders: bool = False,
        logger: Any = None,
        encode: Callable[[Message], raft_pb2.RaftMessage] = convert.encode,
        decode: Callable[[raft_pb2.RaftMessage], Message] = convert.decode,
    ) -> None:
        self.config = config
        self.node_id = config.cluster.node_id
        self.cluster_id = config.cluster.cluster_id
        self.on_message = on_message
        self.on_snapshot = on_snapshot
        self.on_unreachable = on_unreachable
        members = config.cluster.initial_members if peers is None else peers
        self.peers: dict[int, str] = {i: a for i, a in members.items() if i != self.node_id}
        self.snapshot_dir = Path(
            snapshot_dir or Path(config.cluster.data_dir) / "snapshots" / "incoming"
        )
        self.accept_unknown_senders = accept_unknown_senders
        #: Set by the node: ``removed_check(peer)`` is True when this node committed the
        #: removal of ``peer`` (its refusal then says so); ``on_removed()`` is called when a
        #: peer's refusal says it committed ours.
        self.removed_check: Callable[[int], bool] | None = None
        self.on_removed: Callable[[], None] | None = None
        self.logger = logger or structlog.get_logger("dengine.transport").bind(node_id=self.node_id)
        self.encode, self.decode = encode, decode
        self.stats = TransportStats()
        #: Counts and logs (rate limited) every refused peer message; the node binds metrics.
        self.refusals = RefusalLog(self.logger)
        #: Mutual TLS with peers (None: plain, for loopback development).
        self.tls = PeerTls(config.tls, self.logger) if config.tls.enabled else None
        self.channels = ChannelCache(
            config.network, self.tls.channel_credentials if self.tls is not None else None,
            self._member_name)
        self.health = health.aio.HealthServicer()
        self._faults = FaultSwitch(config.network.fault_injection)
        self._links: dict[int, _PeerLink] = {}
        self._snapshots: dict[int, asyncio.Task[SnapshotResult]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._owns_server = server is None
        self._server: grpc.aio.Server | None = None
        #: The receiving side (also used by the tcp transport for its own stream's checks).
        self.service = RaftPeerService(self)
        if server is not None:
            self._register(server)
        self.port: int | None = None
        self._stopped = False

    def _member_name(self, address: str) -> str | None:
        """The certificate name a peer at ``address`` must show: ``dengine-node-<id>``."""
        for node_id, addr in self.peers.items():
            if addr == address:
                return peer_san(node_id)
        return None

    @property
    def faults(self) -> FaultSwitch:
        return self._faults

    @property
    def server(self) -> grpc.aio.Server:
        """The gRPC server (made on first use, inside the event loop, when not handed one)."""
        if self._server is None:
            self._register(grpc.aio.server(options=server_options(self.config.network)))
        assert self._server is not None
        return self._server

    def _register(self, server: grpc.aio.Server) -> None:
        raft_pb2_grpc.add_RaftPeerServicer_to_server(self.service, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        self._server = server

    @property
    def address(self) -> str:
        """The address bound (with the real port when listen_addr asked for port 0); on a
        server the node owns, the configured advertise address."""
        if self.port is None:
            return self.config.cluster.advertise_addr
        host = self.config.cluster.listen_addr.rpartition(":")[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        if self._owns_server:
            self.port = bind_port(self.server, self.config.cluster.listen_addr,
                                  self.config.tls, self.logger)
            await self.server.start()
        for service in ("", PEER_SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self.logger.info("transport started", listen=self.address if self.port else None)

    async def stop(self, grace_s: float = 0.5) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        tasks: list[asyncio.Task[Any]] = [
            link.task for link in self._links.values() if link.task is not None]
        tasks += list(self._snapshots.values()) + list(self._background)
        await _cancel_all(tasks, self.logger)
        self._links.clear()
        self._snapshots.clear()
        await self.channels.close_all()
        if self._owns_server and self._server is not None:
            await self._server.stop(grace_s)

    # -- sending ----------------------------------------------------------------------------

    def send(self, messages: Iterable[Message]) -> None:
        if self._stopped:
            return
        by_peer: dict[int, list[Message]] = {}
        for msg in messages:
            by_peer.setdefault(msg.to, []).append(msg)
        for peer, msgs in by_peer.items():
            link = self._link(peer)
            if link is None or self._faults.blocks_to(peer):
                self.stats.messages_dropped += len(msgs)
                continue
            link.enqueue(msgs)

    def _link(self, peer: int) -> _PeerLink | None:
        link = self._links.get(peer)
        if link is None:
            address = self.peers.get(peer)
            if address is None:
                return None
            link = self._links[peer] = self.link_class(self, peer, address)
        return link

    def set_peer(self, node_id: int, address: str) -> None:
        if node_id == self.node_id:
            return
        if self.peers.get(node_id) != address:
            self.remove_peer(node_id)
            self.peers[node_id] = address

    def remove_peer(self, node_id: int) -> None:
        self.peers.pop(node_id, None)
        link = self._links.pop(node_id, None)
        if link is not None and link.task is not None:
            link.task.cancel()
        if link is not None and link.address not in self.peers.values():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # outside the loop: the channel closes with the transport
                return
            task = loop.create_task(self.channels.close(link.address))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def is_connected(self, peer: int) -> bool:
        link = self._links.get(peer)
        return bool(link and link.connected)

    # -- snapshots --------------------------------------------------------------------------

    def send_snapshot(
        self, to: int, meta: SnapshotMeta, data: SnapshotData, *, term: int = 0
    ) -> asyncio.Task[SnapshotResult]:
        return start_snapshot_task(self._snapshots, to, self._send_snapshot(to, meta, data, term))

    async def _send_snapshot(
        self, to: int, meta: SnapshotMeta, data: SnapshotData, term: int
    ) -> SnapshotResult:
        address = self.peers.get(to)
        if address is None:
            return self._snapshot_failed(to, 0, f"node {to} is not a known peer")
        if self._faults.blocks_to(to):
            return self._snapshot_failed(to, 0, "dropped by the test fault switch")
        sent = 0
        source_error: list[BaseException] = []
        meta_pb = convert.meta_to_proto(meta)

        async def chunks() -> Any:
            nonlocal sent
            try:
                async for spec in chunk_snapshot(data, self.config.network.snapshot_chunk_bytes):
                    chunk = raft_pb2.SnapshotChunk(
                        cluster_id=self.cluster_id, to=to, term=term, seq=spec.seq,
                        data=spec.data, checksum=spec.checksum, last=spec.last,
                        total_checksum=spec.total_checksum, total_bytes=spec.total_bytes,
                    )  # fmt: skip
                    setattr(chunk, "from", self.node_id)
                    if spec.seq == 0:
                        chunk.meta.CopyFrom(meta_pb)
                    sent += len(spec.data)
                    yield chunk
            except Exception as e:  # noqa: BLE001 - reported as the transfer's result
                source_error.append(e)
                raise

        stub = raft_pb2_grpc.RaftPeerStub(self.channels.get(address))
        try:
            ack = await stub.InstallSnapshot(chunks())
        except grpc.aio.AioRpcError as e:
            reason = f"reading the snapshot failed: {source_error[0]}" if source_error else ""
            return self._snapshot_failed(to, sent, reason or str(from_rpc_error(e)))
        except asyncio.CancelledError:
            # gRPC cancels the call when the request iterator raises; only that is ours.
            task = asyncio.current_task()
            if source_error and not (task and task.cancelling()):
                return self._snapshot_failed(
                    to, sent, f"reading the snapshot failed: {source_error[0]}"
                )
            raise
        if source_error:
            return self._snapshot_failed(
                to, sent, f"reading the snapshot failed: {source_error[0]}"
            )
        if not ack.accepted:
            return self._snapshot_failed(to, sent, ack.error or "refused")
        self.stats.snapshots_sent += 1
        self.logger.info("sent snapshot", peer=to, index=meta.index, size_bytes=sent)
        return SnapshotResult(to, True, sent)

    def _snapshot_failed(self, to: int, sent: int, error: str) -> SnapshotResult:
        self.stats.snapshots_failed += 1
        self.logger.warning("snapshot transfer failed", peer=to, reason=error)
        return SnapshotResult(to, False, sent, error)


async def _cancel_all(tasks: list[asyncio.Task[Any]], log: Any, rounds: int = 3) -> None:
    """Cancel tasks and wait for them; cancel again any that swallowed the first request
    (grpc.aio internals can), and give up with a warning rather than hang a shutdown."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(rounds):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
    if pending:
        log.warning("tasks did not stop", tasks=[t.get_name() for t in pending])
    for task in tasks:  # retrieve outcomes so none is reported as never retrieved
        if task.done() and not task.cancelled():
            task.exception()
