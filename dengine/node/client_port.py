"""The optional client-only port (``cluster.client_listen_addr``).

Theory of operation
-------------------
Peers and clients share the node's port, and with TLS on that port demands a certificate of
every caller (peer links are mutual TLS, and grpcio's server cannot make a certificate
optional). A deployment whose clients have no certificates gives each node a second port:

* It is a server of its own with the client API only (``Kv``, ``Cluster``, ``Watch``,
  ``Lease``: the very servicers of the node's port, so one set of admission limits and one
  authorization check); the peer service is not on it, so peer links stay mutual TLS on the
  node's port whatever reaches this one.
* With ``tls.enabled`` it speaks TLS with the node's certificate (reloaded like the node's
  port) and asks no certificate of the caller. With ``auth.enabled`` a caller there is named
  by its bearer token; a call without one is UNAUTHENTICATED.
* Leader hints (``NotLeader``, ``Status``) name members' node ports, which a caller without a
  certificate cannot use: such a client is given every member's client port as endpoints and
  finds the leader among them again after a redirect it cannot follow.
* It has the standard gRPC health service of its own, saying what the node's port says for
  ``dengine.v1.Kv`` and overall (``dengine.node.health``); the peer service is not there.

Left empty (the default) the node has one port, as before.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ClientPort"]


class ClientPort:
    """The second gRPC server of a node: the client API on ``cluster.client_listen_addr``."""

    def __init__(self, config: Any) -> None:
        import grpc
        from grpc_health.v1 import health, health_pb2_grpc

        from dengine.transport.channels import server_options

        self.config = config
        self.server = grpc.aio.server(options=server_options(config.network))
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = 0

    def bind(self, log: Any = None) -> int:
        """Bind the port (after the services are registered); the port number it got."""
        from dengine.security.tls import bind_port

        listen = self.config.cluster.client_listen_addr
        self.port = bind_port(self.server, listen, self.config.tls, log,
                              client_certificates=False)
        if log is not None:
            log.info("client port", listen=listen, port=self.port,
                     tls=bool(self.config.tls.enabled))
        return self.port

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace_s: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
