"""TLS pieces without a cluster: certs init, watched files, the exposure warning, pairs."""

from __future__ import annotations

import asyncio
import os

import grpc
import pytest

from dengine.cli import main as cli_main
from dengine.config import build_config
from dengine.errors import ConfigError
from dengine.security.certs import Authority, init_certs
from dengine.security.tls import WatchedFiles, _check_pair, bind_port, peer_san, warn_if_exposed


class Recorder:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict]] = []
        self.infos: list[str] = []

    def warning(self, event: str, **kw) -> None:
        self.warnings.append((event, kw))

    def info(self, event: str, **kw) -> None:
        self.infos.append(event)


def test_certs_init_writes_a_ca_node_and_client_certificates(tmp_path, capsys):
    from cryptography import x509

    assert cli_main(["certs", "init", "--nodes", "2", "--out", str(tmp_path),
                     "--client", "alice"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["alice.key", "alice.pem", "ca.key", "ca.pem", "node-1.key", "node-1.pem",
                     "node-2.key", "node-2.pem"]
    assert os.stat(tmp_path / "node-1.key").st_mode & 0o077 == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "node-2.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert peer_san(2) in san.get_values_for_type(x509.DNSName)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    # Run again for one more node: the same CA issues it.
    init_certs(tmp_path, [3])
    x509.load_pem_x509_certificate((tmp_path / "node-3.pem").read_bytes()) \
        .verify_directly_issued_by(ca)


def test_watched_files_reload_on_change_and_keep_the_old_set_when_the_new_fails(tmp_path):
    now = [0.0]
    f = tmp_path / "a"
    f.write_text("1")
    rec = Recorder()

    def load(raw):
        if raw[0] == b"bad":
            raise ValueError("not a number")
        return int(raw[0])

    w = WatchedFiles([str(f)], load, check_s=1.0, log=rec, clock=lambda: now[0])
    assert w.value == 1
    f.write_text("22")
    assert not w.poll() and w.value == 1  # checked at most once per check_s
    now[0] = 2
    assert w.poll() and w.value == 22
    f.write_text("bad")
    now[0] = 4
    assert not w.poll() and w.value == 22
    assert rec.warnings and "do not load" in rec.warnings[0][0]


def test_a_certificate_and_a_key_that_do_not_match_are_refused():
    ca = Authority.create()
    cert, _ = ca.issue("a")
    _, other_key = ca.issue("b")
    with pytest.raises(ValueError, match="does not match"):
        _check_pair(cert, other_key)


def test_a_node_without_tls_warns_once_when_it_listens_beyond_loopback():
    tls = build_config({}).tls
    for addr, warned in (("127.0.0.1:1", False), ("localhost:1", False), ("[::1]:1", False),
                         ("0.0.0.0:1", True), ("10.1.2.3:1", True)):
        rec = Recorder()
        assert warn_if_exposed(tls, addr, rec) is warned
        assert len(rec.warnings) == int(warned)

    async def bind(addr: str) -> Recorder:
        rec = Recorder()
        server = grpc.aio.server()
        bind_port(server, addr, tls, rec)
        await server.stop(None)
        return rec

    assert len(asyncio.run(bind("0.0.0.0:0")).warnings) == 1
    assert asyncio.run(bind("127.0.0.1:0")).warnings == []


def test_tls_enabled_needs_its_files():
    with pytest.raises(ConfigError) as info:
        build_config({"tls": {"enabled": True, "cert_path": "x.pem"}})
    assert info.value.key == "tls.enabled"
    with pytest.raises(ConfigError) as info:
        build_config({"auth": {"enabled": True}})
    assert info.value.key == "auth.users_path"
