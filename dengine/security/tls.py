"""TLS for every link, mutual TLS between peers, certificate identity bound to the member id.

Theory of operation
-------------------
A node serves its peers and its clients on one gRPC port, so it has one server certificate
(``tls.cert_path`` / ``tls.key_path``). With ``tls.enabled`` the port speaks only TLS:

* Server side (:func:`server_credentials`). The server presents the node certificate and
  requires one of every caller: it must chain to the cluster CA (``tls.ca_path``) or to the
  client CA (``tls.client_ca_path``, by default the same file). gRPC checks the chain and the
  validity dates during the handshake; a caller with no certificate, one of another CA, or an
  expired one never gets a connection (its call fails UNAVAILABLE, the handshake refused).
  Client certificates cannot be optional on this port: grpcio's server either requires a
  certificate or never asks for one, and peers on the same port must present theirs. A bearer
  token, when a client sends one, names the identity instead of the certificate's common
  name (``dengine.security.auth``).
* The client-only port (``cluster.client_listen_addr``, optional): a second server with the
  client API and no peer service, whose TLS asks no certificate of callers
  (``client_certificates=False``); with auth on, a caller there is named by its token.
* Peer identity (:class:`PeerTls.check_peer`). A peer stream must come with a certificate
  issued by the cluster CA itself (checked again here, so a client CA's certificate never
  passes as a peer) whose subject alternative names include ``dengine-node-<id>`` for the
  member id the batch claims (:func:`peer_san`). Anything else is refused, counted and logged
  with the caller's address before any of its messages is decoded. Every message of a batch
  must carry the batch's sender id, so the check covers each message.
* Client side of peer links (:meth:`PeerTls.channel_credentials`). A node dials its peers with
  its node certificate as the client certificate and verifies theirs against the cluster CA;
  the name checked is ``dengine-node-<id>`` of the member expected at that address (the
  transport sets ``grpc.ssl_target_name_override``), so a server with another member's
  certificate is not taken for this one. A stream's certificate is checked on its first
  batch and again only if a later batch claims another sender.
* Clients (:func:`client_credentials`): the CA to trust, optionally a client certificate and
  key (its common name is the caller's identity for authorization), optionally a bearer
  token sent as ``authorization: Bearer <token>``.

Rotation. The files are watched (:class:`WatchedFiles`): their size and modification time are
checked at most every ``tls.reload_ms``, and a change is read again. The server asks gRPC for
its certificates through a fetcher gRPC calls before each new connection's handshake, so a
replaced certificate or CA serves the next connection with no restart; peer channels are
rebuilt with the new certificate on their next connection. A file that fails to load (half
written, a key that does not match) keeps the previous, working set and logs why.

Insecure mode stays the default for loopback development; :func:`warn_if_exposed` logs one
warning when a node without TLS listens on a non-loopback address.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from dengine.errors import ConfigError, Unavailable

__all__ = [
    "PEER_SAN_PREFIX",
    "peer_san",
    "WatchedFiles",
    "PeerTls",
    "server_credentials",
    "client_credentials",
    "warn_if_exposed",
    "bind_port",
    "peer_identity",
]

#: A node's certificate names itself ``dengine-node-<id>`` (a DNS subject alternative name).
PEER_SAN_PREFIX = "dengine-node-"


def peer_san(node_id: int) -> str:
    """The subject alternative name a certificate of member ``node_id`` carries."""
    return f"{PEER_SAN_PREFIX}{node_id}"


class WatchedFiles:
    """A set of files read together, re-read when one of them changes on disk.

    ``check_s`` bounds how often the files are stat-ed; ``load`` turns the raw bytes into
    whatever the caller keeps (and raises when they do not make sense, keeping the old set).
    """

    def __init__(
        self,
        paths: Sequence[str],
        load: Callable[[tuple[bytes, ...]], Any],
        *,
        check_s: float = 2.0,
        log: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.paths = tuple(paths)
        self._load = load
        self.check_s = check_s
        self.logger = log
        self.clock = clock
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self.value = load(self._read())
        self.generation = 0
        self._checked = clock()

    def _stat(self) -> tuple[tuple[int, int], ...]:
        out = []
        for p in self.paths:
            try:
                st = os.stat(p)
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((0, -1))
        return tuple(out)

    def _read(self) -> tuple[bytes, ...]:
        return tuple(Path(p).read_bytes() for p in self.paths)

    def poll(self) -> bool:
        """Re-read the files if one changed since the last read; True when a new set took
        effect. Cheap when called often: at most one ``stat`` round per ``check_s``."""
        now = self.clock()
        with self._lock:
            if now - self._checked < self.check_s:
                return False
            self._checked = now
            stamp = self._stat()
            if stamp == self._stamp:
                return False
            try:
                value = self._load(self._read())
            except Exception as e:  # noqa: BLE001 - keep serving with the previous set
                if self.logger is not None:
                    self.logger.warning("certificate files changed but do not load; keeping the "
                                     "previous ones", paths=list(self.paths), error=str(e))
                return False
            self._stamp, self.value = stamp, value
            self.generation += 1
        if self.logger is not None:
            self.logger.info("reloaded certificate files", paths=list(self.paths))
        return True


def _require(tls: Any) -> None:
    for key in ("cert_path", "key_path", "ca_path"):
        if not getattr(tls, key):
            raise ConfigError(f"tls.{key}", "", "a PEM file path when tls.enabled is true")


def _ca_bundle(tls: Any) -> list[str]:
    paths = [tls.ca_path]
    if tls.client_ca_path and tls.client_ca_path != tls.ca_path:
        paths.append(tls.client_ca_path)
    return paths


def server_credentials(tls: Any, log: Any = None, *,
                       client_certificates: bool = True) -> grpc.ServerCredentials:
    """Credentials for the node's server; the files are re-read when they change. With
    ``client_certificates`` off (the client-only port) no certificate is asked of a caller."""
    _require(tls)
    paths = [tls.cert_path, tls.key_path, *_ca_bundle(tls)]

    def load(raw: tuple[bytes, ...]) -> Any:
        cert, key, *cas = raw
        _check_pair(cert, key)
        return grpc.ssl_server_certificate_configuration([(key, cert)], b"\n".join(cas))

    files = WatchedFiles(paths, load, check_s=tls.reload_ms / 1000, log=log)

    def fetch() -> Any:
        # Called by gRPC before each new connection's handshake: None keeps the current set.
        return files.value if files.poll() else None

    return grpc.dynamic_ssl_server_credentials(
        files.value, fetch, require_client_authentication=client_certificates)


def _check_pair(cert_pem: bytes, key_pem: bytes) -> None:
    """Refuse a certificate and key that do not belong together (a half-done rotation)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, None)
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if cert.public_key().public_bytes(enc, pub) != key.public_key().public_bytes(enc, pub):
        raise ValueError("the certificate does not match the private key")


