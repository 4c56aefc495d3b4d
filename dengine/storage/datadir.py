"""A data directory: created whole or not at all, and recognised before anything is written.

A store directory holds a ``FORMAT`` record naming the store kind (``file``, ``rocksdb``, ...)
and an ``IDENTITY`` record (cluster id, node id) once one is bound. A new directory is built
under a temporary name and renamed into place, so a crash while creating it leaves nothing that
looks like a store. Opening a directory that holds anything else is :class:`ForeignDataDir`;
opening one whose records are damaged is :class:`Corruption`. Either way nothing is written.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

from dengine.errors import ForeignDataDir
from dengine.storage import records
from dengine.storage.base import check_identity

FORMAT_FILE = "FORMAT"
IDENTITY_FILE = "IDENTITY"
FORMAT_VERSION = 1


def _format_payload(kind: str) -> bytes:
    return f"dengine {kind} v{FORMAT_VERSION}".encode()


def open_dir(path: str, kind: str, init: Callable[[str], None] | None = None) -> bool:
    """Make sure ``path`` is a ``kind`` store directory; True when it was just created.

    ``init(tmp_dir)`` fills a new directory before it is renamed into place.
    """
    path = os.path.abspath(path)
    if os.path.isdir(path) and os.listdir(path):
        fmt = records.read_record(os.path.join(path, FORMAT_FILE), records.KIND_FORMAT)
        if fmt is None:
            raise ForeignDataDir(path, f"it has files but no {FORMAT_FILE} record")
        if fmt != _format_payload(kind):
            raise ForeignDataDir(path, f"it holds {fmt.decode(errors='replace')!r}, not {kind}")
        return False
    if os.path.exists(path) and not os.path.isdir(path):
        raise ForeignDataDir(path, "it is a file, not a directory")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = path + ".creating"
    shutil.rmtree(tmp, ignore_errors=True)
    os.mkdir(tmp)
    if init is not None:
        init(tmp)
    records.write_record(os.path.join(tmp, FORMAT_FILE), records.KIND_FORMAT, _format_payload(kind))
    records.fsync_dir(tmp)
    if os.path.isdir(path):
        os.rmdir(path)  # empty: checked above
    os.rename(tmp, path)
    records.fsync_dir(parent)
    return True


def read_identity(path: str) -> tuple[int, int] | None:
    data = records.read_record(os.path.join(path, IDENTITY_FILE), records.KIND_IDENTITY)
    if data is None:
        return None
    return records.decode_or_corrupt(path, records.decode_pair, data)


def bind_identity(path: str, cluster_id: int, node_id: int) -> tuple[int, int]:
    """Record the identity on first use; a different one already held is ClusterMismatch."""
    held = read_identity(path)
    check_identity(held, cluster_id, node_id)
    if held is None:
        records.write_record(
            os.path.join(path, IDENTITY_FILE),
            records.KIND_IDENTITY,
            records.encode_pair(cluster_id, node_id),
        )
    return (cluster_id, node_id)
