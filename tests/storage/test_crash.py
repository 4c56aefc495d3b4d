"""Crash tests with real processes: SIGKILL a writer at random moments, then check the store.

A child process (crash_child.py) appends batches, compacts and saves hard state; it announces
each operation before it starts (``P ...``) and confirms it once the call has returned, that is
once it is durable (``D``). The parent kills it after a random delay (sometimes during start-up
or recovery), reopens the store and checks it is exactly the confirmed state, or the confirmed
state plus the one pending operation: whole for RocksDB (a write batch is atomic), or a prefix
of the batch for the WAL (whole records only: a torn one is cut). Every reopen must succeed.

``DENGINE_CRASH_KILLS`` sets the kills per adapter (default 30; 60 across the two durable
adapters). A failure prints the seed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from dengine.raft.types import Entry
from dengine.storage import FileLogStore
from dengine.storage.rocksdb import RocksLogStore
from dengine.testing.storage_conformance import make

CHILD = os.path.join(os.path.dirname(__file__), "crash_child.py")
KILLS = int(os.environ.get("DENGINE_CRASH_KILLS", "30"))


def _open(kind: str, path: str):
    if kind == "file":
        return FileLogStore(path, segment_bytes=16384)
    return RocksLogStore(path)


class Model:
    """What the store must hold: the confirmed state."""

    def __init__(self) -> None:
        self.first = 1
        self.entries: list[Entry] = []
        self.commit = 0

    def observe(self, store) -> None:
        self.first = store.first_index()
        self.entries = store.entries(self.first, store.last_index() + 1)
        self.commit = store.hard_state().commit

    def after(self, op: list[str], prefix: int | None = None) -> tuple[int, list[Entry], int]:
        """The state once ``op`` is done (``prefix``: only that many entries of a batch)."""
        first, entries, commit = self.first, list(self.entries), self.commit
        if op[0] == "A":
            lo, hi, term = int(op[1]), int(op[2]), int(op[3])
            batch = make(lo, hi, term)
            entries = [e for e in entries if e.index < lo] + batch[: prefix]
        elif op[0] == "C":
            at = int(op[1])
            first, entries = at + 1, [e for e in entries if e.index > at]
        elif op[0] == "H":
            commit = int(op[1])
        return first, entries, commit

    def apply(self, op: list[str]) -> None:
        self.first, self.entries, self.commit = self.after(op)


def _replay(model: Model, lines: list[str]) -> tuple[list[str] | None, int]:
    """Apply confirmed operations; return the pending one (or None) and how many were done."""
    pending, done = None, 0
    for line in lines:
        parts = line.split()
        if parts[0] == "P":
            pending = parts[1:]
        elif parts[0] == "D":
            model.apply(pending)
            pending, done = None, done + 1
    return pending, done


def _allowed(model: Model, pending: list[str] | None, atomic: bool) -> list[tuple]:
    states = [(model.first, model.entries, model.commit)]
    if pending is None:
        return states
    if pending[0] == "A" and not atomic:
        n = int(pending[2]) - int(pending[1]) + 1
        states += [model.after(pending, k) for k in range(n + 1)]
    else:
        states.append(model.after(pending))
    return states


@pytest.mark.parametrize("kind", ["file", "rocksdb"])
def test_sigkill_never_loses_a_confirmed_write(kind, tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    path = os.path.join(tmp_path, "log")
    model = Model()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    mid_work = total_done = 0
    for kill in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, CHILD, kind, path, str(kill + 1), str(rng.randrange(1 << 30))],
            stdout=subprocess.PIPE,
            env=env,
        )
        if rng.random() < 0.2:  # anywhere, start-up and recovery included
            time.sleep(rng.uniform(0.0, 0.3))
        else:  # while it works
            assert child.stdout.readline() == b"O\n", f"child failed to open (seed {seed})"
            time.sleep(rng.uniform(0.0, 0.08))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        assert child.returncode == -signal.SIGKILL, f"child ended by itself (seed {seed})"
        lines = out.decode().splitlines()
        pending, done = _replay(model, lines)
        total_done += done
        mid_work += pending is not None
        store = _open(kind, path)
        try:
            first, last = store.first_index(), store.last_index()
            got = (first, store.entries(first, last + 1), store.hard_state().commit)
            allowed = _allowed(model, pending, atomic=kind == "rocksdb")
            assert got in allowed, (
                f"kill {kill} (seed {seed}): store {got[0]}..{got[0] + len(got[1]) - 1} "
                f"commit {got[2]} is none of the states allowed after {pending}"
            )
            model.observe(store)
        finally:
            store.close()
    assert total_done > KILLS, f"the children did too little work to test anything (seed {seed})"
    assert mid_work >= KILLS // 2, f"too few kills landed mid-operation (seed {seed})"
