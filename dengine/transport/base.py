"""The ``Transport`` seam between a node and its peers, and the parts every transport shares.

Theory of operation
-------------------
A node hands its transport the messages of each ``Ready`` with :meth:`Transport.send`, which
never blocks and never raises for a peer's sake: messages are queued per peer and leave in
batches; a message that cannot be delivered is dropped (Raft retransmits). Messages from peers
reach the node through the ``on_message`` callback given at construction, one call per message,
in the order the peer sent them, on the event loop; the callback must not block (the node puts
them in its inbox).

Snapshots travel apart from the message stream: :meth:`Transport.send_snapshot` starts a
background transfer and returns a task that resolves to a :class:`SnapshotResult`. The data is
cut into chunks of ``network.snapshot_chunk_bytes``, each with a CRC-32, and the last chunk
carries the CRC-32 and the length of the whole. The receiver (:class:`SnapshotReceiver`) writes
the chunks to a temporary file and hands the file to the node's ``on_snapshot`` callback only
when the last chunk arrived and everything verified; anything else deletes the file, so an
interrupted or corrupt transfer leaves the receiver as it was. A failed transfer is not retried
here: the caller asks again (the core does so when it sees the failure reported).

Both transports (gRPC and in-memory) share :class:`FaultSwitch`, a test-only switch that drops
traffic to and from given peers; it refuses to work unless ``network.fault_injection`` is on.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import zlib
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from dengine.errors import ConfigError, RemoteProtocolError, SnapshotError
from dengine.raft.messages import Message
from dengine.raft.types import SnapshotMeta

__all__ = [
    "Transport",
    "OnMessage",
    "OnSnapshot",
    "IncomingSnapshot",
    "SnapshotResult",
    "TransportStats",
    "FaultSwitch",
    "SnapshotReceiver",
    "ChunkSpec",
    "chunk_snapshot",
]


@dataclass(frozen=True, slots=True)
class IncomingSnapshot:
    """A verified snapshot received from ``from_``; the node now owns the file at ``path``."""

    from_: int
    term: int
    meta: SnapshotMeta
    path: Path
    size_bytes: int


@dataclass(frozen=True, slots=True)
class SnapshotResult:
    """How a snapshot transfer ended; ``error`` says why when not accepted."""

    to: int
    accepted: bool
    sent_bytes: int = 0
    error: str = ""


OnMessage = Callable[[Message], None]
OnSnapshot = Callable[[IncomingSnapshot], Awaitable[None]]
SnapshotData = Iterable[bytes] | AsyncIterable[bytes]


def start_snapshot_task(
    tasks: dict[int, asyncio.Task[Any]], to: int, transfer: Coroutine[Any, Any, Any]
) -> asyncio.Task[Any]:
    """Run one snapshot transfer to ``to`` in the background, as every transport does: a newer
    transfer to the same peer cancels the older one, and a task leaves ``tasks`` when it ends
    (unless a newer one already took its place)."""
    old = tasks.pop(to, None)
    if old is not None and not old.done():
        old.cancel()
    task = asyncio.get_running_loop().create_task(transfer, name=f"dengine-snapshot-to-{to}")
    tasks[to] = task
    task.add_done_callback(lambda t: tasks.get(to) is t and tasks.pop(to))
    return task


@dataclass(slots=True)
class TransportStats:
    """Counters for metrics and tests; they only grow."""

    batches_sent: int = 0
    messages_sent: int = 0
    messages_dropped: int = 0  # queue overflow, peer unknown or unreachable, fault switch
    oversized_dropped: int = 0  # one message larger than network.max_message_bytes
    batches_received: int = 0
    messages_received: int = 0
    batches_refused: int = 0  # wrong cluster or unknown sender
    messages_refused: int = 0  # undecodable, or not from/to whom the batch says
    reconnects: int = 0
    snapshots_sent: int = 0
    snapshots_failed: int = 0
    snapshots_received: int = 0
    snapshots_refused: int = 0
    refusals: dict[str, int] = field(default_factory=dict)  # reason -> count

    def refused(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1


@runtime_checkable
class Transport(Protocol):
    """What a node needs from its network (gRPC in production, in-memory in tests)."""

    node_id: int
    stats: TransportStats
    #: The peers it sends to, by id: their addresses (``set_peer``/``remove_peer`` change it).
    peers: dict[int, str]
    #: Accept batches from senders not in ``peers`` (a joining node that has no members yet).
    accept_unknown_senders: bool

    async def start(self) -> None:
        """Begin accepting peer traffic (and connecting to peers lazily)."""

    async def stop(self) -> None:
        """Stop sending and receiving; cancel snapshot transfers; close connections."""

    def send(self, messages: Iterable[Message]) -> None:
        """Queue messages for their peers (``msg.to``); never blocks, never raises per peer."""

    def send_snapshot(
        self, to: int, meta: SnapshotMeta, data: SnapshotData, *, term: int = 0
    ) -> asyncio.Task[SnapshotResult]:
        """Stream a snapshot to ``to`` in the background; a newer transfer to the same peer
        cancels the older one."""

    def set_peer(self, node_id: int, address: str) -> None:
        """Add a peer or change its address (membership change)."""

    def remove_peer(self, node_id: int) -> None:
        """Forget a peer: stop sending to it and refuse its traffic."""

    @property
    def faults(self) -> FaultSwitch:
        """The test-only fault switch."""


class FaultSwitch:
    """Test-only: drop all traffic to and/or from given peers (partitions, one-way links)."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self.drop_to: frozenset[int] = frozenset()
        self.drop_from: frozenset[int] = frozenset()

    def _check(self) -> None:
        if not self._enabled:
            raise ConfigError(
                "network.fault_injection",
                False,
                "true to use the test-only fault switch (never in production)",
            )

    def isolate(self, *peers: int) -> None:
        """Drop traffic both ways with ``peers`` (adds to what is already cut)."""
        self._check()
        self.drop_to |= frozenset(peers)
        self.drop_from |= frozenset(peers)

    def set(self, *, drop_to: Iterable[int] = (), drop_from: Iterable[int] = ()) -> None:
        """Replace the cut links: drop what goes to ``drop_to`` and what comes from ``drop_from``."""
        self._check()
        self.drop_to = frozenset(drop_to)
        self.drop_from = frozenset(drop_from)

    def heal(self) -> None:
        self._check()
        self.drop_to = self.drop_from = frozenset()

    def blocks_to(self, peer: int) -> bool:
        return peer in self.drop_to

    def blocks_from(self, peer: int) -> bool:
        return peer in self.drop_from


