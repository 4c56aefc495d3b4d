"""Fixtures for the storage tests: one factory per log store adapter."""

from __future__ import annotations

import os

import pytest

from dengine.storage import FileLogStore, MemoryLogStore
from dengine.storage.rocksdb import RocksLogStore

#: Small WAL segments, so that a few dozen entries already span several files.
SMALL_SEGMENT_BYTES = 4096


class Factory:
    """Opens one adapter at one directory; ``open`` after ``close`` is a restart."""

    def __init__(self, kind: str, path: str) -> None:
        self.kind = kind
        self.path = path
        self.durable = kind != "memory"

    def open(self, **options):
        if self.kind == "memory":
            return MemoryLogStore()
        if self.kind == "file":
            options.setdefault("segment_bytes", SMALL_SEGMENT_BYTES)
            return FileLogStore(self.path, **options)
        return RocksLogStore(self.path, **options)

    def __repr__(self) -> str:
        return f"Factory({self.kind})"


@pytest.fixture(params=["memory", "file", "rocksdb"])
def log_factory(request, tmp_path) -> Factory:
    return Factory(request.param, os.path.join(tmp_path, "log"))


@pytest.fixture(params=["file", "rocksdb"])
def durable_factory(request, tmp_path) -> Factory:
    return Factory(request.param, os.path.join(tmp_path, "log"))
