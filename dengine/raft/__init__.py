"""The Raft protocol as a deterministic state machine with no I/O (see ``core``)."""

from dengine.raft.confchange import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
)
from dengine.raft.config import RaftConfig
from dengine.raft.core import RaftCore
from dengine.raft.log import LogReader, MemoryStorage
from dengine.raft.messages import Message, MessageType
from dengine.raft.ready import Dropped, ReadState, Ready, Role, SoftState
from dengine.raft.types import ConfState, Entry, EntryKind, HardState, SnapshotMeta

__all__ = [
    "ConfChange",
    "ConfChangeSingle",
    "ConfChangeTransition",
    "ConfChangeType",
    "ConfState",
    "Dropped",
    "Entry",
    "EntryKind",
    "HardState",
    "LogReader",
    "MemoryStorage",
    "Message",
    "MessageType",
    "RaftConfig",
    "RaftCore",
    "ReadState",
    "Ready",
    "Role",
    "SnapshotMeta",
    "SoftState",
]
