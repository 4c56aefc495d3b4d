"""Child process for the crash tests: appends, compacts and saves hard state until killed.

Usage: crash_child.py KIND PATH TERM SEED. Before each operation it writes ``P ...`` to stdout
(what it is about to do) and after the operation has returned (and so is durable) ``D``. The
parent SIGKILLs it at a random moment and checks that the store shows every confirmed operation
and, of the one pending, either nothing or (for a WAL) a prefix of it.
"""

from __future__ import annotations

import os
import random
import sys

from dengine.raft.types import HardState
from dengine.storage import FileLogStore
from dengine.storage.rocksdb import RocksLogStore
from dengine.testing.storage_conformance import make

SEGMENT_BYTES = 16384


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def main() -> None:
    kind, path, term, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    if kind == "file":
        store = FileLogStore(path, segment_bytes=SEGMENT_BYTES)
    else:
        store = RocksLogStore(path)
    say("O")
    commit = store.hard_state().commit
    while True:
        first, last = store.first_index(), store.last_index()
        r = rng.random()
        if r < 0.8:
            lo = last + 1
            if rng.random() < 0.15:
                lo = max(commit + 1, first, last - 3)
            hi = lo + rng.randint(0, 31)
            say(f"P A {lo} {hi} {term}")
            store.append(make(lo, hi, term))
        elif r < 0.9 and last - 60 >= first:
            say(f"P C {last - 60}")
            store.compact(last - 60)
        else:
            commit = max(commit, last)
            say(f"P H {commit}")
            store.save_hard_state(HardState(term, 1, commit))
        say("D")


if __name__ == "__main__":
    main()
