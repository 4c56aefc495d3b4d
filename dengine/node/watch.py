"""The ``Watch`` service: applied changes streamed to watchers, from history or live.

Theory of operation
-------------------
Any member serves a watch, from its own applied state only: the KV machine's
:class:`~dengine.statemachine.history.History` hands every applied batch's events to this
node's :class:`WatchHub` (``on_events``) after the batch is written, so nothing leaves before it
is applied, and in revision order. A stream runs in two phases:

1. *Replay*: from ``start_revision`` (0: the next revision applied here) it reads the history
   in pages of whole revisions. A start older than the history's oldest revision ends the
   stream at once with ``canceled`` and ``compact_revision`` (COMPACTED).
2. *Live*: once a read finds nothing more, the stream joins its :class:`_Group` in the same
   synchronous step (no await between), so no batch falls between the two phases.

Fan-out is per group, not per watcher: watchers with the same (key, prefix, prev_kv) share one
group. For each applied batch the hub finds the groups an event touches by one dict lookup per
distinct prefix length (not per watcher), serializes the group's response *once*, appends it to
the group's ring and wakes the group's waiters through one future. Each watcher keeps only a
cursor into the ring; the gRPC method writes the pre-serialized bytes as they are.

Bounds: a ring holds at most :data:`GROUP_BUFFER_BATCHES` responses and
:data:`GROUP_BUFFER_BYTES`; a watcher whose cursor falls off the ring (it read too slowly) is
cancelled with ``compact_revision`` set, never skipped: the client resumes from its last
revision + 1 out of history, or is told COMPACTED if that is gone too. A snapshot install
replaces the state under every watcher: each is cancelled the same way and resumes from history.

``WatchMany`` carries many watches on one bidirectional stream (a gRPC server holds only a
few thousand open streams): each runs the same generator in its own task and its responses
go out tagged with the client's watch id, through one bounded queue per stream.

Every response carries ``revision``: all of this watch's events up to it were sent. An idle
stream gets one with no events (a progress notification) every ``progress_interval_ms``. A
stream that starts ahead of this member (a client resuming on a lagging follower) reports
``start_revision - 1`` until the member catches up, so a client's position never goes back.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from dengine.statemachine.history import DELETE, Event
from dengine.v1 import client_pb2 as pb

if TYPE_CHECKING:
    from dengine.node.node import Node

__all__ = ["WatchHub", "add_watch_service", "watch_many", "GROUP_BUFFER_BATCHES",
           "GROUP_BUFFER_BYTES"]

#: Responses a watch group keeps for watchers still writing older ones.
GROUP_BUFFER_BATCHES = 1024
#: Bytes a watch group keeps (whichever bound comes first).
GROUP_BUFFER_BYTES = 8 << 20
#: Events (about; never a revision cut in two) per replay response.
REPLAY_PAGE_EVENTS = 512
DEFAULT_PROGRESS_MS = 1000
MIN_PROGRESS_MS = 20
MAX_PROGRESS_MS = 600_000


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, data: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(data)) + data


def event_pb(e: Event, prev_kv: bool) -> pb.Event:
    msg = pb.Event(type=pb.Event.DELETE if e.type == DELETE else pb.Event.PUT,
                   kv=pb.KeyValue(key=e.key, value=e.value, revision=e.revision,
                                  version=e.version),
                   create_revision=e.create_revision, lease=e.lease)
    if prev_kv and e.prev is not None:
        msg.prev_kv.CopyFrom(pb.KeyValue(key=e.key, value=e.prev.value,
                                         revision=e.prev.revision, version=e.prev.version))
    return msg


def _encoded(e: Event, prev_kv: bool, cache: dict) -> bytes:
    """``events`` field bytes (tag 2) of one event, made once per batch and flavour."""
    k = (id(e), prev_kv)
    b = cache.get(k)
    if b is None:
        b = cache[k] = _field(0x12, event_pb(e, prev_kv).SerializeToString())
    return b


def response_bytes(events: list[bytes], revision: int) -> bytes:
    """A serialized WatchResponse from pre-serialized ``events`` fields and a revision."""
    return b"".join(events) + (b"\x18" + _varint(revision) if revision else b"")


class _Group:
    """Watchers of one (key, prefix, prev_kv): one ring of serialized responses."""

    __slots__ = ("key", "prefix", "prev_kv", "items", "first_seq", "bytes", "waiter", "watchers")

    def __init__(self, key: bytes, prefix: bool, prev_kv: bool) -> None:
        self.key = key
        self.prefix = prefix
        self.prev_kv = prev_kv
        # (first revision, revision after, response bytes, events for a cut)
        self.items: deque[tuple[int, int, bytes, list[Event]]] = deque()
        self.first_seq = 0
        self.bytes = 0
        self.waiter: asyncio.Future | None = None
        self.watchers = 0

    @property
    def next_seq(self) -> int:
        return self.first_seq + len(self.items)

    def push(self, item: tuple[int, int, bytes, list[Event]]) -> None:
        self.items.append(item)
        self.bytes += len(item[2])
        while len(self.items) > GROUP_BUFFER_BATCHES or (
                self.bytes > GROUP_BUFFER_BYTES and len(self.items) > 1):
            self.bytes -= len(self.items.popleft()[2])
            self.first_seq += 1
        self.wake()

    def wake(self) -> None:
        w, self.waiter = self.waiter, None
        if w is not None and not w.done():
            w.set_result(None)

    def changed(self) -> asyncio.Future:
        if self.waiter is None:
            self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter


class WatchHub:
    """Routes applied events to watch groups (see the module docstring)."""

    def __init__(self, state_machine: Any) -> None:
        self.history = state_machine.history
        self.applied = state_machine.applied_index()
        self.generation = 0  # bumped when a snapshot replaces the state
        self.groups: dict[tuple[bytes, bool, bool], _Group] = {}
        self._exact: dict[bytes, list[_Group]] = {}
        self._prefix: dict[bytes, list[_Group]] = {}
        self._lengths: Counter[int] = Counter()
        self.history.listeners.append(self)

    @classmethod
    def of(cls, node: Node) -> WatchHub:
        """The node's hub, made on first use."""
        hub = getattr(node, "watch_hub", None)
        if hub is None:
            hub = cls(node.state_machine)
            node.watch_hub = hub
        return hub

    @property
    def watchers(self) -> int:
        return sum(g.watchers for g in self.groups.values())

    # -- listener of the history --------------------------------------------------------------
    def on_events(self, events: list[Event], applied_index: int) -> None:
        self.applied = applied_index
        if not events or not self.groups:
            return
        touched: dict[int, tuple[_Group, list[Event]]] = {}
        exact, prefix, lengths = self._exact, self._prefix, self._lengths
        for e in events:
            hits = exact.get(e.key, ())
            for n in lengths:
                hits = (*hits, *prefix.get(e.key[:n], ()))
            for g in hits:
                t = touched.get(id(g))
                if t is None:
                    touched[id(g)] = (g, [e])
                else:
                    t[1].append(e)
        cache: dict = {}
        for g, evs in touched.values():
            data = response_bytes([_encoded(e, g.prev_kv, cache) for e in evs], applied_index)
            g.push((evs[0].revision, applied_index, data, evs))

    def on_reset(self, oldest_revision: int, applied_index: int) -> None:
        self.applied = applied_index
        self.generation += 1
        for g in self.groups.values():
            g.wake()

    # -- groups -------------------------------------------------------------------------------
    def join(self, key: bytes, prefix: bool, prev_kv: bool) -> _Group:
        gk = (key, prefix, prev_kv)
        g = self.groups.get(gk)
        if g is None:
            g = self.groups[gk] = _Group(key, prefix, prev_kv)
            if prefix:
                self._prefix.setdefault(key, []).append(g)
                self._lengths[len(key)] += 1
            else:
                self._exact.setdefault(key, []).append(g)
        g.watchers += 1
        return g

    def leave(self, g: _Group) -> None:
        g.watchers -= 1
        if g.watchers:
            return
        del self.groups[(g.key, g.prefix, g.prev_kv)]
        table = self._prefix if g.prefix else self._exact
        table[g.key].remove(g)
        if not table[g.key]:
            del table[g.key]
        if g.prefix:
            self._lengths[len(g.key)] -= 1
            if not self._lengths[len(g.key)]:
                del self._lengths[len(g.key)]

    # -- one stream ---------------------------------------------------------------------------
    async def stream(self, req: pb.WatchRequest) -> AsyncIterator[bytes | pb.WatchResponse]:
        """The responses of one Watch call (bytes are pre-serialized WatchResponses)."""
        key, prefix, prev_kv = bytes(req.key), req.prefix, req.prev_kv
        if not key and not prefix:
            yield _error(pb.INVALID_ARGUMENT, "the key is empty (set prefix to watch every key)")
            return
        progress_s = (req.progress_interval_ms or DEFAULT_PROGRESS_MS) / 1000
        progress_s = min(max(progress_s, MIN_PROGRESS_MS / 1000), MAX_PROGRESS_MS / 1000)
        start = req.start_revision or self.applied + 1
        oldest = self.history.oldest_revision(self.applied)
        if start < oldest:
            yield _compacted(start - 1, oldest, f"revision {start} is compacted")
            return
        yield pb.WatchResponse(created=True, revision=start - 1)
        gen = self.generation
        match = (lambda k: k.startswith(key)) if prefix else (lambda k: k == key)
        nxt = start
        while True:  # replay: pages of history until one finds nothing more
            if self.generation != gen:
                yield self._reset(nxt - 1)
                return
            events, after = self.history.read(nxt, REPLAY_PAGE_EVENTS, match)
            if after == nxt:
                break
            nxt = after
            if events:
                cache: dict = {}
                yield response_bytes([_encoded(e, prev_kv, cache) for e in events], after - 1)
        group = self.join(key, prefix, prev_kv)  # no await since the last read
        try:
            async for r in self._live(group, gen, start, progress_s):
                yield r
        finally:
            self.leave(group)

    async def _live(self, g: _Group, gen: int, start: int,
                    progress_s: float) -> AsyncIterator[bytes | pb.WatchResponse]:
        cursor = g.next_seq
        sent = max(self.applied, start - 1)
        while True:
            if self.generation != gen:
                yield self._reset(sent)
                return
            if cursor < g.first_seq:
                oldest = self.history.oldest_revision(self.applied)
                yield _compacted(sent, oldest, "the watcher fell behind its buffer; resume "
                                 "from revision + 1")
                return
            if cursor < g.next_seq:
                first, rev, data, events = g.items[cursor - g.first_seq]
                cursor += 1
                if first < start:  # a stream that started ahead of this member
                    cache: dict = {}
                    data = response_bytes(
                        [_encoded(e, g.prev_kv, cache) for e in events if e.revision >= start],
                        max(rev, start - 1))
                sent = max(sent, rev)
                yield data
                continue
            done, _ = await asyncio.wait((g.changed(),), timeout=progress_s)
            if not done:
                sent = max(sent, self.applied)
                yield pb.WatchResponse(revision=sent)

    def _reset(self, sent: int) -> pb.WatchResponse:
        oldest = self.history.oldest_revision(self.applied)
        return _compacted(sent, oldest, "a snapshot replaced this member's state; resume "
                          "from revision + 1")


