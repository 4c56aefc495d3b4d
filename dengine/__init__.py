"""dengine: a strongly consistent Raft consensus engine for Python.

The protocol is a sans-IO core (:mod:`dengine.raft`) with its hot paths compiled by Cython
(:mod:`dengine._core`), driven by an asyncio node that speaks gRPC.

The public API is what ``__all__`` lists. The node, the clients and the state machine are
imported on first use, so ``import dengine`` (and ``dengine --version``) stays light: it loads
neither gRPC nor RocksDB.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from dengine._version import __version__
from dengine.errors import DengineError

if TYPE_CHECKING:
    from dengine.client import Client, SyncClient
    from dengine.config import Config, load_config
    from dengine.node import Consistency, EmbeddedClient, Node, NodeBuilder
    from dengine.raft import RaftCore
    from dengine.statemachine import KVStateMachine, StateMachine
    from dengine.storage import LogStore

#: Public name -> the module that defines it.
_LAZY = {
    "Client": "dengine.client",
    "SyncClient": "dengine.client",
    "Config": "dengine.config",
    "load_config": "dengine.config",
    "Consistency": "dengine.node",
    "EmbeddedClient": "dengine.node",
    "Node": "dengine.node",
    "NodeBuilder": "dengine.node",
    "RaftCore": "dengine.raft",
    "KVStateMachine": "dengine.statemachine",
    "StateMachine": "dengine.statemachine",
    "LogStore": "dengine.storage",
}

__all__ = [
    "__version__",
    "Client",
    "Config",
    "Consistency",
    "DengineError",
    "EmbeddedClient",
    "KVStateMachine",
    "LogStore",
    "Node",
    "NodeBuilder",
    "RaftCore",
    "StateMachine",
    "SyncClient",
    "core_info",
    "load_config",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dengine' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def core_info() -> str:
    """One line saying whether the compiled kernels or the pure-Python references are in use."""
    from dengine import _core

    if _core.COMPILED:
        return "compiled core (Cython kernels: " + ", ".join(_core.KERNELS) + ")"
    return f"pure-Python reference core ({_core.PURE_PYTHON_ENV}=1); slow, for debugging only"
