"""Crash tests with real processes: SIGKILL a writer at random moments, then check the store.

The harness is :func:`dengine.testing.storage_conformance.run_crash_test` (shipped, so adapter
writers can run it too): a writer process announces each operation and confirms it once it is
durable; the parent kills it at a random moment (sometimes during start-up or recovery),
reopens the store and checks it holds exactly the confirmed state, or that state plus the one
pending operation (whole for RocksDB, whose write batches are atomic; a prefix of the batch for
the WAL). ``DENGINE_CRASH_KILLS`` sets the kills per adapter (default 30: 60 across the two
durable adapters). A failure prints the seed; ``DENGINE_CRASH_SEED`` replays one.
"""

from __future__ import annotations

import functools
import os
import random

import pytest

from dengine.storage import open_log_store
from dengine.testing.storage_conformance import run_crash_test

KILLS = int(os.environ.get("DENGINE_CRASH_KILLS", "30"))


@pytest.mark.parametrize("kind", ["file", "rocksdb"])
def test_sigkill_never_loses_a_confirmed_write(kind, tmp_path):
    seed = int(os.environ.get("DENGINE_CRASH_SEED", random.randrange(1 << 30)))
    options = {"segment_bytes": 4096} if kind == "file" else {}  # many segment boundaries
    opener = functools.partial(open_log_store, kind, str(tmp_path / "log"), **options)
    stats = run_crash_test(opener, KILLS, seed, atomic=kind == "rocksdb")
    assert stats["kills"] == KILLS
    assert stats["confirmed"] > KILLS, f"the writers did too little to test anything {stats}"
    assert stats["mid_operation"] >= KILLS // 2, f"too few kills landed mid-operation {stats}"
