"""The Raft protocol as a deterministic state machine with no I/O (see ``core``)."""

from dengine.raft.types import ConfState, Entry, EntryKind, HardState, SnapshotMeta

__all__ = ["ConfState", "Entry", "EntryKind", "HardState", "SnapshotMeta"]
