"""SIGKILL a process applying to the KV machine on RocksDB: the applied index never lies."""

from __future__ import annotations

import functools
import os
import random

from dengine.statemachine import open_kv
from dengine.testing.statemachine_conformance import run_kv_apply_crash_test

KILLS = int(os.environ.get("DENGINE_APPLY_KILLS", "15"))


def test_sigkill_while_applying_leaves_a_batch_boundary(tmp_path):
    seed = int(os.environ.get("DENGINE_CRASH_SEED", random.randrange(1 << 30)))
    stats = run_kv_apply_crash_test(functools.partial(open_kv, "rocksdb", str(tmp_path / "kv")), KILLS, seed)
    assert stats["kills"] == KILLS
    assert stats["applied"] > KILLS * 10, f"the writers applied too little to test anything {stats}"
