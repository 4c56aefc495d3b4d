"""gRPC options from config, and a cache of one client channel per peer address.

A channel multiplexes every call to one address over one HTTP/2 connection, so the node keeps
exactly one per peer: the long-lived message stream and the occasional snapshot transfer share
it. Keepalive pings detect a dead peer whose TCP connection did not close.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from dengine.config import NetworkSection

__all__ = ["channel_options", "server_options", "ChannelCache"]

_ENVELOPE_BYTES = 64 * 1024  # room for batch and chunk headers above the payload limits


def channel_options(net: NetworkSection) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", net.max_message_bytes),
        ("grpc.max_receive_message_length", net.max_message_bytes),
        ("grpc.keepalive_time_ms", net.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", net.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # Not grpc.min_reconnect_backoff_ms: gRPC also takes it as the least time a connection
        # attempt may take, and a small value makes connecting fail on a busy machine.
        ("grpc.initial_reconnect_backoff_ms", net.backoff_initial_ms),
        ("grpc.max_reconnect_backoff_ms", net.backoff_max_ms),
        # Each call is its own stream; do not let gRPC pick a subchannel per call.
        ("grpc.use_local_subchannel_pool", 1),
    ]


def server_options(net: NetworkSection) -> list[tuple[str, int]]:
    opts = [
        ("grpc.max_send_message_length", net.max_message_bytes),
        ("grpc.max_receive_message_length", net.max_message_bytes),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.so_reuseport", 0),
        # Bounded work per connection: calls past this wait in the client, not in this node.
        ("grpc.max_concurrent_streams", net.max_streams_per_connection),
        # The server pings idle clients too, and drops a connection that does not answer.
        ("grpc.keepalive_time_ms", net.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", net.keepalive_timeout_ms),
    ]
    if net.max_connection_idle_ms:
        opts.append(("grpc.max_connection_idle_ms", net.max_connection_idle_ms))
    return opts


def payload_limit(net: NetworkSection) -> int:
    """Bytes of messages one batch may carry within network.max_message_bytes."""
    return max(1024, net.max_message_bytes - _ENVELOPE_BYTES)


class ChannelCache:
    """One ``grpc.aio`` channel per address, created on first use and kept until closed.

    ``credentials`` (TLS) is asked for each new channel, so a rotated certificate is used by
    the next channel made; ``server_name(address)``, when it names one, is the name the
    server's certificate must carry instead of the host dialled (a peer's member identity)."""

    def __init__(
        self,
        net: NetworkSection,
        credentials: Callable[[], grpc.ChannelCredentials] | None = None,
        server_name: Callable[[str], str | None] | None = None,
    ) -> None:
        self._options = channel_options(net)
        self._credentials = credentials
        self._server_name = server_name
        self._channels: dict[str, grpc.aio.Channel] = {}

    def get(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            if self._credentials is not None:
                name = self._server_name(address) if self._server_name is not None else None
                options = [*self._options, ("grpc.ssl_target_name_override", name)] \
                    if name else self._options
                channel = grpc.aio.secure_channel(address, self._credentials(), options=options)
            else:
                channel = grpc.aio.insecure_channel(address, options=self._options)
            self._channels[address] = channel
        return channel

    def __contains__(self, address: str) -> bool:
        return address in self._channels

    def __len__(self) -> int:
        return len(self._channels)

    async def close(self, address: str) -> None:
        channel = self._channels.pop(address, None)
        if channel is not None:
            await channel.close(grace=None)

    async def close_all(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close(grace=None)

