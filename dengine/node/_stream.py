"""The ``Batch`` stream's flow control: a client that does not read its answers stops the node
from taking more of its requests, rather than making the node hold every answer.

Theory of operation. Each request of a stream takes a *slot* before it is handled and gives it
back only once its answer has been written to the stream (handed to gRPC, whose own HTTP/2 flow
control then holds at most a window's worth). The answer's bytes count against the stream's
byte budget from the moment it is ready until it is written. While the stream holds
``max_in_flight`` slots or ``max_queued_bytes`` of unwritten answers, the reader stops reading
requests, so gRPC's flow control pushes back on the client in turn. Memory per stream is
therefore bounded by the two limits (``network.stream_max_in_flight`` and
``network.stream_max_queued_bytes``), whatever the client does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from dengine.observability import timeline as _tl

__all__ = ["StreamBudget", "run_batch_stream"]


class StreamBudget:
    """Slots and unwritten answer bytes of one stream; ``acquire`` waits while either is full."""

    def __init__(self, max_in_flight: int, max_queued_bytes: int) -> None:
        self.max_in_flight = max_in_flight
        self.max_queued_bytes = max_queued_bytes
        self.in_flight = 0
        self.queued_bytes = 0
        self._room = asyncio.Event()
        self._room.set()

    def _update(self) -> None:
        if self.in_flight < self.max_in_flight and self.queued_bytes < self.max_queued_bytes:
            self._room.set()
        else:
            self._room.clear()

    async def acquire(self) -> None:
        while not self._room.is_set():
            await self._room.wait()
        self.in_flight += 1
        self._update()

    def queued(self, nbytes: int) -> None:
        """An answer of ``nbytes`` is ready but not yet written."""
        self.queued_bytes += nbytes
        self._update()

    def written(self, count: int, nbytes: int) -> None:
        """``count`` answers of ``nbytes`` in all were written: their slots are free."""
        self.in_flight -= count
        self.queued_bytes -= nbytes
        self._update()


async def run_batch_stream(
    request_iterator: Any,
    handle: Callable[[Any], Awaitable[Any]],
    make_batch: Callable[[list[Any]], Any],
    budget: StreamBudget,
) -> AsyncIterator[Any]:
    """Yield response batches for the request batches of ``request_iterator``.

    ``handle(request)`` answers one request; ``make_batch(responses)`` wraps whatever answers
    are ready into one message. A slot is freed only after the message holding its answer
    was yielded, that is, written.
    """
    out: asyncio.Queue = asyncio.Queue()
    tasks: set[asyncio.Task] = set()
    loop = asyncio.get_running_loop()

    async def one(req: Any) -> None:
        if _tl.ON:
            _tl.mark("s.handle")
        resp = await handle(req)
        if _tl.ON:
            _tl.mark("s.handled")
        budget.queued(resp.ByteSize())
        out.put_nowait(resp)

    async def read() -> None:
        try:
            async for batch in request_iterator:
                if _tl.ON:
                    _tl.mark("s.req", len(batch.requests))
                for req in batch.requests:
                    await budget.acquire()
                    t = loop.create_task(one(req))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the client went away: answer what is in flight
            pass
        while tasks:
            await asyncio.wait(list(tasks))
        out.put_nowait(None)

    reader = loop.create_task(read())
    try:
        while True:
            first = await out.get()
            if first is None:
                return
            responses, done = [first], False
            while not out.empty():
                item = out.get_nowait()
                if item is None:
                    done = True
                    break
                responses.append(item)
            nbytes = sum(r.ByteSize() for r in responses)
            if _tl.ON:
                _tl.mark("s.yield", len(responses))
            yield make_batch(responses)
            if _tl.ON:
                _tl.mark("s.written")
            budget.written(len(responses), nbytes)
            if done:
                return
    finally:
        reader.cancel()
        for t in list(tasks):
            t.cancel()