def _compacted(revision: int, oldest: int, reason: str) -> pb.WatchResponse:
    return pb.WatchResponse(canceled=True, revision=max(revision, 0), compact_revision=oldest,
                            cancel_reason=reason)


def _error(code: int, message: str) -> pb.WatchResponse:
    err = pb.Error(code=code, message=message)  # type: ignore[arg-type]  # protobuf takes any int; its stubs only the enum class
    return pb.WatchResponse(error=err, canceled=True,
                            cancel_reason=message)


def _serialize(r: bytes | pb.WatchResponse) -> bytes:
    return r if isinstance(r, bytes) else r.SerializeToString()


#: Responses of a WatchMany stream waiting to be written; a full queue holds its watches back
#: (their group buffers then overflow and they are cancelled, as a slow single stream is).
MANY_QUEUE = 1024
#: Watches one WatchMany stream may hold.
MAX_WATCHES_PER_STREAM = 100_000


def _tagged(watch_id: int, r: bytes | pb.WatchResponse) -> bytes:
    data = r if isinstance(r, bytes) else r.SerializeToString()
    return b"\x08" + _varint(watch_id) + _field(0x12, data)


async def watch_many(hub: WatchHub, requests: AsyncIterator[pb.WatchManyRequest]
                     ) -> AsyncIterator[bytes]:
    """One WatchMany stream: each watch runs :meth:`WatchHub.stream` in its own task and its
    responses go out tagged with its id (pre-serialized WatchManyResponse bytes)."""
    out: asyncio.Queue = asyncio.Queue(MANY_QUEUE)
    tasks: dict[int, asyncio.Task] = {}
    done = object()

    async def forward(watch_id: int, req: pb.WatchRequest) -> None:
        try:
            async for r in hub.stream(req):
                await out.put(_tagged(watch_id, r))
        finally:
            tasks.pop(watch_id, None)

    async def read() -> None:
        loop = asyncio.get_running_loop()
        try:
            async for m in requests:
                if m.cancel:
                    t = tasks.pop(m.watch_id, None)
                    if t is not None:
                        t.cancel()
                elif m.watch_id in tasks or len(tasks) >= MAX_WATCHES_PER_STREAM:
                    why = ("the watch id is in use" if m.watch_id in tasks
                           else f"at most {MAX_WATCHES_PER_STREAM} watches per stream")
                    await out.put(_tagged(m.watch_id, _error(pb.INVALID_ARGUMENT, why)))
                else:
                    tasks[m.watch_id] = loop.create_task(forward(m.watch_id, m.create))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the client went away
            pass
        await out.put(done)

    reader = asyncio.get_running_loop().create_task(read())
    try:
        while True:
            item = await out.get()
            if item is done:
                return
            yield item
    finally:
        reader.cancel()
        for t in list(tasks.values()):
            t.cancel()


