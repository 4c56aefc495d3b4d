"""A restore killed at a random moment leaves the old state or the new one, never a mix."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

from dengine._core import codec
from dengine.raft.types import ConfState
from dengine.statemachine import KVStateMachine, MemoryEngine, RocksEngine, take_snapshot
from dengine.storage.snapshot import SnapshotStore
from dengine.testing.statemachine_conformance import entries

CHILD = os.path.join(os.path.dirname(__file__), "restore_child.py")
KILLS = int(os.environ.get("DENGINE_RESTORE_KILLS", "12"))


def _state(sm: KVStateMachine) -> tuple:
    return sm.applied_index(), [(kv.key, kv.value, kv.version) for kv in sm.range(b"").items]


def test_restore_killed_halfway_leaves_old_or_new(tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    new = KVStateMachine(MemoryEngine(), chunk_bytes=2048)
    new.apply(entries(1, [codec.encode_put(b"new/%05d" % i, b"v" * 40) for i in range(3000)]))
    snap_store = SnapshotStore(str(tmp_path / "snaps"))
    _meta, snap = take_snapshot(new, snap_store, ConfState(frozenset({1})))
    want_new = _state(new)

    pristine = str(tmp_path / "old")
    old = KVStateMachine(RocksEngine(pristine))
    old.apply(entries(1, [codec.encode_put(b"old/%03d" % i, b"o") for i in range(50)]))
    want_old = _state(old)
    old.close()

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))

    def run(n: int, kill_after: float | None) -> tuple[tuple, bool, float]:
        """Restore in a child into a copy of the old store; SIGKILL it ``kill_after`` seconds
        after it starts (None: once it has finished). Returns (state, finished, duration)."""
        path = str(tmp_path / f"kv{n}")
        shutil.copytree(pristine, path)
        child = subprocess.Popen([sys.executable, CHILD, path, snap], stdout=subprocess.PIPE, env=env)
        assert child.stdout.readline() == b"S\n", f"child failed (seed {seed})"
        t0 = time.monotonic()
        if kill_after is None:
            assert child.stdout.readline() == b"F\n", f"child failed (seed {seed})"
        else:
            time.sleep(kill_after)
        duration = time.monotonic() - t0
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        sm = KVStateMachine(RocksEngine(path))
        try:
            got = _state(sm)
        finally:
            sm.close()
        assert got in (want_old, want_new), f"a mixed state after kill {n} (seed {seed})"
        dbs = [d for d in os.listdir(path) if d.startswith("db-")]
        assert len(dbs) == 1, f"leftover databases {dbs} (seed {seed})"
        shutil.rmtree(path)
        return got, kill_after is None or b"F" in out, duration

    # One restore run to the end: it must give the new state, and it says how long a restore
    # takes on this machine now, so that the kills below are spread over that window whatever
    # the load (a fixed window misses it on a busy machine).
    got, _, restore_s = run(0, None)
    assert got == want_new, f"a finished restore did not give the new state (seed {seed})"
    outcomes = {"old": 0, "new": 1, "mid": 0}
    n = 0
    while outcomes["mid"] < KILLS and n < 3 * KILLS:
        n += 1
        got, finished, _ = run(n, restore_s * (n % KILLS + rng.random()) / KILLS)
        outcomes["new" if got == want_new else "old"] += 1
        outcomes["mid"] += not finished
    assert outcomes["mid"] >= KILLS, f"too few kills landed mid-restore {outcomes} (seed {seed})"
