"""Channels to one node: a small pool, each with its stubs and its coalescing batch stream.

A :class:`Connection` holds ``pool_size`` gRPC channels to one address (each on its own TCP
connection: ``grpc.use_local_subchannel_pool``). With batch streams it fills one stream before
using the next: concurrent callers on one stream share its messages, which is what makes the
stream pay (100 callers round robin over 10 streams made about 3 requests per message and cost
the server twice the CPU per request of one stream carrying all 100), and the next channel takes
over only once a stream has ``SPILL_IN_FLIGHT`` requests in flight. Without streams (unary
calls, or a stream resting after a break) channels are handed out round robin.

A :class:`PooledChannel` opens its ``Kv.Batch`` stream lazily; when the stream breaks it serves
unary calls for ``stream_retry_s`` and then opens a new one, and when the server does not
implement the stream it stays unary.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import grpc

from dengine.client._stream import BatchStream, StreamStats
from dengine.v1 import client_pb2_grpc

__all__ = ["Connection", "PooledChannel", "channel_options", "SPILL_IN_FLIGHT"]

#: Requests in flight on one batch stream before callers spill over to the next channel.
SPILL_IN_FLIGHT = 256


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Options for every client channel: message limits, quick reconnects, own TCP connection."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.initial_reconnect_backoff_ms", 50),
        ("grpc.min_reconnect_backoff_ms", 50),
        ("grpc.max_reconnect_backoff_ms", 500),
        ("grpc.enable_retries", 0),
    ]


class PooledChannel:
    """One gRPC channel to a node, its stubs, and its batch stream when that is in use."""

    def __init__(
        self,
        address: str,
        options: Sequence[tuple[str, int]],
        stats: StreamStats,
        *,
        use_stream: bool,
        stream_message_bytes: int,
        stream_retry_s: float,
        interceptors: Sequence[Any] = (),
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.address = address
        if credentials is not None:  # TLS (dengine.security.tls.client_credentials)
            self.channel = grpc.aio.secure_channel(
                address, credentials, options=list(options),
                interceptors=list(interceptors) or None)
        else:
            self.channel = grpc.aio.insecure_channel(
                address, options=list(options), interceptors=list(interceptors) or None
            )
        self.kv = client_pb2_grpc.KvStub(self.channel)
        self.cluster = client_pb2_grpc.ClusterStub(self.channel)
        self._stats = stats
        self._use_stream = use_stream
        self._stream_message_bytes = stream_message_bytes
        self._stream_retry_s = stream_retry_s
        self._stream: BatchStream | None = None
        self._retry_at = 0.0
        self._old: list[BatchStream] = []

    def batch_stream(self) -> BatchStream | None:
        """The live batch stream, opening one if due; None means: use a unary call."""
        if not self._use_stream:
            return None
        s = self._stream
        if s is not None and s.broken is None:
            return s
        now = asyncio.get_running_loop().time()
        if s is not None:
            if s.broken_code == grpc.StatusCode.UNIMPLEMENTED:
                self._use_stream = False  # the server has no Batch: unary from now on
                return None
            self._old.append(s)
            self._stream = None
            self._retry_at = now + self._stream_retry_s
        if now < self._retry_at:
            return None
        s = self._stream = BatchStream(
            self.kv, self.address, self._stats, max_message_bytes=self._stream_message_bytes
        )
        s.start()
        return s

    def stream_load(self) -> int | None:
        """Requests in flight on this channel's batch stream (0 when it will open one on
        use); None when calls here would go unary (streams off, or one resting after a break)."""
        if not self._use_stream:
            return None
        s = self._stream
        if s is None:
            return 0 if asyncio.get_running_loop().time() >= self._retry_at else None
        return s.in_flight if s.broken is None else None

    async def close(self) -> None:
        streams = [s for s in (self._stream, *self._old) if s is not None]
        self._stream = None
        self._old.clear()
        await asyncio.gather(*(s.close() for s in streams), return_exceptions=True)
        await self.channel.close(grace=None)


class Connection:
    """A small pool of channels to one address: fill one batch stream, then the next; round
    robin when calls are unary."""

    def __init__(
        self,
        address: str,
        pool_size: int,
        options: Sequence[tuple[str, int]],
        stats: StreamStats,
        *,
        use_stream: bool,
        stream_message_bytes: int,
        stream_retry_s: float,
        interceptors: Sequence[Any] = (),
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.address = address
        self.channels = [
            PooledChannel(
                address,
                options,
                stats,
                use_stream=use_stream,
                stream_message_bytes=stream_message_bytes,
                stream_retry_s=stream_retry_s,
                interceptors=interceptors,
                credentials=credentials,
            )
            for _ in range(max(1, pool_size))
        ]
        self._next = itertools.cycle(self.channels)

    def pick(self) -> PooledChannel:
        for ch in self.channels:
            load = ch.stream_load()
            if load is not None and load < SPILL_IN_FLIGHT:
                return ch
        return next(self._next)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.channels), return_exceptions=True)