class PeerTls:
    """The peer side of a node's TLS: credentials to dial peers, and the identity check of a
    peer's certificate against the cluster CA and the member id it claims."""

    def __init__(self, tls: Any, log: Any = None) -> None:
        _require(tls)
        self.logger = log

        def load(raw: tuple[bytes, ...]) -> Any:
            from cryptography import x509

            cert, key, ca = raw
            _check_pair(cert, key)
            cas = x509.load_pem_x509_certificates(ca)
            return (grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                                 certificate_chain=cert), cas)

        self.files = WatchedFiles([tls.cert_path, tls.key_path, tls.ca_path], load,
                                  check_s=tls.reload_ms / 1000, log=log)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Credentials for a new channel to a peer (the newest certificate on disk)."""
        self.files.poll()
        return self.files.value[0]

    def check_peer(self, context: Any, sender: int) -> str | None:
        """Why the caller of ``context`` may not speak for member ``sender``; None if it may."""
        self.files.poll()
        auth = _auth_context(context)
        pems = auth.get("x509_pem_cert") or []
        if not pems:
            return "no client certificate (peer links are mutual TLS)"
        from cryptography import x509

        try:
            cert = x509.load_pem_x509_certificate(pems[0])
        except ValueError as e:
            return f"unreadable peer certificate: {e}"
        if not any(_issued_by(cert, ca) for ca in self.files.value[1]):
            return "the peer certificate is not issued by the cluster CA"
        names = _dns_names(cert)
        if peer_san(sender) not in names:
            shown = ", ".join(sorted(names)) or "none"
            return (f"the peer certificate names {shown}, not {peer_san(sender)} (the member "
                    f"id {sender} the message claims)")
        return None


def _auth_context(context: Any) -> dict[str, list[bytes]]:
    try:
        return dict(context.auth_context() or {})
    except Exception:  # noqa: BLE001 - no TLS on this call
        return {}


def _issued_by(cert: Any, ca: Any) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # noqa: BLE001 - ValueError, TypeError, InvalidSignature
        return False
    return True


def _dns_names(cert: Any) -> set[str]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(san.get_values_for_type(x509.DNSName))


def peer_identity(context: Any) -> str | None:
    """The common name of the caller's verified client certificate, or None."""
    names = _auth_context(context).get("x509_common_name") or []
    return names[0].decode(errors="replace") if names else None


def client_credentials(
    cacert: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    token: str | None = None,
) -> grpc.ChannelCredentials:
    """Channel credentials of a client: trust ``cacert`` (the system roots when None), present
    ``cert``/``key`` when given, send ``token`` as a bearer token when given."""
    if bool(cert) != bool(key):
        raise ConfigError("--cert/--key", cert or key, "both a certificate and its key, or neither")
    creds = grpc.ssl_channel_credentials(
        root_certificates=Path(cacert).read_bytes() if cacert else None,
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None,
    )
    if token:
        creds = grpc.composite_channel_credentials(
            creds, grpc.access_token_call_credentials(token))
    return creds


def _is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_exposed(tls: Any, listen: str, log: Any) -> bool:
    """Log one warning when a node without TLS listens beyond loopback; True if it did."""
    if tls.enabled or _is_loopback(listen):
        return False
    if log is not None:
        log.warning("listening on a non-loopback address without TLS: peers and clients are "
                    "not authenticated and traffic is readable; set tls.enabled (see "
                    "'dengine certs init')", listen=listen)
    return True


def bind_port(server: grpc.aio.Server, listen: str, tls: Any, log: Any = None, *,
              client_certificates: bool = True) -> int:
    """Bind the node's server to ``listen``: TLS when ``tls.enabled`` (else plain, with a
    warning when the address is not loopback); the port it got. ``client_certificates`` off:
    TLS that asks no certificate of callers (the client-only port)."""
    try:
        if tls.enabled:
            port = server.add_secure_port(listen, server_credentials(
                tls, log, client_certificates=client_certificates))
        else:
            warn_if_exposed(tls, listen, log)
            port = server.add_insecure_port(listen)
    except RuntimeError as e:
        raise Unavailable(f"cannot listen on {listen}: {e}") from e
    if not port:
        raise Unavailable(f"cannot listen on {listen} (address in use?)")
    return port
