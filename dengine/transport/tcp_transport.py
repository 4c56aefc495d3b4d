"""The tcp peer transport: Raft message batches on a length-prefixed TCP stream, gRPC beside it.

Theory of operation
-------------------
A grpc.aio stream message costs several times the CPU of a plain asyncio stream write and read
(``benches/grpc_hop.py``), and every Raft message between peers paid it. :class:`TcpTransport`
is a :class:`~dengine.transport.grpc_transport.GrpcTransport` whose per-peer links carry the
message batches on their own TCP connection instead of a ``RaftPeer.Stream`` call. Everything
else is the gRPC transport's, unchanged: snapshots (``InstallSnapshot``), the health service,
the client API on the same server, peers, counters, the refusal log and the fault switch.

Finding the stream. Member addresses stay the gRPC ones. Before each connection the link asks
the peer's gRPC server ``RaftPeer.StreamPort`` (one unary call per connection, none per
message) and dials that port on the host of the member address. So the stream may listen on
any free port (``network.peer_stream_port`` 0, as tests need), a restarted peer on a new port
is found again, and the answer comes over the peer's authenticated gRPC channel. A peer that
answers 0 or does not know the call (the grpc transport, an older node) gets the
``RaftPeer.Stream`` call instead, so a cluster can move from one transport to the other a node
at a time; every node serves both.

Frames. Each frame is a 4-byte big-endian length and that many bytes of a protobuf message:
``RaftBatch`` from the dialling node, ``RaftBatchAck`` back. The first batch is a hello (the
cluster id and the sender, no messages); the receiver answers with an ack, empty when it
accepts the stream (the sender then counts as connected, as on ``STREAM_UP_KEY`` for gRPC), or
with the refusal's text and ``sender_removed``, and closes. After that every batch is checked
exactly as on the gRPC stream (the same :meth:`RaftPeerService._refusal` and ``_deliver``: the
cluster id, a known sender, the TLS identity of the sender it claims, each message decoded
within 2^63 and from/to whom the batch says), with the same counters and refusal reasons.
A frame longer than ``network.max_message_bytes`` (the gRPC limit; the hello: 64 KiB) is
refused as ``oversized_frame``, one that is not a protobuf message as ``malformed_frame``, a
hello that does not come within ``network.connect_timeout_ms`` as ``no_hello``; each closes
that connection and nothing else.

TLS. With ``tls.enabled`` the stream is mutual TLS with the node's certificate files: the
receiver requires a certificate of the cluster CA and checks it against the sender claimed
(``dengine-node-<id>``, :meth:`PeerTls.check_peer`); the sender verifies the receiver's against
the cluster CA under the name ``dengine-node-<peer>``. Rotation: the files are watched as for
gRPC; a changed set gives the next connection (both ends) a context with the new files.
Without TLS the stream is plain, with the same warning as gRPC when not on loopback.

Sending and reconnecting are the gRPC link's (:class:`_PeerLink`): the same queue bounds,
batches up to the payload limit, exponential backoff with jitter, ``on_unreachable``, the
longest backoff after a refusal, and the node told when a peer says it was removed.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError as ProtobufDecodeError

from dengine.errors import RemoteProtocolError, Unavailable
from dengine.security.tls import PeerTls, peer_san, warn_if_exposed
from dengine.transport.grpc_transport import GrpcTransport, _cancel_all, _PeerLink
from dengine.transport.service import SenderRemoved
from dengine.transport.status import from_rpc_error
from dengine.v1 import raft_pb2, raft_pb2_grpc

__all__ = ["TcpTransport", "FRAME_HEADER"]

#: A frame's header: the length of the protobuf message that follows, 4 bytes big-endian.
FRAME_HEADER = struct.Struct(">I")
_HEADER_BYTES = FRAME_HEADER.size
#: The largest first frame (the hello) a connection may send.
HELLO_MAX_BYTES = 64 * 1024


class FrameError(Exception):
    """A frame that breaks the protocol; ``kind`` is its refusal reason."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def frame(message: Any) -> bytes:
    """One protobuf message as a frame."""
    data = message.SerializeToString()
    return FRAME_HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader, limit: int) -> bytes:
    """The payload of the next frame; FrameError when longer than ``limit``;
    IncompleteReadError at the end of the stream."""
    (n,) = FRAME_HEADER.unpack(await reader.readexactly(_HEADER_BYTES))
    if n > limit:
        raise FrameError("oversized_frame", f"a frame of {n} bytes, over the limit of {limit} "
                                            "(network.max_message_bytes)")
    return await reader.readexactly(n) if n else b""


