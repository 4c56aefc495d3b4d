"""The gRPC transport over mutual TLS: messages flow between members; a peer is accepted only
with a cluster-CA certificate naming the member it claims to be, and a node dials a peer only
if the server's certificate names the member it expects at that address."""

from __future__ import annotations

import asyncio

from dengine.raft.messages import Message, MessageType
from dengine.security.certs import init_certs
from dengine.transport import GrpcTransport


def tls_section(certs, cert_id: int) -> dict:
    return {"enabled": True, "cert_path": str(certs / f"node-{cert_id}.pem"),
            "key_path": str(certs / f"node-{cert_id}.key"), "ca_path": str(certs / "ca.pem")}


def hb(frm: int, to: int) -> Message:
    return Message(MessageType.HEARTBEAT, to=to, from_=frm, term=1)


async def start(config_for, inbox_factory, node_id: int, tls: dict):
    inbox = inbox_factory()
    t = GrpcTransport(config_for(node_id, tls=tls), on_message=inbox.on_message)
    await t.start()
    return t, inbox


def test_members_talk_over_mutual_tls(run, config_for, inbox_factory, tmp_path):
    certs = init_certs(tmp_path / "certs", 3)

    async def body():
        t1, _ = await start(config_for, inbox_factory, 1, tls_section(certs, 1))
        t2, in2 = await start(config_for, inbox_factory, 2, tls_section(certs, 2))
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
        finally:
            await t1.stop()
            await t2.stop()

    run(body)


def test_a_member_certificate_claiming_another_member_is_refused_and_counted(
        run, config_for, inbox_factory, tmp_path, eventually):
    certs = init_certs(tmp_path / "certs", 3)

    async def body():
        # Node "3" runs with node 1's certificate: the receiver refuses its stream.
        liar, _ = await start(config_for, inbox_factory, 3, tls_section(certs, 1))
        t2, in2 = await start(config_for, inbox_factory, 2, tls_section(certs, 2))
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
        run, config_for, inbox_factory, tmp_path):
    certs = init_certs(tmp_path / "certs", 3)

    async def body():
        t1, _ = await start(config_for, inbox_factory, 1, tls_section(certs, 1))
        t3, in3 = await start(config_for, inbox_factory, 3, tls_section(certs, 3))
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
