"""Where the Raft log lives: the :class:`LogStore` seam and its adapters.

``memory`` keeps nothing across a restart; ``file`` is a segmented write-ahead log; ``rocksdb``
(the default) keeps entries in RocksDB through rocksdict. :func:`open_log_store` picks one by
name. Snapshot files are in :mod:`dengine.storage.snapshot`.
"""

from __future__ import annotations

from dengine.storage.base import LogReader, LogStore
from dengine.storage.file import FileLogStore
from dengine.storage.memory import MemoryLogStore
from dengine.storage.rocksdb import RocksLogStore
from dengine.storage.snapshot import SnapshotReader, SnapshotStore

ENGINES = ("rocksdb", "file", "memory")


def open_log_store(engine: str, path: str | None = None, **options) -> LogStore:
    """Open the log store ``engine`` at ``path`` (``options``: sync, logger, identity...)."""
    if engine == "memory":
        options.pop("sync", None)
        options.pop("logger", None)
        options.pop("segment_bytes", None)
        return MemoryLogStore(**options)
    if path is None:
        raise ValueError(f"the {engine} log store needs a path")
    if engine == "file":
        return FileLogStore(path, **options)
    if engine == "rocksdb":
        options.pop("segment_bytes", None)
        return RocksLogStore(path, **options)
    raise ValueError(f"unknown log store engine {engine!r}; choose one of {', '.join(ENGINES)}")


__all__ = [
    "ENGINES",
    "FileLogStore",
    "LogReader",
    "LogStore",
    "MemoryLogStore",
    "RocksLogStore",
    "SnapshotReader",
    "SnapshotStore",
    "open_log_store",
]
