"""One owner per data directory: an exclusive ``fcntl.flock`` on a lock file beside it.

A store takes the lock before it reads, creates or repairs anything in its directory, and
holds it until it closes; a second opener (another process, or another store object in the
same one) gets :class:`DataDirLocked` naming the holder's pid at once, instead of "repairing"
what a live writer has acknowledged. The lock file is ``<directory>.lock`` next to the
directory (so it also guards the directory's creation) and holds the owner's pid as text; the
kernel drops the lock when the process dies, so a stale file never blocks a restart.
"""

from __future__ import annotations

import fcntl
import os

from dengine.errors import DataDirLocked, StorageIOError

__all__ = ["DirLock", "lock_path"]


def lock_path(directory: str) -> str:
    return os.path.abspath(directory).rstrip(os.sep) + ".lock"


class DirLock:
    """An exclusive lock on ``directory``; :meth:`release` (or process exit) frees it."""

    def __init__(self, directory: str) -> None:
        self.path = lock_path(directory)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StorageIOError(self.path, "open lock file", e.strerror or str(e), e.errno) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataDirLocked(os.path.abspath(directory), pid) from None
        except OSError as e:
            os.close(fd)
            raise StorageIOError(self.path, "lock", e.strerror or str(e), e.errno) from e
        self._fd: int | None = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid is only a hint for the error message; the lock is what counts

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
