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


def test_the_kept_tail_is_bounded_in_bytes_too():
    p = SnapshotPolicy(1000, 1 << 30, 0, Clock(), tail_bytes=5000)
    p.on_applied(_entries(1, 10, 1000))    # 1..10: 10 KB in one batch
    p.on_applied(_entries(11, 2, 1000))    # 11..12
    p.on_applied(_entries(13, 2, 1000))    # 13..14
    p.on_applied(_entries(15, 1, 1000))    # 15
    # Behind a snapshot at 15 at most 5 KB: 11..15 (5 KB) fit, the batch 1..10 does not.
    assert p.keep_entries(15) == 5
    p.on_applied(_entries(16, 1, 100_000))  # one huge entry: nothing behind it fits
    assert p.keep_entries(16) == 0


def test_no_byte_bound_keeps_the_entry_count():
    p = SnapshotPolicy(1000, 1 << 30, 0, Clock())
    p.on_applied(_entries(1, 10, 1000))
    assert p.keep_entries(10) is None
