"""Replicated state machines: the :class:`StateMachine` seam and the KV machine.

:func:`open_kv` builds the KV machine on the ``rocksdb`` engine (the default, durable) or the
``memory`` engine (nothing survives the process).
"""

from __future__ import annotations

from dengine.statemachine.base import (
    SnapshotSource,
    StateMachine,
    restore_snapshot,
    take_snapshot,
)
from dengine.statemachine.engines import MemoryEngine, RocksEngine
from dengine.statemachine.kv import KeyValue, KVStateMachine, ScanResult, WriteResult

ENGINES = ("rocksdb", "memory")


def open_kv(engine: str = "rocksdb", path: str | None = None, **options) -> KVStateMachine:
    """The KV state machine on ``engine``; ``options``: sync, logger, session limits."""
    engine_opts = {k: options.pop(k) for k in ("sync", "logger") if k in options}
    if "logger" in engine_opts:
        options["logger"] = engine_opts["logger"]
    if engine == "memory":
        return KVStateMachine(MemoryEngine(), **options)
    if engine == "rocksdb":
        if path is None:
            raise ValueError("the rocksdb state machine needs a path")
        return KVStateMachine(RocksEngine(path, **engine_opts), **options)
    raise ValueError(f"unknown state machine engine {engine!r}; choose one of {', '.join(ENGINES)}")


__all__ = [
    "ENGINES",
    "KVStateMachine",
    "KeyValue",
    "MemoryEngine",
    "RocksEngine",
    "ScanResult",
    "SnapshotSource",
    "StateMachine",
    "WriteResult",
    "open_kv",
    "restore_snapshot",
    "take_snapshot",
]
