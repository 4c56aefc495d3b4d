"""Snapshot files as the node writes, sends and installs them.

A node snapshot file (:mod:`dengine.storage.snapshot` framing) holds one extra chunk in front
of the state machine's: the address book (``MEMBERS_TAG`` + the JSON of
:func:`~dengine.node.members.encode_addresses`), so a follower that catches up from a snapshot
learns where every member listens. The file travels to followers byte for byte; the receiver
verifies every checksum before the state machine sees a byte.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping

from dengine.errors import SnapshotError
from dengine.node.members import decode_addresses, encode_addresses
from dengine.raft.types import ConfState, SnapshotMeta
from dengine.statemachine.base import StateMachine
from dengine.storage.snapshot import SnapshotReader, SnapshotStore, snapshot_name

__all__ = [
    "MEMBERS_TAG",
    "adopt_file",
    "file_pieces",
    "find_file",
    "install_file",
    "verify_file",
    "write_snapshot",
]

MEMBERS_TAG = b"dengine-members-1\n"
READ_PIECE_BYTES = 1 << 20


def write_snapshot(
    sm: StateMachine, store: SnapshotStore, source, conf_state: ConfState,
    addresses: Mapping[int, str], keep: int = 2,
) -> tuple[SnapshotMeta, str]:
    """Write the pinned ``source`` as a snapshot file (runs in a worker thread)."""
    meta = SnapshotMeta(source.index, source.term, conf_state)
    chunks = itertools.chain([MEMBERS_TAG + encode_addresses(addresses)], source.chunks())
    path = store.write(meta, chunks, keep=keep)
    return meta, path


def find_file(store: SnapshotStore, meta: SnapshotMeta) -> str | None:
    """The path of the file holding the snapshot ``meta`` describes, if it is still there."""
    for index, term, path in reversed(store.list()):
        if index == meta.index and term == meta.term:
            return path
    return None


def file_pieces(path: str) -> Iterator[bytes]:
    """The file's bytes in pieces; the file is opened at once so a later cleanup that unlinks
    it does not break a transfer in progress."""
    f = open(path, "rb")  # noqa: SIM115 - closed by the generator

    def gen() -> Iterator[bytes]:
        with f:
            while piece := f.read(READ_PIECE_BYTES):
                yield piece

    return gen()


def verify_file(path: str, meta: SnapshotMeta) -> None:
    """Check every checksum of a received file and that it holds the snapshot ``meta`` says."""
    reader = SnapshotReader(path)
    if (reader.meta.index, reader.meta.term) != (meta.index, meta.term):
        raise SnapshotError(f"{path} holds snapshot {reader.meta.index}/{reader.meta.term}, "
                            f"not {meta.index}/{meta.term}")
    reader.verify()


def install_file(sm: StateMachine, path: str) -> tuple[SnapshotMeta, dict[int, str]]:
    """Verify a snapshot file and restore ``sm`` from it; returns its meta and addresses."""
    reader = SnapshotReader(path)
    reader.verify()
    chunks = reader.chunks()
    first = next(chunks, None)
    if first is None or not first.startswith(MEMBERS_TAG):
        raise SnapshotError(f"{path}: not a dengine node snapshot (no member list)")
    addresses = decode_addresses(first[len(MEMBERS_TAG):])
    sm.restore(chunks)
    return reader.meta, addresses


def adopt_file(store: SnapshotStore, path: str, meta: SnapshotMeta) -> str:
    """Move a received (already verified) file into the store under its canonical name."""
    dest = os.path.join(store.directory, snapshot_name(meta))
    if os.path.abspath(path) != dest:
        os.replace(path, dest)
    store.cleanup(keep=2)
    return dest
