"""Child process for the restore crash test: restores a KV machine slowly until killed.

Usage: restore_child.py KV_PATH SNAPSHOT_PATH. Prints ``S`` when the restore starts and ``F``
when it has returned; the parent SIGKILLs it somewhere in between (or after).
"""

from __future__ import annotations

import os
import sys
import time

from dengine.statemachine import KVStateMachine, RocksEngine, restore_snapshot
from dengine.storage.snapshot import SnapshotReader


class SlowReader:
    """A reader whose chunks arrive slowly, to widen the window a kill can land in."""

    def __init__(self, reader: SnapshotReader) -> None:
        self.meta = reader.meta
        self._reader = reader

    def verify(self) -> None:
        self._reader.verify()

    def chunks(self):
        for chunk in self._reader.chunks():
            time.sleep(0.0005)
            yield chunk


def main() -> None:
    sm = KVStateMachine(RocksEngine(sys.argv[1]))
    reader = SlowReader(SnapshotReader(sys.argv[2]))
    os.write(1, b"S\n")
    restore_snapshot(sm, reader)
    os.write(1, b"F\n")
    time.sleep(60)


if __name__ == "__main__":
    main()
