"""NodeBuilder: a :class:`~dengine.node.node.Node` from a config, with sensible defaults.

``NodeBuilder(config).build()`` gives a node with the ``rocksdb`` log store, the KV state
machine on ``rocksdb`` and the gRPC transport (or the tcp one: ``network.peer_transport``), serving the client API on the same port as the
peer traffic. Each part can be replaced: ``.log_store(store)``, ``.state_machine(sm)``,
``.memory_transport(network)`` for tests, ``.logger(log)``, ``.seed(n)`` for a reproducible
election schedule, ``.serve_clients(False)`` to serve no client API (embedded use).

The data directory is checked first (``NODE`` record: another cluster's or node's directory is
refused), then the stores are opened beneath it; a new cluster's log gets its first entry here
(see :mod:`dengine.node.bootstrap`).
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

from dengine.config import Config
from dengine.node import bootstrap, lost_data
from dengine.node.members import MemberBook
from dengine.node.node import Node
from dengine.observability.logging import node_logger
from dengine.statemachine import open_kv
from dengine.storage import open_log_store
from dengine.storage.snapshot import SnapshotStore

__all__ = ["NodeBuilder"]


class NodeBuilder:
    """Collects a node's parts; :meth:`build` opens storage and returns an unstarted Node."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._log_store: Any = None
        self._sm: Any = None
        self._network: Any = None
        self._logger: Any = None
        self._seed: int | None = None
        self._serve_clients = True

    def log_store(self, store: Any) -> NodeBuilder:
        self._log_store = store
        return self

    def state_machine(self, sm: Any) -> NodeBuilder:
        self._sm = sm
        return self

    def memory_transport(self, network: Any) -> NodeBuilder:
        """Use the in-memory transport on ``network`` (tests); no client API is served."""
        self._network = network
        self._serve_clients = False
        return self

    def logger(self, logger: Any) -> NodeBuilder:
        self._logger = logger
        return self

    def seed(self, seed: int) -> NodeBuilder:
        self._seed = seed
        return self

    def serve_clients(self, serve: bool) -> NodeBuilder:
        self._serve_clients = serve
        return self

    def build(self) -> Node:
        cfg = self.config
        cl = cfg.cluster
        log = self._logger or node_logger(cl.node_id)
        data_dir = os.path.abspath(cl.data_dir)
        bootstrap.check_node_file(data_dir, cl.cluster_id, cl.node_id)
        if not cfg.storage.sync and cfg.storage.engine != "memory":
            log.warning("storage.sync is off: a machine crash can lose acknowledged writes")
        lost_data.check_marker(data_dir)
        store = self._log_store or open_log_store(
            cfg.storage.engine,
            os.path.join(data_dir, "log"),
            sync=cfg.storage.sync and cfg.storage.engine == "file",
            logger=log,
            segment_bytes=cfg.storage.segment_bytes,
        )
        try:
            store.bind_identity(bootstrap.cluster_number(cl.cluster_id), cl.node_id)
            smc = cfg.statemachine
            sm = self._sm or open_kv(smc.engine, os.path.join(data_dir, "sm"), sync=False,
                                     logger=log, max_sessions=smc.max_sessions,
                                     session_results=smc.session_results,
                                     session_lifetime_entries=smc.session_lifetime_entries,
                                     history_revisions=smc.history_revisions,
                                     history_bytes=smc.history_bytes)
        except BaseException:
            store.close()
            raise
        book = MemberBook(data_dir)
        if bootstrap.is_fresh(store) and not cl.join:
            bootstrap_members = dict(cl.initial_members)
            bootstrap.bootstrap_log(store, bootstrap_members)
            book.learn(bootstrap_members)
            log.info("new cluster bootstrapped", members=bootstrap_members)
        book.learn({cl.node_id: cl.advertise_addr})
        rng = random.Random(self._seed)
        snapshots = SnapshotStore(os.path.join(data_dir, "snapshots"))
        _remove_partial_transfers(os.path.join(snapshots.directory, "incoming"))
        server = None
        if self._network is None and self._serve_clients:
            server = _ServerHandle(cfg)
        node = Node(cfg, log_store=store, state_machine=sm, snapshot_store=snapshots, book=book,
                    logger=log, rng=rng, transport_factory=self._transport_factory(server),
                    client_server=server)
        return node

    def _transport_factory(self, server: Any) -> Any:
        network = self._network
        cfg = self.config

        def make(node: Node) -> Any:
            peers = {i: a for i, a in node.book.addresses.items() if i != node.node_id}
            incoming = os.path.join(node.snapshots.directory, "incoming")
            if network is not None:
                return network.transport(
                    node.node_id, on_message=node.on_message, on_snapshot=node.on_snapshot,
                    peers=peers, cluster_id=cfg.cluster.cluster_id, snapshot_dir=incoming,
                    snapshot_chunk_bytes=cfg.network.snapshot_chunk_bytes,
                    accept_unknown_senders=bool(cfg.cluster.join), logger=node.logger,
                )
            from dengine.transport.tcp_transport import make_transport

            grpc_server = server.make(node) if server is not None else None
            transport = make_transport(
                cfg, on_message=node.on_message, on_snapshot=node.on_snapshot,
                peers=peers, snapshot_dir=incoming,
                server=grpc_server, accept_unknown_senders=bool(cfg.cluster.join),
                logger=node.logger,
            )
            transport.removed_check = node.membership.removal_committed
            transport.on_removed = lambda: node.membership.on_removed(None)
            return transport

        return make