def _parse(cls: Any, data: bytes) -> Any:
    msg = cls()
    try:
        msg.ParseFromString(data)
    except (ProtobufDecodeError, ValueError) as e:
        raise FrameError("malformed_frame", f"a frame that is no {cls.__name__}: {e}") from e
    return msg


def _keepalive(sock: Any, net: Any) -> None:
    """Detect a dead peer whose connection did not close, as gRPC's keepalive pings do."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle = max(1, net.keepalive_time_ms // 1000)
        interval = max(1, net.keepalive_timeout_ms // 3000)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    except OSError:
        pass


class _StreamContext:
    """What the gRPC service's checks read of a call, for one TCP connection: the peer's
    address and, under TLS, its verified certificate (as gRPC's auth context names it)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        self._peer = f"tcp:{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"
        self._auth: dict[str, list[bytes]] = {}
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            der = ssl_object.getpeercert(binary_form=True)
            if der:
                self._auth["x509_pem_cert"] = [ssl.DER_cert_to_PEM_cert(der).encode()]

    def peer(self) -> str:
        return self._peer

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth


class _TlsContexts:
    """SSL contexts of the stream, both ends, rebuilt when the watched certificate files change
    (the same files and checks as the gRPC side: :class:`PeerTls`)."""

    def __init__(self, tls_config: Any, peer_tls: PeerTls, log: Any) -> None:
        self.cfg = tls_config
        self.peer_tls = peer_tls
        self.logger = log
        self._generation = -1
        self.client: ssl.SSLContext | None = None
        self.server_ctx: ssl.SSLContext | None = None
        self.refresh()
        assert self.server_ctx is not None
        #: The context the listener was made with; its handshakes switch to the newest one.
        self.listener: ssl.SSLContext = self.server_ctx
        self.listener.sni_callback = self._on_handshake

    def _build(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        cfg = self.cfg
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.minimum_version = ssl.TLSVersion.TLSv1_2
        client.load_cert_chain(cfg.cert_path, cfg.key_path)
        client.load_verify_locations(cafile=cfg.ca_path)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.minimum_version = ssl.TLSVersion.TLSv1_2
        server.load_cert_chain(cfg.cert_path, cfg.key_path)
        # Only the cluster CA: a client CA's certificate never passes as a peer here.
        server.load_verify_locations(cafile=cfg.ca_path)
        server.verify_mode = ssl.CERT_REQUIRED
        return client, server

    def refresh(self) -> None:
        """Take a changed set of files (at most one stat round per tls.reload_ms)."""
        self.peer_tls.files.poll()
        generation = self.peer_tls.files.generation
        if generation == self._generation:
            return
        try:
            self.client, server = self._build()
        except (OSError, ssl.SSLError, ValueError) as e:
            if self.client is None:
                raise
            self.logger.warning("peer stream certificates do not load; keeping the previous "
                                "ones", error=str(e))
            self._generation = generation
            return
        if self.server_ctx is not None:
            server.sni_callback = self._on_handshake
        self.server_ctx = server
        self._generation = generation

    def _on_handshake(self, sslobj: ssl.SSLObject, _name: str | None, ctx: ssl.SSLContext) -> None:
        # Called in every server handshake (with or without a name sent): serve it with the
        # newest certificates.
        self.refresh()
        if self.server_ctx is not None and self.server_ctx is not ctx:
            sslobj.context = self.server_ctx

    def client_context(self) -> ssl.SSLContext:
        self.refresh()
        assert self.client is not None
        return self.client


class _TcpLink(_PeerLink):
    """The sending side toward one peer on the tcp stream (the gRPC stream when the peer has
    none)."""

    t: TcpTransport
    #: How the last stream went: "tcp", or "grpc" to a peer with no tcp stream.
    via = ""

    async def _one_stream(self) -> bool:
        t = self.t
        port = await self._stream_port()
        if port is None:
            return False
        if port == 0:  # the peer runs the grpc transport: use its Stream call
            self.via = "grpc"
            return await super()._one_stream()
        self.via = "tcp"
        self.sent_batches = 0
        self.refused = False
        self.told_removed = False
        net = t.config.network
        writer: asyncio.StreamWriter | None = None
        reader_task: asyncio.Task[None] | None = None
        stream_no = self.stream_no
        try:
            host = self.address.rpartition(":")[0].strip("[]")
            ssl_ctx = t.tls_contexts.client_context() if t.tls_contexts is not None else None
            async with asyncio.timeout(net.connect_timeout_ms / 1000):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=ssl_ctx,
                    server_hostname=peer_san(self.peer_id) if ssl_ctx is not None else None)
                _keepalive(writer.get_extra_info("socket"), net)
                hello = raft_pb2.RaftBatch(cluster_id=t.cluster_id)
                setattr(hello, "from", t.node_id)
                writer.write(frame(hello))
                ack = _parse(raft_pb2.RaftBatchAck, await read_frame(reader, t.frame_limit))
            if ack.error:
                self.told_removed = ack.sender_removed
                self._on_failure(RemoteProtocolError(self.peer_id, ack.error))
                return False
            self.connected = True
            reader_task = asyncio.get_running_loop().create_task(
                self._read_acks(reader, stream_no), name=f"dengine-peer-acks-{self.peer_id}")
            write = writer.write
            transport = writer.transport
            async for batch in self._batches(stream_no):
                write(frame(batch))
                if transport.get_write_buffer_size() > net.max_message_bytes:
                    await writer.drain()
            if reader_task.done() and not reader_task.cancelled():
                reader_task.result()
            self.last_error = self.last_error or "the peer closed the stream"
        except TimeoutError:
            self._on_failure(Unavailable(
                f"no stream to {host}:{port} (node {self.peer_id}) within the timeout"))
        except FrameError as e:
            self._on_failure(RemoteProtocolError(self.peer_id, str(e)))
        except RemoteProtocolError as e:
            self._on_failure(e)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as e:
            self._on_failure(Unavailable(f"peer stream to {host}:{port}: {e!r}"))
        finally:
            self.stream_no += 1
            self.wake.set()
            if reader_task is not None:
                reader_task.cancel()
            if writer is not None:
                writer.close()
        return self.connected

    async def _read_acks(self, reader: asyncio.StreamReader, stream_no: int) -> None:
        """The receiver writes only to refuse (then closes): end the stream when it does."""
        try:
            while True:
                ack = _parse(raft_pb2.RaftBatchAck, await read_frame(reader, self.t.frame_limit))
                if ack.error:
                    self.last_error = ack.error
                    if ack.sender_removed:
                        self.told_removed = True
                    raise RemoteProtocolError(self.peer_id, ack.error)
        except (asyncio.IncompleteReadError, OSError, ssl.SSLError):
            self.last_error = "the peer closed the stream"
        finally:
            if self.stream_no == stream_no:
                self.stream_no += 1  # the writer's batches generator returns
                self.wake.set()

    async def _stream_port(self) -> int | None:
        """The peer's stream port (0: it has none); None when its gRPC server did not answer."""
        t = self.t
        stub = raft_pb2_grpc.RaftPeerStub(t.channels.get(self.address))
        try:
            reply = await stub.StreamPort(raft_pb2.StreamPortRequest(),
                                          timeout=t.config.network.connect_timeout_ms / 1000)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                return 0
            self._on_failure(from_rpc_error(e), e)
            return None
        return int(reply.port)


class TcpTransport(GrpcTransport):
    """The gRPC transport with the peer message stream on TCP (``network.peer_transport``
    ``tcp``). Same constructor; :attr:`stream_port` is the port the stream listens on."""

    link_class = _TcpLink

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The stream's port once started (told to peers by ``RaftPeer.StreamPort``).
        self.stream_port = 0
        self.frame_limit = self.config.network.max_message_bytes
        self.tls_contexts = (
            _TlsContexts(self.config.tls, self.tls, self.logger) if self.tls is not None
            else None)
        self._listener: asyncio.Server | None = None
        #: Open incoming streams: their handlers' tasks and connections.
        self._conns: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        host = self.config.cluster.listen_addr.rpartition(":")[0].strip("[]") or None
        ssl_ctx = self.tls_contexts.listener if self.tls_contexts is not None else None
        if ssl_ctx is None:
            warn_if_exposed(self.config.tls, f"{host}:{self.config.network.peer_stream_port}",
                            self.logger)
        try:
            self._listener = await asyncio.start_server(
                self._serve_conn, host, self.config.network.peer_stream_port, ssl=ssl_ctx,
                ssl_handshake_timeout=(self.config.network.connect_timeout_ms / 1000
                                       if ssl_ctx is not None else None),
                limit=2 ** 16)
        except OSError as e:
            raise Unavailable(f"cannot listen for the peer stream on {host}:"
                              f"{self.config.network.peer_stream_port}: {e}") from e
        self.stream_port = self._listener.sockets[0].getsockname()[1]
        await super().start()
        self.logger.info("peer stream listening", port=self.stream_port,
                         tls=ssl_ctx is not None)

    async def stop(self, grace_s: float = 0.5) -> None:
        if self._stopped:
            return
        if self._listener is not None:
            self._listener.close()
        # Not cancelled (asyncio reports a cancelled connection handler as an error): their
        # connections are cut, so their reads end and they return.
        for writer in self._conns.values():
            writer.transport.abort()
        if self._conns:
            _, pending = await asyncio.wait(list(self._conns), timeout=2.0)
            await _cancel_all(list(pending), self.logger)
        await super().stop(grace_s)

    # -- receiving --------------------------------------------------------------------------

    async def _serve_conn(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns[task] = writer
        ctx = None
        try:
            ctx = _StreamContext(writer)
            _keepalive(writer.get_extra_info("socket"), self.config.network)
            await self._receive(reader, writer, ctx)
        except FrameError as e:
            self.stats.batches_refused += 1
            self.service._refuse(e.kind, ctx, str(e))
        except (asyncio.IncompleteReadError, OSError, ssl.SSLError):
            pass  # the peer went away; its link reconnects
        except Exception:  # noqa: BLE001 - one connection's trouble never reaches the node
            self.logger.exception("peer stream failed", peer_addr=ctx.peer() if ctx else "?")
        finally:
            if task is not None:
                self._conns.pop(task, None)
            writer.close()

    async def _receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       ctx: _StreamContext) -> None:
        limit, svc, stats, faults = self.frame_limit, self.service, self.stats, self._faults
        try:
            async with asyncio.timeout(self.config.network.connect_timeout_ms / 1000):
                # Before a sender is known, only a small frame: nobody unchecked makes this
                # node hold max_message_bytes per connection.
                hello = _parse(raft_pb2.RaftBatch, await read_frame(reader, HELLO_MAX_BYTES))
        except TimeoutError:
            raise FrameError("no_hello", "no hello within network.connect_timeout_ms") from None
        verified = 0  # the sender whose certificate was checked (once per stream)
        batch = hello  # a hello is a batch (the sender's own carry no messages)
        while True:
            # Every batch is checked as on the gRPC stream (a sender removed meanwhile is
            # refused); the certificate again only when a batch claims another sender.
            sender = getattr(batch, "from")
            refusal = svc._refusal(batch.cluster_id, sender, ctx, sender != verified)
            if refusal is not None:
                await self._refuse_stream(writer, refusal)
                return
            if not verified:
                writer.write(frame(raft_pb2.RaftBatchAck()))  # the stream is up
            verified = sender
            if batch.messages and not faults.blocks_from(sender):
                stats.batches_received += 1
                svc._deliver(batch, sender, ctx)
            batch = _parse(raft_pb2.RaftBatch, await read_frame(reader, limit))

    async def _refuse_stream(self, writer: asyncio.StreamWriter, refusal: Exception) -> None:
        self.stats.batches_refused += 1
        writer.write(frame(raft_pb2.RaftBatchAck(
            error=str(refusal), sender_removed=isinstance(refusal, SenderRemoved))))
        await writer.drain()


def make_transport(config: Any, **kwargs: Any) -> GrpcTransport:
    """The peer transport ``network.peer_transport`` names."""
    cls: Callable[..., GrpcTransport] = (
        TcpTransport if config.network.peer_transport == "tcp" else GrpcTransport)
    return cls(config, **kwargs)
