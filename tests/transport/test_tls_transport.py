"""The gRPC and tcp transports over mutual TLS: messages flow between members; a peer is accepted only
with a cluster-CA certificate naming the member it claims to be, and a node dials a peer only
if the server's certificate names the member it expects at that address."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from dengine.raft.messages import Message, MessageType
from dengine.security.certs import init_certs
from dengine.transport import GrpcTransport, TcpTransport


def tls_section(certs, cert_id: int) -> dict:
    return {"enabled": True, "cert_path": str(certs / f"node-{cert_id}.pem"),
            "key_path": str(certs / f"node-{cert_id}.key"), "ca_path": str(certs / "ca.pem")}


def hb(frm: int, to: int) -> Message:
    return Message(MessageType.HEARTBEAT, to=to, from_=frm, term=1)


@pytest.fixture(params=[GrpcTransport, TcpTransport], ids=["grpc", "tcp"])
def cls(request):
    return request.param


async def start(config_for, inbox_factory, node_id: int, tls: dict, cls=GrpcTransport):
    inbox = inbox_factory()
    net = {"peer_transport": "tcp" if cls is TcpTransport else "grpc"}
    t = cls(config_for(node_id, tls=tls, network=net), on_message=inbox.on_message)
    await t.start()
    return t, inbox


def test_members_talk_over_mutual_tls(run, config_for, inbox_factory, tmp_path, cls):
    certs = init_certs(tmp_path / "certs", 3)

    async def body():
        t1, _ = await start(config_for, inbox_factory, 1, tls_section(certs, 1), cls)
        t2, in2 = await start(config_for, inbox_factory, 2, tls_section(certs, 2), cls)
        t1.set_peer(2, t2.address)
        t2.set_peer(1, t1.address)
        try:
            for _ in range(100):
                t1.send([hb(1, 2)])
                await asyncio.sleep(0.05)
                if in2.messages:
                    break
            assert in2.messages and in2.messages[0].from_ == 1
            assert t2.stats.refusals == {}
            if cls is TcpTransport:
                assert t1._links[2].via == "tcp"
        finally:
            await t1.stop()
            await t2.stop()

    run(body)


def test_a_member_certificate_claiming_another_member_is_refused_and_counted(
        run, config_for, inbox_factory, tmp_path, cls, eventually):
    certs = init_certs(tmp_path / "certs", 3)

    async def body():
        # Node "3" runs with node 1's certificate: the receiver refuses its stream.
        liar, _ = await start(config_for, inbox_factory, 3, tls_section(certs, 1), cls)
        t2, in2 = await start(config_for, inbox_factory, 2, tls_section(certs, 2), cls)
        liar.set_peer(2, t2.address)
        try:
            for _ in range(20):
                liar.send([hb(3, 2)])
                await asyncio.sleep(0.05)
            await eventually(lambda: t2.refusals.counts.get("peer_identity", 0) >= 1)
            assert in2.messages == []
            assert "dengine-node-3" in liar._links[2].last_error
        finally:
            await liar.stop()
            await t2.stop()

    run(body)


def test_a_node_does_not_talk_to_a_server_whose_certificate_names_another_member(
        run, config_for, inbox_factory, tmp_path, cls):
    certs = init_certs(tmp_path / "certs", 3)

    async def body():
        t1, _ = await start(config_for, inbox_factory, 1, tls_section(certs, 1), cls)
        t3, in3 = await start(config_for, inbox_factory, 3, tls_section(certs, 3), cls)
        t1.set_peer(2, t3.address)  # node 1 believes node 2 is there; node 3 answers
        t3.set_peer(1, t1.address)
        try:
            for _ in range(20):
                t1.send([hb(1, 2)])
                await asyncio.sleep(0.05)
            assert in3.messages == [] and not t1.is_connected(2)
        finally:
            await t1.stop()
            await t3.stop()

    run(body)


def test_the_tcp_stream_checks_the_servers_member_name_and_asks_a_certificate(
        run, config_for, inbox_factory, tmp_path):
    """Beyond the gRPC side: the stream port itself verifies the server as the member dialled
    and takes no caller without a cluster certificate."""
    certs = init_certs(tmp_path / "certs", 3)

    async def body():
        t1, _ = await start(config_for, inbox_factory, 1, tls_section(certs, 1), TcpTransport)
        t3, in3 = await start(config_for, inbox_factory, 3, tls_section(certs, 3), TcpTransport)
        try:
            ctx = t1.tls_contexts.client_context()
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.open_connection("127.0.0.1", t3.stream_port, ssl=ctx,
                                              server_hostname="dengine-node-2")
            _, w = await asyncio.open_connection("127.0.0.1", t3.stream_port, ssl=ctx,
                                                 server_hostname="dengine-node-3")
            w.close()
            anon = ssl.create_default_context(cafile=str(certs / "ca.pem"))
            anon.check_hostname = False
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                r, w = await asyncio.open_connection("127.0.0.1", t3.stream_port, ssl=anon)
                w.write(b"\0\0\0\0")
                await w.drain()
                await asyncio.wait_for(r.readexactly(1), 5)
            assert in3.messages == []
        finally:
            await t1.stop()
            await t3.stop()

    run(body)


def test_the_tcp_stream_takes_rotated_certificates(run, config_for, inbox_factory, tmp_path,
                                                   eventually):
    """New certificate files (another CA) serve the next connection, both ends, no restart."""
    old = init_certs(tmp_path / "old", 3)
    new = init_certs(tmp_path / "new", 3)
    live = tmp_path / "live"
    live.mkdir()

    def install(src, ids) -> None:
        for i in ids:
            for ext in ("pem", "key"):
                (live / f"node-{i}.{ext}").write_bytes((src / f"node-{i}.{ext}").read_bytes())
        (live / "ca.pem").write_bytes((src / "ca.pem").read_bytes())

    async def body():
        install(old, (1, 2))
        tls = {**tls_section(live, 1), "reload_ms": 10}
        t1, _ = await start(config_for, inbox_factory, 1, tls, TcpTransport)
        t2, in2 = await start(config_for, inbox_factory, 2,
                              {**tls_section(live, 2), "reload_ms": 10}, TcpTransport)
        t1.set_peer(2, t2.address)
        try:
            for _ in range(200):
                t1.send([hb(1, 2)])
                await asyncio.sleep(0.02)
                if in2.messages:
                    break
            assert in2.messages
            await asyncio.sleep(0.05)
            install(new, (1, 2))  # both nodes' files and the CA replaced
            await asyncio.sleep(0.05)
            # A connection made with the new certificates is served by node 2's new ones.
            r, w = await asyncio.open_connection(
                "127.0.0.1", t2.stream_port, ssl=t1.tls_contexts.client_context(),
                server_hostname="dengine-node-2")
            peer_der = w.get_extra_info("ssl_object").getpeercert(binary_form=True)
            w.close()
            assert peer_der == ssl.PEM_cert_to_DER_cert((new / "node-2.pem").read_text())
            # And the stream itself carries on over the new certificates.
            in2.messages.clear()
            t1._links[2].task.cancel()
            t1._links.pop(2)
            for _ in range(200):
                t1.send([hb(1, 2)])
                await asyncio.sleep(0.02)
                if in2.messages:
                    break
            assert in2.messages and t2.refusals.counts == {}
        finally:
            await t1.stop()
            await t2.stop()

    run(body)