# -----------------------------------------------------------------------------------------
# Snapshot chunking (sender side) and verification (receiver side)


@dataclass(frozen=True, slots=True)
class ChunkSpec:
    """One chunk as the sender builds it (the gRPC transport wraps it in a SnapshotChunk)."""

    seq: int
    data: bytes
    checksum: int
    last: bool
    total_checksum: int = 0
    total_bytes: int = 0


async def _aiter(data: SnapshotData) -> AsyncIterable[bytes]:
    if isinstance(data, AsyncIterable):
        async for piece in data:
            yield piece
    else:
        for piece in data:
            yield piece


async def chunk_snapshot(data: SnapshotData, chunk_bytes: int) -> AsyncIterable[ChunkSpec]:
    """Cut ``data`` into checksummed chunks of at most ``chunk_bytes``; the last one (always
    present, possibly empty) carries the whole snapshot's CRC-32 and length."""
    total_crc = 0
    total = 0
    seq = 0
    pending: bytes | None = None
    buf = bytearray()
    async for piece in _aiter(data):
        buf += piece
        while len(buf) >= chunk_bytes:
            if pending is not None:
                yield ChunkSpec(seq, pending, zlib.crc32(pending), False)
                seq += 1
            pending = bytes(buf[:chunk_bytes])
            del buf[:chunk_bytes]
            total_crc = zlib.crc32(pending, total_crc)
            total += len(pending)
    if buf:
        if pending is not None:
            yield ChunkSpec(seq, pending, zlib.crc32(pending), False)
            seq += 1
        pending = bytes(buf)
        total_crc = zlib.crc32(pending, total_crc)
        total += len(pending)
    last = pending or b""
    yield ChunkSpec(seq, last, zlib.crc32(last), True, total_crc, total)


class SnapshotReceiver:
    """Receives one snapshot transfer, chunk by chunk, into a temporary file.

    Call :meth:`feed` for each chunk in order; after the last one :meth:`finish` verifies the
    whole and returns the :class:`IncomingSnapshot` (the file then belongs to the caller).
    :meth:`abort` (or any failed check) deletes the file. Writes run in a worker thread so a
    large snapshot never stalls the event loop that carries the message stream.
    """

    def __init__(self, directory: str | os.PathLike[str], peer: int) -> None:
        self.directory = Path(directory)
        self.peer = peer
        self._fh: Any = None
        self._path: Path | None = None
        self._crc = 0
        self._size = 0
        self._seq = 0
        self._done = False
        self.meta: SnapshotMeta | None = None
        self.term = 0

    def _fail(self, reason: str) -> RemoteProtocolError:
        self.abort()
        return RemoteProtocolError(self.peer, f"snapshot transfer: {reason}")

    async def feed(
        self, seq: int, data: bytes, checksum: int, meta: SnapshotMeta | None, term: int
    ) -> None:
        """Check and write one chunk; raises RemoteProtocolError (and cleans up) when bad."""
        if self._done:
            raise self._fail("chunk after the last one")
        if seq != self._seq:
            raise self._fail(f"chunk {seq} out of order (expected {self._seq})")
        if zlib.crc32(data) != checksum:
            raise self._fail(f"chunk {seq} fails its CRC-32 check")
        if seq == 0:
            if meta is None:
                raise self._fail("the first chunk carries no snapshot metadata")
            self.meta, self.term = meta, term
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                prefix=f".incoming-snapshot-{self.peer}-", suffix=".part", dir=self.directory
            )
            self._path = Path(name)
            self._fh = os.fdopen(fd, "wb")
        if data:
            await asyncio.to_thread(self._fh.write, data)
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._seq += 1

    @property
    def received_bytes(self) -> int:
        """Bytes of snapshot data written so far."""
        return self._size

    async def finish(self, total_checksum: int, total_bytes: int) -> IncomingSnapshot:
        """Verify the whole after the last chunk, sync the file and hand it over."""
        if self._fh is None or self.meta is None or self._path is None:
            raise self._fail("no chunk was received")
        if total_bytes != self._size:
            raise self._fail(f"received {self._size} bytes, the sender says {total_bytes}")
        if total_checksum != self._crc:
            raise self._fail("the whole snapshot fails its CRC-32 check")
        try:
            await asyncio.to_thread(self._sync_close)
        except OSError as e:
            self.abort()
            raise SnapshotError(f"cannot write the received snapshot: {e}") from e
        self._done = True
        path, self._path = self._path, None
        return IncomingSnapshot(self.peer, self.term, self.meta, path, self._size)

    def _sync_close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None

    def abort(self) -> None:
        """Drop the partial transfer and its file; safe to call more than once."""
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None
