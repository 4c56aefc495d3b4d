"""The receiving side of the peer protocol: the ``RaftPeer`` gRPC service.

Every batch and every snapshot is checked before anything of it reaches the node: the cluster
id must be ours and the sender a known peer (else the whole stream is refused with a status that
says why, and counted); each message must decode, come from the batch's sender and be addressed
to us (else that message alone is dropped and counted). A peer's garbage never raises into the
node and never takes the server down. Every refusal is counted by reason and logged (rate
limited, :class:`~dengine.security.refusals.RefusalLog`) with the peer's network address.

Snapshots are received one at a time (a transfer from another sender while one runs is refused;
a newer one from the same sender, a leader retrying, cancels the older) and never past
``network.max_snapshot_bytes``; the data goes to a temporary file that any failure deletes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc

from dengine.errors import (
    ClusterMismatch,
    DecodeError,
    PayloadTooLarge,
    RemoteProtocolError,
    SnapshotError,
)
from dengine.observability import timeline as _tl
from dengine.transport.base import SnapshotReceiver
from dengine.transport.convert import meta_from_proto
from dengine.transport.status import grpc_status
from dengine.v1 import raft_pb2, raft_pb2_grpc

if TYPE_CHECKING:
    from dengine.transport.grpc_transport import GrpcTransport

__all__ = ["RaftPeerService", "STREAM_UP_KEY", "SenderRemoved"]

#: Initial-metadata key the receiver sends as soon as a peer stream is accepted.
STREAM_UP_KEY = "dengine-stream-up"


class SenderRemoved(RemoteProtocolError):
    """The refusing node committed the sender's removal; its ack says so in ``sender_removed``
    (a typed field, so the sender never has to read it out of the text)."""


class RaftPeerService(raft_pb2_grpc.RaftPeerServicer):
    """Receives batches and snapshots for one :class:`GrpcTransport`."""

    def __init__(self, transport: GrpcTransport) -> None:
        self.t = transport
        #: The transfer being received (sender, its handler's task): one at a time.
        self.receiving: tuple[int, asyncio.Task[Any]] | None = None

    def _refuse(self, kind: str, context: Any, detail: str, **fields: Any) -> None:
        self.t.stats.refused(kind)
        self.t.refusals.refuse(kind, _peer_addr(context), detail, **fields)

    def _refusal(self, cluster_id: str, sender: int, context: Any,
                 check_identity: bool = True) -> Exception | None:
        t = self.t
        if cluster_id != t.cluster_id:
            err: Exception = ClusterMismatch(None, cluster_id, f"cluster id of peer {sender}")
            self._refuse("cluster_mismatch", context, str(err), peer=sender)
            return err
        if sender == t.node_id or (sender not in t.peers and not t.accept_unknown_senders):
            check = getattr(t, "removed_check", None)
            if sender != t.node_id and check is not None and check(sender):
                err = SenderRemoved(
                    sender, f"node {sender} was removed from the cluster (node {t.node_id} "
                    "committed it)")
                self._refuse("removed_sender", context, str(err), peer=sender)
                return err
            err = RemoteProtocolError(
                sender, f"node {sender} is not a member known to node {t.node_id}"
            )
            self._refuse("unknown_sender", context, str(err), peer=sender)
            return err
        if t.tls is not None and check_identity:
            reason = t.tls.check_peer(context, sender)
            if reason is not None:
                err = RemoteProtocolError(sender, f"peer identity refused: {reason}")
                self._refuse("peer_identity", context, str(err), peer=sender)
                return err
        return None

    async def Stream(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        t = self.t
        # Tell the sender at once that the stream is up (it stops dropping messages).
        await context.send_initial_metadata(((STREAM_UP_KEY, str(t.node_id)),))
        verified = 0  # the sender this stream's certificate was checked for (once per stream)
        async for batch in request_iterator:
            sender = getattr(batch, "from")
            refusal = self._refusal(batch.cluster_id, sender, context, sender != verified)
            if refusal is not None:
                t.stats.batches_refused += 1
                code, details, trailing = grpc_status(refusal)
                yield raft_pb2.RaftBatchAck(
                    error=details, sender_removed=isinstance(refusal, SenderRemoved))
                await context.abort(code, details, trailing_metadata=trailing)
                return
            verified = sender
            if t.faults.blocks_from(sender):
                continue
            t.stats.batches_received += 1
            self._deliver(batch, sender, context)

    async def StreamPort(self, request: raft_pb2.StreamPortRequest,
                         context: grpc.aio.ServicerContext) -> raft_pb2.StreamPortReply:
        """The port of this node's tcp peer stream (0: none; the caller then uses Stream).
        Nothing is checked here: the port is no secret, and the stream checks every sender."""
        return raft_pb2.StreamPortReply(port=getattr(self.t, "stream_port", 0) or 0)

    def _deliver(self, batch: raft_pb2.RaftBatch, sender: int, context: Any = None) -> None:
        t = self.t
        decode, on_message, me = t.decode, t.on_message, t.node_id
        if _tl.ON:
            _tl.mark("t.in", sender, len(batch.messages))
        for pb in batch.messages:
            try:
                msg = decode(pb)
            except DecodeError as e:
                t.stats.messages_refused += 1
                self._refuse("undecodable", context, str(e), peer=sender)
                continue
            if msg.from_ != sender or msg.to != me:
                t.stats.messages_refused += 1
                self._refuse("misaddressed", context, f"message from {msg.from_} to {msg.to} in "
                             f"a batch of node {sender} to node {me}", peer=sender)
                continue
            t.stats.messages_received += 1
            try:
                on_message(msg)
            except Exception:  # noqa: BLE001 - a node bug must not kill the peer's stream
                t.logger.exception("on_message failed", peer=sender)

    async def InstallSnapshot(
        self, request_iterator: Any, context: grpc.aio.ServicerContext
    ) -> raft_pb2.SnapshotAck:
        t = self.t
        receiver: SnapshotReceiver | None = None
        me = asyncio.current_task()
        limit = t.config.network.max_snapshot_bytes
        try:
            async for chunk in request_iterator:
                if receiver is None:
                    receiver = self._open_snapshot(chunk, context)
                    self._claim_snapshot_slot(receiver.peer, me)
                if receiver.received_bytes + len(chunk.data) > limit:
                    raise PayloadTooLarge(receiver.received_bytes + len(chunk.data), limit,
                                          "snapshot (network.max_snapshot_bytes)")
                meta = meta_from_proto(chunk.meta) if chunk.HasField("meta") else None
                await receiver.feed(chunk.seq, chunk.data, chunk.checksum, meta, chunk.term)
                if chunk.last:
                    return await self._finish_snapshot(receiver, chunk)
            if receiver is None:
                raise RemoteProtocolError("?", "snapshot transfer with no chunk")
            raise RemoteProtocolError(
                receiver.peer, "snapshot transfer ended before its last chunk"
            )
        except (RemoteProtocolError, ClusterMismatch, SnapshotError, DecodeError,
                PayloadTooLarge) as e:
            t.stats.snapshots_refused += 1
            self._refuse("snapshot_refused", context, str(e))
            return raft_pb2.SnapshotAck(accepted=False, error=str(e))
        finally:
            if self.receiving is not None and self.receiving[1] is me:
                self.receiving = None
            if receiver is not None:
                receiver.abort()

    def _claim_snapshot_slot(self, sender: int, me: asyncio.Task[Any] | None) -> None:
        current = self.receiving
        if current is not None and not current[1].done():
            if current[0] != sender:
                raise SnapshotError(f"a snapshot transfer from node {current[0]} is running; "
                                    "one at a time")
            current[1].cancel()  # the same leader retrying: the newer transfer wins
        if me is not None:
            self.receiving = (sender, me)

    def _open_snapshot(self, chunk: raft_pb2.SnapshotChunk, context: Any) -> SnapshotReceiver:
        t = self.t
        sender = getattr(chunk, "from")
        refusal = self._refusal(chunk.cluster_id, sender, context)
        if refusal is not None:
            raise refusal
        if chunk.to != t.node_id:
            raise RemoteProtocolError(sender, f"snapshot addressed to {chunk.to}, not {t.node_id}")
        if t.faults.blocks_from(sender):
            raise RemoteProtocolError(sender, "dropped by the test fault switch")
        if t.on_snapshot is None:
            raise SnapshotError(f"node {t.node_id} does not accept snapshots")
        return SnapshotReceiver(t.snapshot_dir, sender)

    async def _finish_snapshot(
        self, receiver: SnapshotReceiver, chunk: raft_pb2.SnapshotChunk
    ) -> raft_pb2.SnapshotAck:
        t = self.t
        incoming = await receiver.finish(chunk.total_checksum, chunk.total_bytes)
        try:
            assert t.on_snapshot is not None
            await t.on_snapshot(incoming)
        except Exception as e:  # noqa: BLE001 - the node's refusal goes back to the sender
            incoming.path.unlink(missing_ok=True)
            raise SnapshotError(f"node {t.node_id} could not take the snapshot: {e}") from e
        t.stats.snapshots_received += 1
        t.logger.info(
            "received snapshot",
            peer=incoming.from_,
            index=incoming.meta.index,
            term=incoming.meta.term,
            size_bytes=incoming.size_bytes,
        )
        return raft_pb2.SnapshotAck(accepted=True, received_bytes=incoming.size_bytes)


def _peer_addr(context: Any) -> str:
    """The network address of the peer on the other end of a call ("?" when unknown)."""
    try:
        return str(context.peer()) if context is not None else "?"
    except Exception:  # noqa: BLE001 - only for a log line
        return "?"
