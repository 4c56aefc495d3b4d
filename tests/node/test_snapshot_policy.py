"""The snapshot policy: entries, applied bytes or time, whichever comes first."""

from __future__ import annotations

from dengine.node.snapshot_policy import SnapshotPolicy
from dengine.raft.types import Entry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _entries(first: int, n: int, size: int) -> list[Entry]:
    return [Entry(1, i, 0, b"x" * size) for i in range(first, first + n)]


def test_due_by_entries():
    p = SnapshotPolicy(10, 1 << 30, 0, Clock())
    assert not p.due(9)
    assert p.due(10)
    p.taken(10)
    assert not p.due(19) and p.due(20)


def test_due_by_applied_bytes_before_the_entry_count():
    p = SnapshotPolicy(1000, 4096, 0, Clock())
    p.on_applied(_entries(1, 3, 1000))
    assert not p.due(3)
    p.on_applied(_entries(4, 2, 1000))
    assert p.due(5)
    p.taken(5)
    assert not p.due(6)  # the byte count starts again


def test_due_by_time_only_when_something_was_applied():
    clock = Clock()
    p = SnapshotPolicy(1000, 1 << 30, 60, clock)
    clock.now += 61
    assert not p.due(0)  # nothing applied: nothing to compact
    assert p.due(1)
    p.taken(1)
    assert not p.due(2)
    clock.now += 61
    assert p.due(2)


def test_time_limit_zero_is_off():
    clock = Clock()
    p = SnapshotPolicy(1000, 1 << 30, 0, clock)
    clock.now += 10**9
    assert not p.due(5)
