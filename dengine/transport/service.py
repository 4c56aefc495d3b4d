"""The receiving side of the peer protocol: the ``RaftPeer`` gRPC service.

Every batch and every snapshot is checked before anything of it reaches the node: the cluster
id must be ours and the sender a known peer (else the whole stream is refused with a status that
says why, and counted); each message must decode, come from the batch's sender and be addressed
to us (else that message alone is dropped and counted). A peer's garbage never raises into the
node and never takes the server down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from dengine.errors import ClusterMismatch, DecodeError, RemoteProtocolError, SnapshotError
from dengine.transport.base import SnapshotReceiver
from dengine.transport.convert import meta_from_proto
from dengine.transport.status import grpc_status
from dengine.v1 import raft_pb2, raft_pb2_grpc

if TYPE_CHECKING:
    from dengine.transport.grpc_transport import GrpcTransport

__all__ = ["RaftPeerService", "STREAM_UP_KEY"]

#: Initial-metadata key the receiver sends as soon as a peer stream is accepted.
STREAM_UP_KEY = "dengine-stream-up"
#: In a refusal: the refusing node committed the sender's removal (the sender should stop).
REMOVED_MARK = "was removed from the cluster"


class RaftPeerService(raft_pb2_grpc.RaftPeerServicer):
    """Receives batches and snapshots for one :class:`GrpcTransport`."""

    def __init__(self, transport: GrpcTransport) -> None:
        self.t = transport

    def _refusal(self, cluster_id: str, sender: int) -> Exception | None:
        t = self.t
        if cluster_id != t.cluster_id:
            t.stats.refused("cluster_mismatch")
            return ClusterMismatch(t.cluster_id, cluster_id, f"cluster id of peer {sender}")
        if sender == t.node_id or (sender not in t.peers and not t.accept_unknown_senders):
            t.stats.refused("unknown_sender")
            check = getattr(t, "removed_check", None)
            if sender != t.node_id and check is not None and check(sender):
                return RemoteProtocolError(
                    sender, f"node {sender} {REMOVED_MARK} (node {t.node_id} committed it)")
            return RemoteProtocolError(
                sender, f"node {sender} is not a member known to node {t.node_id}"
            )
        return None

    async def Stream(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        t = self.t
        # Tell the sender at once that the stream is up (it stops dropping messages).
        await context.send_initial_metadata(((STREAM_UP_KEY, str(t.node_id)),))
        log = t.log
        async for batch in request_iterator:
            sender = getattr(batch, "from")
            refusal = self._refusal(batch.cluster_id, sender)
            if refusal is not None:
                t.stats.batches_refused += 1
                log.error("refused peer stream", peer=sender, reason=str(refusal))
                code, details, trailing = grpc_status(refusal)
                yield raft_pb2.RaftBatchAck(error=details)
                await context.abort(code, details, trailing_metadata=trailing)
                return
            if t.faults.blocks_from(sender):
                continue
            t.stats.batches_received += 1
            self._deliver(batch, sender)

    def _deliver(self, batch: raft_pb2.RaftBatch, sender: int) -> None:
        t = self.t
        decode, on_message, me = t.decode, t.on_message, t.node_id
        for pb in batch.messages:
            try:
                msg = decode(pb)
            except DecodeError as e:
                t.stats.messages_refused += 1
                t.stats.refused("undecodable")
                t.log.warning("dropped undecodable message", peer=sender, reason=str(e))
                continue
            if msg.from_ != sender or msg.to != me:
                t.stats.messages_refused += 1
                t.stats.refused("misaddressed")
                t.log.warning(
                    "dropped misaddressed message", peer=sender, msg_from=msg.from_, msg_to=msg.to
                )
                continue
            t.stats.messages_received += 1
            try:
                on_message(msg)
            except Exception:  # noqa: BLE001 - a node bug must not kill the peer's stream
                t.log.exception("on_message failed", peer=sender)

    async def InstallSnapshot(
        self, request_iterator: Any, context: grpc.aio.ServicerContext
    ) -> raft_pb2.SnapshotAck:
        t = self.t
        receiver: SnapshotReceiver | None = None
        try:
            async for chunk in request_iterator:
                if receiver is None:
                    receiver = self._open_snapshot(chunk)
                meta = meta_from_proto(chunk.meta) if chunk.HasField("meta") else None
                await receiver.feed(chunk.seq, chunk.data, chunk.checksum, meta, chunk.term)
                if chunk.last:
                    return await self._finish_snapshot(receiver, chunk)
            if receiver is None:
                raise RemoteProtocolError("?", "snapshot transfer with no chunk")
            raise RemoteProtocolError(
                receiver.peer, "snapshot transfer ended before its last chunk"
            )
        except (RemoteProtocolError, ClusterMismatch, SnapshotError) as e:
            t.stats.snapshots_refused += 1
            t.log.warning("refused snapshot", reason=str(e))
            return raft_pb2.SnapshotAck(accepted=False, error=str(e))
        finally:
            if receiver is not None:
                receiver.abort()

    def _open_snapshot(self, chunk: raft_pb2.SnapshotChunk) -> SnapshotReceiver:
        t = self.t
        sender = getattr(chunk, "from")
        refusal = self._refusal(chunk.cluster_id, sender)
        if refusal is not None:
            raise refusal  # type: ignore[misc]
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
        t.log.info(
            "received snapshot",
            peer=incoming.from_,
            index=incoming.meta.index,
            term=incoming.meta.term,
            size_bytes=incoming.size_bytes,
        )
        return raft_pb2.SnapshotAck(accepted=True, received_bytes=incoming.size_bytes)