def add_watch_service(server: Any, node: Node, authorizer: Any = None) -> None:
    """Register ``Watch`` for ``node`` on a ``grpc.aio`` server (no-op for a machine with no
    history); with ``authorizer`` (auth on) a stream opens only for a caller with ``read``."""
    if getattr(node.state_machine, "history", None) is None:
        return

    async def watch(request: pb.WatchRequest, context: Any) -> AsyncIterator[bytes]:
        hub = WatchHub.of(node)
        async for r in hub.stream(request):
            yield r

    async def many(requests: Any, context: Any) -> AsyncIterator[bytes]:
        async for r in watch_many(WatchHub.of(node), requests):
            yield r

    if authorizer is not None:
        from dengine.security.auth import STREAM_ROLES, guard_stream

        role = STREAM_ROLES["Watch"]
        watch = guard_stream(watch, "Watch", role, authorizer, node.logger)
        many = guard_stream(many, "WatchMany", role, authorizer, node.logger)
    handler = grpc.unary_stream_rpc_method_handler(
        watch, request_deserializer=pb.WatchRequest.FromString, response_serializer=_serialize)
    many_handler = grpc.stream_stream_rpc_method_handler(
        many, request_deserializer=pb.WatchManyRequest.FromString,
        response_serializer=_serialize)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "dengine.v1.Watch", {"Watch": handler, "WatchMany": many_handler}),))
