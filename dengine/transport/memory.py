"""An in-memory :class:`~dengine.transport.base.Transport` for tests: same interface, no sockets.

Transports join a :class:`MemoryNetwork` under their node id. :meth:`MemoryTransport.send`
schedules delivery with ``loop.call_soon``, so messages between two nodes arrive in the order
sent, on a later turn of the loop (never re-entrantly inside ``send``). The checks are those of
the gRPC transport: the cluster id must match and the sender be a known peer; the test fault
switch drops traffic to and from given peers. With ``wire=True`` every message goes through
the protobuf conversion and back, which catches a message the wire cannot carry.

Snapshots take the same path as over gRPC, minus the socket: the data is cut into checksummed
chunks and fed to a :class:`~dengine.transport.base.SnapshotReceiver` on the target, which
writes a temporary file and hands it to the target's ``on_snapshot`` once verified.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from dengine.errors import RemoteProtocolError, SnapshotError
from dengine.raft.messages import Message
from dengine.raft.types import SnapshotMeta
from dengine.transport.base import (
    FaultSwitch,
    OnMessage,
    OnSnapshot,
    SnapshotData,
    SnapshotReceiver,
    SnapshotResult,
    TransportStats,
    chunk_snapshot,
    start_snapshot_task,
)

__all__ = ["MemoryNetwork", "MemoryTransport"]


class MemoryNetwork:
    """The wire between in-memory transports, addressed by node id."""

    def __init__(self, cluster_id: str = "dengine-local", *, wire: bool = False) -> None:
        self.cluster_id = cluster_id
        self.wire = wire
        self.nodes: dict[int, MemoryTransport] = {}

    def transport(self, node_id: int, **kwargs: Any) -> MemoryTransport:
        """Make a transport for ``node_id`` on this network (see :class:`MemoryTransport`)."""
        return MemoryTransport(self, node_id, **kwargs)


class MemoryTransport:
    """Test transport with the interface of :class:`~dengine.transport.GrpcTransport`."""

    def __init__(
        self,
        network: MemoryNetwork,
        node_id: int,
        *,
        on_message: OnMessage,
        on_snapshot: OnSnapshot | None = None,
        on_unreachable: Callable[[int], None] | None = None,
        peers: Mapping[int, str] | Iterable[int] = (),
        cluster_id: str | None = None,
        snapshot_dir: str | Path | None = None,
        snapshot_chunk_bytes: int = 64 * 1024,
        accept_unknown_senders: bool = False,
        fault_injection: bool = True,
        logger: Any = None,
    ) -> None:
        self.network = network
        self.node_id = node_id
        self.cluster_id = network.cluster_id if cluster_id is None else cluster_id
        self.on_message = on_message
        self.on_snapshot = on_snapshot
        self.on_unreachable = on_unreachable
        ids = peers.keys() if isinstance(peers, Mapping) else peers
        self.peers: dict[int, str] = {
            i: (peers[i] if isinstance(peers, Mapping) else f"memory:{i}")
            for i in ids
            if i != node_id
        }
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir else None
        self.snapshot_chunk_bytes = snapshot_chunk_bytes
        self.accept_unknown_senders = accept_unknown_senders
        self.logger = logger or structlog.get_logger("dengine.transport").bind(node_id=node_id)
        self.stats = TransportStats()
        self._faults = FaultSwitch(fault_injection)
        self._snapshots: dict[int, asyncio.Task[SnapshotResult]] = {}
        self._running = False

    @property
    def faults(self) -> FaultSwitch:
        return self._faults

    async def start(self) -> None:
        if self.network.nodes.get(self.node_id) not in (None, self):
            raise RemoteProtocolError(self.node_id, "another transport already has this node id")
        self.network.nodes[self.node_id] = self
        self._running = True

    async def stop(self) -> None:
        self._running = False
        if self.network.nodes.get(self.node_id) is self:
            del self.network.nodes[self.node_id]
        tasks = list(self._snapshots.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._snapshots.clear()

    def set_peer(self, node_id: int, address: str) -> None:
        if node_id != self.node_id:
            self.peers[node_id] = address

    def remove_peer(self, node_id: int) -> None:
        self.peers.pop(node_id, None)

    # -- messages ---------------------------------------------------------------------------

    def send(self, messages: Iterable[Message]) -> None:
        if not self._running:
            return
        loop = asyncio.get_running_loop()
        by_peer: dict[int, list[Message]] = {}
        for msg in messages:
            by_peer.setdefault(msg.to, []).append(msg)
        for peer, msgs in by_peer.items():
            target = self.network.nodes.get(peer)
            if peer not in self.peers or self._faults.blocks_to(peer) or target is None:
                self.stats.messages_dropped += len(msgs)
                if target is None and peer in self.peers and self.on_unreachable is not None:
                    self.on_unreachable(peer)
                continue
            if self.network.wire:
                msgs = [_round_trip(m) for m in msgs]
            self.stats.batches_sent += 1
            self.stats.messages_sent += len(msgs)
            loop.call_soon(target._receive, self.cluster_id, self.node_id, msgs)

    def _refusal(self, cluster_id: str, sender: int) -> str | None:
        if cluster_id != self.cluster_id:
            self.stats.refused("cluster_mismatch")
            return f"cluster id mismatch: expected {self.cluster_id!r}, got {cluster_id!r}"
        if sender not in self.peers and not self.accept_unknown_senders:
            self.stats.refused("unknown_sender")
            return f"node {sender} is not a member known to node {self.node_id}"
        return None

    def _receive(self, cluster_id: str, sender: int, msgs: list[Message]) -> None:
        if not self._running or self._faults.blocks_from(sender):
            return
        refusal = self._refusal(cluster_id, sender)
        if refusal is not None:
            self.stats.batches_refused += 1
            self.logger.error("refused peer batch", peer=sender, reason=refusal)
            return
        self.stats.batches_received += 1
        for msg in msgs:
            if msg.to != self.node_id or msg.from_ != sender:
                self.stats.messages_refused += 1
                continue
            self.stats.messages_received += 1
            try:
                self.on_message(msg)
            except Exception:  # noqa: BLE001 - as over gRPC: a node bug does not kill the link
                self.logger.exception("on_message failed", peer=sender)

    # -- snapshots --------------------------------------------------------------------------

    def send_snapshot(
        self, to: int, meta: SnapshotMeta, data: SnapshotData, *, term: int = 0
    ) -> asyncio.Task[SnapshotResult]:
        return start_snapshot_task(self._snapshots, to, self._send_snapshot(to, meta, data, term))

    async def _send_snapshot(
        self, to: int, meta: SnapshotMeta, data: SnapshotData, term: int
    ) -> SnapshotResult:
        target = self.network.nodes.get(to)
        if to not in self.peers or target is None or self._faults.blocks_to(to):
            self.stats.snapshots_failed += 1
            return SnapshotResult(to, False, 0, f"node {to} is unreachable")
        sent = 0
        try:
            receiver = target._open_snapshot(self.cluster_id, self.node_id)
            try:
                async for spec in chunk_snapshot(data, self.snapshot_chunk_bytes):
                    chunk_meta = meta if spec.seq == 0 else None
                    await receiver.feed(spec.seq, spec.data, spec.checksum, chunk_meta, term)
                    sent += len(spec.data)
                    await asyncio.sleep(0)  # let the message traffic run between chunks
                incoming = await receiver.finish(spec.total_checksum, spec.total_bytes)
            finally:
                receiver.abort()
            await target._take_snapshot(incoming)
        except (RemoteProtocolError, SnapshotError) as e:
            self.stats.snapshots_failed += 1
            target.stats.snapshots_refused += 1
            return SnapshotResult(to, False, sent, str(e))
        except Exception as e:  # noqa: BLE001 - as over gRPC: the source failing is a result
            self.stats.snapshots_failed += 1
            return SnapshotResult(to, False, sent, f"reading the snapshot failed: {e}")
        self.stats.snapshots_sent += 1
        target.stats.snapshots_received += 1
        return SnapshotResult(to, True, sent)

    def _open_snapshot(self, cluster_id: str, sender: int) -> SnapshotReceiver:
        refusal = self._refusal(cluster_id, sender)
        if refusal is not None:
            raise RemoteProtocolError(sender, refusal)
        if not self._running or self._faults.blocks_from(sender):
            raise RemoteProtocolError(sender, f"node {self.node_id} is unreachable")
        if self.on_snapshot is None:
            raise SnapshotError(f"node {self.node_id} does not accept snapshots")
        if self.snapshot_dir is None:
            self.snapshot_dir = Path(tempfile.mkdtemp(prefix=f"dengine-mem-{self.node_id}-"))
        return SnapshotReceiver(self.snapshot_dir, sender)

    async def _take_snapshot(self, incoming: Any) -> None:
        assert self.on_snapshot is not None
        try:
            await self.on_snapshot(incoming)
        except Exception as e:  # noqa: BLE001 - the refusal is the sender's result
            incoming.path.unlink(missing_ok=True)
            raise SnapshotError(f"node {self.node_id} could not take the snapshot: {e}") from e


def _round_trip(msg: Message) -> Message:
    from dengine.transport import convert

    return convert.decode(convert.encode(msg))
