"""The shipped log store conformance suite, run against every adapter (memory, file, rocksdb)."""

from dengine.testing.storage_conformance import LogStoreConformance


class TestLogStoreConformance(LogStoreConformance):
    """Every adapter, through the ``log_factory`` fixture in conftest.py."""
