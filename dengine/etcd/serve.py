"""The etcd API's own gRPC server on ``[etcd_api] listen``, started and stopped with the node.

The same etcd services are also registered on the node's port: a follower forwards an etcd
write there, on the leader, and gets etcd's answer back (see :mod:`dengine.etcd`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dengine.node.node import Node

__all__ = ["EtcdServer"]


class EtcdServer:
    """The etcd port of one node (TLS like the node's port when ``tls.enabled``)."""

    def __init__(self, node: Node, node_server: Any) -> None:
        import grpc

        from dengine.etcd.server import EtcdApi, add_etcd_services
        from dengine.security.tls import bind_port
        from dengine.transport.channels import server_options

        config = node.config
        self.server = grpc.aio.server(options=server_options(config.network))
        self.port = 0
        self.api = EtcdApi(node)
        add_etcd_services(self.server, self.api)
        add_etcd_services(node_server, self.api)  # the leader's side of forwarding
        self.port = bind_port(self.server, config.etcd_api.listen, config.tls, node.logger)
        host = config.etcd_api.listen.rpartition(":")[0].strip("[]") or "127.0.0.1"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        scheme = "https" if config.tls.enabled else "http"
        self.api.client_url = f"{scheme}://{host}:{self.port}"
        node.logger.info("etcd API", listen=config.etcd_api.listen, port=self.port)

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace_s: float) -> None:
        await self.server.stop(grace_s)
        await self.api.close()
