"""A development certificate authority: ``dengine certs init --nodes 3 --out DIR``.

It writes, into ``DIR``: ``ca.pem`` / ``ca.key`` (a self-signed CA), ``node-<id>.pem`` /
``node-<id>.key`` for each node (subject alternative names ``dengine-node-<id>``, which peers
check against the member id a message claims, plus the hosts given: ``127.0.0.1`` and
``localhost`` by default), and one certificate per client name (``client.pem`` /
``client.key`` by default; the common name is the identity that roles are given to). Keys are
ECDSA P-256, written with mode 0600. Good for development and tests; a production cluster
uses its own CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dengine.security.tls import peer_san

__all__ = ["Authority", "init_certs", "DEFAULT_HOSTS"]

DEFAULT_HOSTS = ("127.0.0.1", "localhost")


@dataclass
class Authority:
    """A CA key and certificate that issue node and client certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "dengine development CA", days: int = 3650) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        return cls(key, cert)

    @classmethod
    def load(cls, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> Authority:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cls(key, cert)

    def issue(
        self,
        common_name: str,
        *,
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
        days: float = 825,
        not_before: dt.datetime | None = None,
    ) -> tuple[bytes, bytes]:
        """A new key and a certificate for it, as PEM ``(cert, key)``; usable by a server and
        a client alike (peers are both)."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or (_now() - dt.timedelta(minutes=5))
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
        )  # fmt: skip
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    def write(self, out: Path) -> None:
        _write(out / "ca.pem", self.cert.public_bytes(serialization.Encoding.PEM))
        _write(out / "ca.key", _key_pem(self.key), private=True)


def init_certs(
    out: str | os.PathLike[str],
    nodes: int | Sequence[int],
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    clients: Sequence[str] = ("client",),
    authority: Authority | None = None,
) -> Path:
    """Write a CA, node certificates (ids ``1..nodes`` or the ids given) and client
    certificates into ``out``; returns ``out``. An existing CA in ``out`` is reused, so more
    nodes or clients can be added later."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    if authority is None:
        if (path / "ca.pem").exists() and (path / "ca.key").exists():
            authority = Authority.load(path / "ca.pem", path / "ca.key")
        else:
            authority = Authority.create()
            authority.write(path)
    dns = [h for h in hosts if not _is_ip(h)]
    ips = [h for h in hosts if _is_ip(h)]
    ids = range(1, nodes + 1) if isinstance(nodes, int) else nodes
    for i in ids:
        cert, key = authority.issue(peer_san(i), dns=[peer_san(i), *dns], ips=ips)
        _write(path / f"node-{i}.pem", cert)
        _write(path / f"node-{i}.key", key, private=True)
    for name in clients:
        cert, key = authority.issue(name)
        _write(path / f"{name}.pem", cert)
        _write(path / f"{name}.key", key, private=True)
    return path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write atomically (a reloading node never reads half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
