"""Fail-stop for durable stores: a failed write or fsync is typed, final and never retried.

Theory of operation. After ``fsync`` fails the kernel may already have dropped the dirty pages
and cleared the error, so a second ``fsync`` can "succeed" without the data ever reaching the
disk (PostgreSQL's fsyncgate, 2018). A store therefore treats its first failed write, fsync or
record replacement as final: the method raises :class:`StorageIOError` (never a raw
``OSError``), the store remembers the failure, and every later write or sync raises it again at
once. The node stops on it; a restart re-reads what is really on disk.

:meth:`FailStop.inject_sync_fault` is the test-only fault switch: every later sync point fails
with the given errno, as a disk that returns EIO or a full file system would.
"""

from __future__ import annotations

import errno as errno_mod
import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

from dengine.errors import StorageError, StorageIOError

__all__ = ["FailStop", "guarded", "io_error"]

F = TypeVar("F", bound=Callable[..., Any])


def io_error(path: str, operation: str, e: BaseException) -> StorageIOError:
    """The typed form of an OSError (or rocksdict's plain Exception) from ``operation``."""
    if isinstance(e, StorageIOError):
        return e
    if isinstance(e, OSError):
        name = errno_mod.errorcode.get(e.errno or 0, "")
        text = f"{name}: {e.strerror}" if name and e.strerror else str(e)
        return StorageIOError(path, operation, text, e.errno)
    return StorageIOError(path, operation, str(e))


class FailStop:
    """Mixin for a durable store: ``_failed`` poisons it; ``_sync_point`` is where fsyncs go."""

    _failed: StorageIOError | None = None
    _sync_fault: int | None = None

    def inject_sync_fault(self, errno: int | None) -> None:
        """Test-only: make every later sync (fsync, synced write) fail with ``errno``."""
        self._sync_fault = errno

    @property
    def failed(self) -> StorageIOError | None:
        """The failure that stopped this store, if any."""
        return self._failed

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise self._failed

    def _sync_point(self, path: str) -> None:
        """Called just before a real fsync: the fault switch fails it here when set."""
        if self._sync_fault is not None:
            raise OSError(self._sync_fault, os.strerror(self._sync_fault), path)

    def _fsync(self, fd: int, path: str) -> None:
        self._sync_point(path)
        os.fdatasync(fd)


def guarded(operation: str) -> Callable[[F], F]:
    """Wrap a write method: refuse once failed; turn an OSError into a final StorageIOError."""

    def wrap(method: F) -> F:
        @functools.wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self._failed is not None:
                raise self._failed
            try:
                return method(self, *args, **kwargs)
            except StorageIOError as e:
                self._failed = e
                raise
            except StorageError:
                raise  # a refused request (Compacted, InvalidAppend): nothing was written
            except OSError as e:
                self._failed = io_error(getattr(self, "path", "?"), operation, e)
                raise self._failed from e

        return run  # type: ignore[return-value]

    return wrap
