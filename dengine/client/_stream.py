"""The coalescing ``Kv.Batch`` stream: many callers' requests in a handful of gRPC messages.

Theory of operation
-------------------
One :class:`BatchStream` lives on one gRPC channel and is shared by every caller that picks that
channel. A caller appends its ``ClientRequest`` to a pending list, registers a future under its
``request_id`` and wakes the writer task. The writer takes everything pending (up to a byte budget
per message) and writes it as one ``ClientRequestBatch``; while that write is in progress new
requests pile up and leave together in the next message. So at rest a lone request leaves at once,
and under load 100 concurrent callers cost a few messages, not 100 unary calls.

The reader task matches each ``ClientResponse`` to its future by ``request_id``; the server may
answer in any order and split answers over several messages.

When the stream breaks (the server went away, reset the stream, or closed it), every request still
waiting fails with :class:`~dengine.errors.Unavailable` saying the stream broke and the request is
safe to retry (writes carry a session, so a retry is applied once). The stream is then dead; its
owner (:class:`dengine.client._pool.PooledChannel`) falls back to unary calls for a while and
opens a new stream later.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import grpc

from dengine.errors import OperationTimeout, Unavailable
from dengine.observability import timeline as _tl
from dengine.v1 import client_pb2

__all__ = ["BatchStream", "StreamStats"]


class StreamStats:
    """Counters for one client: stream messages and requests, to see coalescing at work."""

    __slots__ = ("messages_sent", "requests_sent", "streams_opened", "streams_broken")

    def __init__(self) -> None:
        self.messages_sent = 0
        self.requests_sent = 0
        self.streams_opened = 0
        self.streams_broken = 0


class BatchStream:
    """One open ``Kv.Batch`` call shared by the callers of one channel."""

    def __init__(
        self,
        stub: Any,
        address: str,
        stats: StreamStats,
        *,
        max_message_bytes: int = 1024 * 1024,
    ) -> None:
        self.address = address
        self._stub = stub
        self._stats = stats
        self._max_message_bytes = max_message_bytes
        self._ids = itertools.count(1)
        self._pending: list[client_pb2.ClientRequest] = []
        self._waiting: dict[int, asyncio.Future[client_pb2.ClientResponse]] = {}
        self._wake = asyncio.Event()
        self._call: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Set once the stream is dead: the error in-flight calls failed with.
        self.broken: Unavailable | None = None
        #: The gRPC status code that broke it, when there was one (UNIMPLEMENTED: no stream).
        self.broken_code: grpc.StatusCode | None = None

    def start(self) -> None:
        self._call = self._stub.Batch()
        self._stats.streams_opened += 1
        self._tasks = [
            asyncio.create_task(self._write_loop(), name=f"dengine-batch-write-{self.address}"),
            asyncio.create_task(self._read_loop(), name=f"dengine-batch-read-{self.address}"),
        ]

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    async def call(self, field: str, request: Any, op: str, timeout: float) -> Any:
        """Send ``request`` as the ``field`` member of a ClientRequest; return the matching
        response member. Raises Unavailable if the stream breaks, OperationTimeout after
        ``timeout`` seconds."""
        if self.broken is not None:
            raise self.broken
        rid = next(self._ids)
        fut: asyncio.Future[client_pb2.ClientResponse] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        wrapped = client_pb2.ClientRequest(request_id=rid)
        getattr(wrapped, field).CopyFrom(request)
        if _tl.ON:
            _tl.mark("c.call")
        self._pending.append(wrapped)
        self._wake.set()
        try:
            resp = await asyncio.wait_for(fut, timeout)
            if _tl.ON:
                _tl.mark("c.resume")
        except TimeoutError:
            raise OperationTimeout(op, timeout) from None
        finally:
            self._waiting.pop(rid, None)
        got = resp.WhichOneof("response")
        if got != field:
            raise Unavailable(
                f"the batch stream to {self.address} answered request {rid} ({field}) with "
                f"{got!r}; the request is safe to retry"
            )
        return getattr(resp, field)

    def _take(self) -> list[client_pb2.ClientRequest]:
        """Pending requests for one message, within the byte budget (at least one)."""
        size = 0
        n = 0
        for req in self._pending:
            size += req.ByteSize() + 8
            if n and size > self._max_message_bytes:
                break
            n += 1
        batch, self._pending = self._pending[:n], self._pending[n:]
        return batch

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    batch = self._take()
                    if _tl.ON:
                        _tl.mark("c.write", len(batch))
                    await self._call.write(client_pb2.ClientRequestBatch(requests=batch))
                    self._stats.messages_sent += 1
                    self._stats.requests_sent += len(batch)
        except asyncio.CancelledError:
            raise
        except grpc.RpcError as e:
            self._break(f"writing failed: {_describe(e)}", _code(e))
        except Exception as e:  # noqa: BLE001 - e.g. InvalidStateError after the call ended
            self._break(f"writing failed: {e!r}", None)

    async def _read_loop(self) -> None:
        try:
            while True:
                msg = await self._call.read()
                if msg is grpc.aio.EOF:
                    self._break("the server closed it", None)
                    return
                if _tl.ON:
                    _tl.mark("c.read", len(msg.responses))
                for resp in msg.responses:
                    fut = self._waiting.pop(resp.request_id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(resp)
        except asyncio.CancelledError:
            raise
        except grpc.RpcError as e:
            self._break(_describe(e), _code(e))
        except Exception as e:  # noqa: BLE001 - any failure of the call ends the stream
            self._break(repr(e), None)

    def _break(self, reason: str, code: grpc.StatusCode | None) -> None:
        if self.broken is not None:
            return
        self._stats.streams_broken += 1
        self.broken_code = code
        self.broken = Unavailable(
            f"the batch stream to {self.address} broke ({reason}); the request is safe to retry"
        )
        waiting, self._waiting = self._waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(self.broken)
        self._pending.clear()
        me = asyncio.current_task()
        for t in self._tasks:
            if t is not me:
                t.cancel()
        if self._call is not None:
            self._call.cancel()

    async def close(self) -> None:
        """End the stream; calls still waiting fail with Unavailable."""
        self._break("the client closed it", None)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _code(e: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(e, "code", None)
    return code() if callable(code) else None


def _describe(e: grpc.RpcError) -> str:
    code = _code(e)
    details = e.details() if callable(getattr(e, "details", None)) else ""
    return f"{code.name if code else 'error'}: {details}" if details else str(code)
