"""etcd's ``Watch`` service on the node's :class:`~dengine.node.watch.WatchHub`.

One etcd stream carries many watches, each created and cancelled by the client. Each watch runs
the hub's stream (history replay, then live) in its own task, translating the hub's responses
into etcd's: a range that is not a prefix watches the longest common prefix and filters; the
NOPUT/NODELETE filters drop events; an empty hub response becomes a progress notification only
for a watch created with ``progress_notify``. Responses of every watch leave through one queue.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from dengine.etcd import store
from dengine.etcd.pb import kv_pb2
from dengine.etcd.pb import rpc_pb2 as pb
from dengine.etcd.pb import rpc_pb2_grpc as pbg
from dengine.node.watch import WatchHub
from dengine.statemachine.kv import prefix_end
from dengine.v1 import client_pb2

if TYPE_CHECKING:
    from dengine.etcd.server import EtcdApi

__all__ = ["WatchService"]

#: etcd's clientv3.InvalidWatchID: a response for every watch of the stream.
ALL_WATCHES = -1
#: Progress notifications of a watch created with progress_notify (etcd's default is 10 min).
PROGRESS_MS = 5000
#: Responses waiting to be written on one stream; a full queue makes the watches wait.
QUEUE = 1024


def _hub_request(c: pb.WatchCreateRequest) -> tuple[client_pb2.WatchRequest, Any]:
    """The hub's request for an etcd create request, and the key filter on top (or None)."""
    start, end, single = store.key_range(c.key, c.range_end)
    interval = PROGRESS_MS if c.progress_notify else 600_000
    if single:
        key, prefix, match = start, False, None
    elif end is not None and end == prefix_end(start):
        key, prefix, match = start, True, None
    else:
        key = start[:len(os.path.commonprefix([start, end]))] if end is not None else b""
        prefix = True

        def match(k: bytes) -> bool:
            return k >= start and (end is None or k < end)

    req = client_pb2.WatchRequest(key=key, prefix=prefix, start_revision=max(c.start_revision, 0),
                                  prev_kv=c.prev_kv, progress_interval_ms=interval)
    return req, match


def _kv(kv: Any, create: int, lease: int) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(key=kv.key, value=kv.value, mod_revision=kv.revision,
                           version=kv.version, create_revision=create, lease=lease)


def _event(e: client_pb2.Event) -> kv_pb2.Event:
    put = e.type == client_pb2.Event.PUT
    out = kv_pb2.Event(type=kv_pb2.Event.PUT if put else kv_pb2.Event.DELETE,
                       kv=_kv(e.kv, e.create_revision if put else 0, e.lease if put else 0))
    if e.HasField("prev_kv"):  # one lifetime: a put's previous version shares its creation
        same = put and e.kv.version > 1
        out.prev_kv.CopyFrom(_kv(e.prev_kv, e.create_revision if same else 0, 0))
    return out


class WatchService(pbg.WatchServicer):
    def __init__(self, api: EtcdApi) -> None:
        self.api = api

    async def Watch(self, request_iterator: Any, context: Any) -> Any:
        out: asyncio.Queue = asyncio.Queue(QUEUE)
        tasks: dict[int, asyncio.Task] = {}
        reader = asyncio.get_running_loop().create_task(
            self._read(request_iterator, out, tasks))
        try:
            while True:
                item = await out.get()
                if item is None:
                    return
                yield item
        finally:
            reader.cancel()
            for t in tasks.values():
                t.cancel()

    async def _read(self, requests: Any, out: asyncio.Queue,
                    tasks: dict[int, asyncio.Task]) -> None:
        next_id = 0
        loop = asyncio.get_running_loop()
        try:
            async for req in requests:
                kind = req.WhichOneof("request_union")
                if kind == "create_request":
                    c = req.create_request
                    wid = c.watch_id if c.watch_id else next_id
                    while wid in tasks and not c.watch_id:
                        wid += 1
                    if wid in tasks:
                        await out.put(pb.WatchResponse(
                            header=self.api.header(), watch_id=ALL_WATCHES, created=True,
                            canceled=True, cancel_reason="mvcc: duplicate watch ID"))
                        continue
                    next_id = max(next_id, wid + 1)
                    tasks[wid] = loop.create_task(self._watch(wid, c, out))

                    def forget(_t: asyncio.Task[Any], w: int = wid) -> None:
                        tasks.pop(w, None)

                    tasks[wid].add_done_callback(forget)
                elif kind == "cancel_request":
                    wid = req.cancel_request.watch_id
                    t = tasks.pop(wid, None)
                    if t is not None:
                        t.cancel()
                        await out.put(pb.WatchResponse(header=self.api.header(), watch_id=wid,
                                                       canceled=True))
                elif kind == "progress_request":
                    await out.put(pb.WatchResponse(header=self.api.header(),
                                                   watch_id=ALL_WATCHES))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the client went away
            pass
        await out.put(None)

    async def _watch(self, wid: int, c: pb.WatchCreateRequest, out: asyncio.Queue) -> None:
        hub = WatchHub.of(self.api.node)
        hreq, match = _hub_request(c)
        no_put = pb.WatchCreateRequest.NOPUT in c.filters
        no_delete = pb.WatchCreateRequest.NODELETE in c.filters
        created = False
        async for r in hub.stream(hreq):
            if isinstance(r, bytes | bytearray):
                r = client_pb2.WatchResponse.FromString(bytes(r))
            if not created:
                created = True
                await out.put(pb.WatchResponse(header=self.api.header(), watch_id=wid,
                                               created=True))
                if r.created:
                    continue
            if r.canceled or r.HasField("error"):
                reason = store.COMPACTED if r.compact_revision else \
                    (r.cancel_reason or r.error.message)
                await out.put(pb.WatchResponse(
                    header=self.api.header(r.revision), watch_id=wid, canceled=True,
                    compact_revision=r.compact_revision, cancel_reason=reason))
                return
            events = [e for e in r.events
                      if (match is None or match(e.kv.key))
                      and not (no_put and e.type == client_pb2.Event.PUT)
                      and not (no_delete and e.type == client_pb2.Event.DELETE)]
            if not events and (r.events or not c.progress_notify):
                continue
            await out.put(pb.WatchResponse(header=self.api.header(r.revision), watch_id=wid,
                                           events=[_event(e) for e in events]))