def _remove_partial_transfers(directory: str) -> None:
    """Snapshot transfers cut short by a crash leave ``.part`` files: they are worthless."""
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        if name.endswith(".part"):
            os.unlink(os.path.join(directory, name))


class _ServerHandle:
    """The node's one gRPC server: peer service (from the transport) plus the client API."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server: Any = None
        self.port: int | None = None
        self.node: Node | None = None
        self._health: Any = None
        self.etcd: Any = None
        #: The client-only port (cluster.client_listen_addr), when configured.
        self.clients: Any = None

    def make(self, node: Node) -> Any:
        import grpc

        from dengine.node.service import add_client_services
        from dengine.security.tls import bind_port
        from dengine.transport.channels import server_options

        self.node = node
        self.server = grpc.aio.server(options=server_options(self.config.network))
        if self.config.cluster.client_listen_addr:
            from dengine.node.client_port import ClientPort

            self.clients = ClientPort(self.config)
        add_client_services(self.server, node,
                            *([self.clients.server] if self.clients is not None else []))
        if self.config.etcd_api.listen:  # etcd's v3 API on its own port (dengine.etcd)
            from dengine.etcd.serve import EtcdServer

            self.etcd = EtcdServer(node, self.server)
        self.port = bind_port(self.server, self.config.cluster.listen_addr, self.config.tls,
                              node.logger)
        if self.clients is not None:
            self.clients.bind(node.logger)
        return self.server

    async def start(self) -> None:
        await self.server.start()
        servicer = getattr(getattr(self.node, "transport", None), "health", None)
        if servicer is not None:  # per-service health follows what the node can answer
            from dengine.node.health import watch_health

            more = [self.clients.health] if self.clients is not None else []
            self._health = asyncio.get_running_loop().create_task(
                watch_health(self.node, servicer, *more))
        if self.etcd is not None:
            await self.etcd.start()
        if self.clients is not None:
            await self.clients.start()

    async def stop(self, grace_s: float) -> None:
        if self._health is not None:
            self._health.cancel()
        if self.clients is not None:
            await self.clients.stop(grace_s)
        if self.etcd is not None:
            await self.etcd.stop(grace_s)
        if self.server is not None:
            await self.server.stop(grace_s)
