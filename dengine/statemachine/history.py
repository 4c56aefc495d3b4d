"""Watch history: the KV machine's recent changes, kept with the data, so a watch can start in
the past.

Theory of operation
-------------------
A *revision* is the log index of the entry that made a change. Every key carries, as etcd's
do, its ``revision`` (mod revision: the index that last wrote it), its ``create_revision`` and
its ``version`` (writes since it was created; a delete ends it). Revisions grow but are not
contiguous: an entry that changes nothing (a read barrier, a conf change, a CAS that failed, a
delete of a missing key) takes an index and leaves no event. All events of one entry (an atomic
batch, a lease revoke) share its revision and are always delivered together, so "everything up
to revision R" is a precise statement and a watcher resumes with ``R + 1``.

While ``apply`` runs, the machine reports each change here (:meth:`History.on_put`,
:meth:`History.on_delete`); the events go into the same overlay as the data and are written in
the same atomic engine write, under::

    b"h" + revision u64 BE + sub u32 BE     one event (its order within the revision)
    b"m" + b"history"                       oldest revision u64: history is complete from here

The machine keeps the events of the last ``window`` revisions: after each batch, events with a
revision ``<= applied - window`` are deleted in that batch's write. It also keeps at most
``max_bytes`` of encoded events (the newest revision always stays): a bulk load of atomic
batches of a thousand keys would otherwise keep a second copy of all its data for ``window``
revisions. Both bounds are computed from the applied entries alone (the index, the events'
sizes), so every replica compacts alike, at the same index, and a restart or a snapshot
recomputes the same sizes from the stored events. The oldest
available revision is ``max(meta, applied - window + 1)``; a watch that asks for an older one
gets COMPACTED with it.

History is part of the engine and so of every snapshot: a node restored from a snapshot serves
the window the snapshot holds, from its ``oldest_revision``, and logs that it did. After the
engine write succeeds, :meth:`History.publish` hands the batch's events to the listeners (the
node's watch hub), in revision order, only once they are applied; :meth:`reset` tells them the
state was replaced by a snapshot (their streams must resume from history).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

P_HISTORY = b"h"
K_HISTORY = b"mhistory"
PUT = 0
DELETE = 1
#: Revisions of history kept by default.
DEFAULT_WINDOW = 10_000
#: Bytes of encoded events kept by default (the newest revision always stays).
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
_KEY = struct.Struct(">QI")
_U64 = struct.Struct("<Q")
_HEAD = struct.Struct("<BQQQI")  # type, create_revision, version, lease, key length
_PREV = struct.Struct("<QQQI")  # revision, create_revision, version, value length


class PrevKV(NamedTuple):
    """A key as it was before an event."""

    value: bytes
    revision: int
    create_revision: int
    version: int


@dataclass(frozen=True, slots=True)
class Event:
    """One change: ``type`` PUT or DELETE; a delete has an empty value and version 0."""

    type: int
    key: bytes
    value: bytes
    revision: int
    create_revision: int
    version: int
    lease: int = 0
    prev: PrevKV | None = None

    def encode(self) -> bytes:
        parts = [_HEAD.pack(self.type, self.create_revision, self.version, self.lease,
                            len(self.key)), self.key]
        if self.prev is None:
            parts.append(b"\x00")
        else:
            p = self.prev
            parts += [b"\x01", _PREV.pack(p.revision, p.create_revision, p.version,
                                          len(p.value)), p.value]
        parts.append(self.value)
        return b"".join(parts)

    @classmethod
    def decode(cls, revision: int, data: bytes) -> Event:
        typ, create, version, lease, klen = _HEAD.unpack_from(data, 0)
        pos = _HEAD.size
        key = bytes(data[pos : pos + klen])
        pos += klen
        prev = None
        if data[pos] == 1:
            prev_rev, prev_create, prev_version, vlen = _PREV.unpack_from(data, pos + 1)
            pos += 1 + _PREV.size
            prev = PrevKV(bytes(data[pos : pos + vlen]), prev_rev, prev_create, prev_version)
            pos += vlen
        else:
            pos += 1
        return cls(typ, key, bytes(data[pos:]), revision, create, version, lease, prev)


class HistoryListener(Protocol):
    def on_events(self, events: list[Event], applied_index: int) -> None: ...
    def on_reset(self, oldest_revision: int, applied_index: int) -> None: ...


class Engine(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def scan(self, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]: ...


def _hkey(revision: int, sub: int) -> bytes:
    return P_HISTORY + _KEY.pack(revision, sub)


class History:
    """The window of recent events over an engine (see the module docstring)."""

    def __init__(self, engine: Engine, window: int = DEFAULT_WINDOW, logger: Any = None,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if window < 1:
            raise ValueError("the watch history window must be at least 1 revision")
        if max_bytes < 1:
            raise ValueError("the watch history must be allowed at least 1 byte")
        self.engine = engine
        self.window = window
        self.max_bytes = max_bytes
        self.logger = logger
        self.listeners: list[HistoryListener] = []
        # (type, key, value, revision, create, version, lease, prev): built into events
        # only when the batch is published.
        self._pending: list[tuple[int, bytes, bytes, int, int, int, int, tuple | None]] = []
        self.load()

    def load(self) -> None:
        """(Re)read the oldest revision and which revisions hold events from the engine."""
        raw = self.engine.get(K_HISTORY)
        self._oldest = _U64.unpack(raw)[0] if raw else 1
        # (revision, events, bytes) for every revision that holds events, oldest first.
        self._revs: deque[list[int]] = deque()
        self._bytes = 0  # encoded events kept, the sum over _revs
        for k, v in self.engine.scan(P_HISTORY, b"i", 0):
            rev, _sub = _KEY.unpack(k[1:])
            if self._revs and self._revs[-1][0] == rev:
                self._revs[-1][1] += 1
                self._revs[-1][2] += len(v)
            else:
                self._revs.append([rev, 1, len(v)])
            self._bytes += len(v)
        self._pending = []

    # -- recording, during apply --------------------------------------------------------------
    # ``prev`` is the key's record before the change, as the KV machine reads it:
    # (revision, create_revision, version, value), or None.
    def on_put(self, key: bytes, value: bytes, revision: int, create_revision: int,
               version: int, lease: int, prev: tuple | None, overlay: dict) -> None:
        self._add(PUT, key, value, revision, create_revision, version, lease, prev, overlay)

    def on_delete(self, key: bytes, revision: int, prev: tuple, overlay: dict) -> None:
        self._add(DELETE, key, b"", revision, 0, 0, 0, prev, overlay)

    def _add(self, typ: int, key: bytes, value: bytes, revision: int, create: int,
             version: int, lease: int, prev: tuple | None, overlay: dict) -> None:
        revs = self._revs
        last = revs[-1] if revs else None
        if last is not None and last[0] == revision:
            sub = last[1]
            last[1] += 1
        else:
            sub = 0
            last = [revision, 1, 0]
            revs.append(last)
        head = _HEAD.pack(typ, create, version, lease, len(key))
        if prev is None:
            record = b"".join((head, key, b"\x00", value))
        else:
            record = b"".join((head, key, b"\x01", _PREV.pack(prev[0], prev[1], prev[2],
                                                               len(prev[3])), prev[3], value))
        overlay[P_HISTORY + _KEY.pack(revision, sub)] = record
        last[2] += len(record)
        self._bytes += len(record)
        if self.listeners:  # events are built only for someone to hand them to
            self._pending.append((typ, key, value, revision, create, version, lease, prev))

    def finish(self, applied_index: int, overlay: dict) -> None:
        """Compact below the window as of ``applied_index`` and down to ``max_bytes``; call
        before the engine write."""
        bound = applied_index - self.window + 1  # oldest revision kept
        revs = self._revs
        while revs and (revs[0][0] < bound or (self._bytes > self.max_bytes and len(revs) > 1)):
            rev, count, size = revs.popleft()
            self._bytes -= size
            bound = max(bound, rev + 1)
            for sub in range(count):
                key = _hkey(rev, sub)
                if key in overlay:  # written and compacted in the same batch
                    del overlay[key]
                else:
                    overlay[key] = None
        if bound > self._oldest:
            self._oldest = bound
            overlay[K_HISTORY] = _U64.pack(bound)

    def publish(self, applied_index: int) -> None:
        """The batch is durable in the engine: hand its events to the listeners."""
        pending, self._pending = self._pending, []
        events = [Event(t, k, v, r, c, ver, lease,
                        None if p is None else PrevKV(p[3], p[0], p[1], p[2]))
                  for t, k, v, r, c, ver, lease, p in pending]
        for listener in list(self.listeners):
            listener.on_events(events, applied_index)

    def abort(self) -> None:
        """The batch's write failed: forget its events (the caller reloads)."""
        self._pending = []

    def restored(self, applied_index: int) -> None:
        """The engine now holds a snapshot's content: reload and tell the listeners."""
        self.load()
        if self.logger is not None:
            self.logger.info("watch history restored from a snapshot",
                          oldest_revision=self.oldest_revision(applied_index),
                          applied_index=applied_index)
        for listener in list(self.listeners):
            listener.on_reset(self.oldest_revision(applied_index), applied_index)

    # -- reading ------------------------------------------------------------------------------
    def oldest_revision(self, applied_index: int) -> int:
        """The oldest revision whose events are all still here."""
        return max(self._oldest, applied_index - self.window + 1, 1)

    def read(self, start: int, limit: int = 1000,
             match: Callable[[bytes], bool] | None = None) -> tuple[list[Event], int]:
        """Events with revision ``>= start``, at most about ``limit`` (a revision is never cut
        in two), and the revision to read from next. The caller checks ``start`` against
        :meth:`oldest_revision` first."""
        start = max(start, 1)
        rows = self.engine.scan(_hkey(start, 0), b"i", limit)
        if not rows:
            return [], start
        last_rev = _KEY.unpack(rows[-1][0][1:])[0]
        if len(rows) >= limit:  # complete the last revision
            rows += self.engine.scan(rows[-1][0] + b"\x00", _hkey(last_rev + 1, 0), 0)
        events = []
        for k, v in rows:
            rev = _KEY.unpack(k[1:])[0]
            if match is None or match(_event_key(v)):
                events.append(Event.decode(rev, v))
        return events, last_rev + 1


def _event_key(data: bytes) -> bytes:
    klen = _HEAD.unpack_from(data, 0)[4]
    return bytes(data[_HEAD.size : _HEAD.size + klen])
