"""The node: the asyncio shell that drives the Raft core, its storage, transport and clients.

``NodeBuilder(config).build()`` makes a :class:`Node` with the default parts (rocksdb log
store, KV state machine on rocksdb, gRPC transport serving the client API); ``await
node.start()`` runs it; :class:`EmbeddedClient` talks to a node in the same process with no
gRPC. ``dengine serve`` (:mod:`dengine.node.serve`) runs one as a process.
"""

from dengine.node.builder import NodeBuilder
from dengine.node.embedded import EmbeddedClient
from dengine.node.node import Consistency, Node

__all__ = ["Consistency", "EmbeddedClient", "Node", "NodeBuilder"]
