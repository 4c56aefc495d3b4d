"""The client session table: exactly-once writes decided by the log (Raft thesis §6.3).

Theory of operation. A client opens sessions with a REGISTER command, a log entry of its own;
the machine names them after that entry's index (as the thesis does): a REGISTER of ``count``
sessions at index ``i`` opens ids ``i * 256 + k`` for ``k < count`` (one entry serves a burst
of new writers), so ids rise with the log and are never chosen, guessed or reused by a client:
an id the table does not hold is unknown or expired, never "new". Every write then carries
``(client_id, seq)``:

- a ``seq`` the session already answered returns that first answer, not a second apply (a
  compare-and-set that succeeded stays succeeded);
- a ``seq`` older than every kept result, a session the table does not hold, or one idle
  longer than ``lifetime_entries`` answers :class:`SessionExpired` and applies nothing. The
  client registers again; a write whose earlier attempts may have landed is reported to its
  caller as of unknown outcome, never re-sent under the new session.

Time here is log time: an entry's index. A session is alive while ``index - last_index`` is
at most ``lifetime_entries`` (0: no lifetime), where ``last_index`` is its register or latest
write, so every replica expires it at the same entry. When a REGISTER finds the table full
(``max_sessions``), the least recently used sessions (smallest ``last_index``, then smallest id)
are dropped in that same entry on every replica; a retry on one then gets SESSION_EXPIRED. A
REGISTER opens at most ``max_sessions`` sessions.

The table is state machine state: every change goes into the batch's overlay (one atomic
engine write with the data), so it survives restart and moves with snapshots, on both engines.
Raw keys: ``b"s" + client_id`` (big-endian u64) -> ``last_index u64 | count u32 |
(seq u64 | len u32 | result)*``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dengine.errors import SessionExpired

__all__ = ["MAX_REGISTER", "OP_REGISTER", "Registered", "SessionTable", "encode_register"]

#: First byte of a REGISTER entry (outside the codec's and the lease module's ranges).
OP_REGISTER = 0x70
#: Most sessions one REGISTER opens (the ids of entry ``i`` are ``i * 256 + k``).
MAX_REGISTER = 256
_REGISTER = struct.Struct("<BH")
P_SESSION = b"s"
_CLIENT = struct.Struct(">Q")
_HEAD = struct.Struct("<QI")
_SEQ = struct.Struct("<QI")


def encode_register(count: int = 1) -> bytes:
    """The command that opens ``count`` sessions (ids from the index of its entry)."""
    if not 1 <= count <= MAX_REGISTER:
        raise ValueError(f"a REGISTER opens 1 to {MAX_REGISTER} sessions, not {count}")
    return _REGISTER.pack(OP_REGISTER, count)


def is_register(data: bytes) -> bool:
    return len(data) == _REGISTER.size and data[0] == OP_REGISTER


@dataclass(frozen=True, slots=True)
class Registered:
    """The answer to REGISTER: the new sessions are ``client_id`` to ``client_id + count - 1``."""

    client_id: int
    count: int = 1

    @property
    def client_ids(self) -> range:
        return range(self.client_id, self.client_id + self.count)


class _Session:
    __slots__ = ("last_index", "results")

    def __init__(self, last_index: int, results: dict[int, bytes]) -> None:
        self.last_index = last_index
        self.results = results

    def encode(self) -> bytes:
        parts = [_HEAD.pack(self.last_index, len(self.results))]
        for seq in sorted(self.results):
            r = self.results[seq]
            parts.append(_SEQ.pack(seq, len(r)) + r)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> _Session:
        last, n = _HEAD.unpack_from(data, 0)
        pos = _HEAD.size
        results = {}
        for _ in range(n):
            seq, ln = _SEQ.unpack_from(data, pos)
            pos += _SEQ.size
            results[seq] = bytes(data[pos : pos + ln])
            pos += ln
        return cls(last, results)


class SessionTable:
    """Sessions of one KV machine; ``load`` rereads them from the engine (after a restore or a
    failed write); ``flush`` puts this batch's changes into the overlay."""

    def __init__(self, engine: Any, *, max_sessions: int, session_results: int,
                 lifetime_entries: int,
                 encode_result: Callable[[object], bytes],
                 decode_result: Callable[[bytes], object]) -> None:
        if max_sessions < 1 or session_results < 1 or lifetime_entries < 0:
            raise ValueError("max_sessions and session_results must be >= 1, "
                             "lifetime_entries >= 0")
        self.engine = engine
        self.max_sessions = max_sessions
        self.session_results = session_results
        self.lifetime_entries = lifetime_entries
        self._encode = encode_result
        self._decode = decode_result
        self._sessions: dict[int, _Session] = {}
        self._dirty: set[int] = set()

    def load(self) -> None:
        self._sessions = {}
        self._dirty = set()
        for k, v in self.engine.scan(P_SESSION, b"t", 0):
            self._sessions[_CLIENT.unpack(k[1:])[0]] = _Session.decode(v)

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, client_id: int) -> bool:
        return client_id in self._sessions

    def dump(self) -> dict[int, tuple[int, dict[int, bytes]]]:
        """Every session as ``{client_id: (last_index, {seq: encoded result})}`` (for checks
        that replicas agree)."""
        return {c: (s.last_index, dict(s.results)) for c, s in self._sessions.items()}

    def register(self, index: int, data: bytes, overlay: dict) -> Registered:
        """Open the sessions of the REGISTER ``data`` at ``index``, dropping the least recently
        used ones while the table is full."""
        count = max(1, min(_REGISTER.unpack(data)[1], self.max_sessions, MAX_REGISTER))
        excess = len(self._sessions) + count - self.max_sessions
        if excess > 0:
            order = sorted(self._sessions, key=lambda c: (self._sessions[c].last_index, c))
            for victim in order[:excess]:
                self._drop(victim, overlay)
        first = index * MAX_REGISTER
        for client_id in range(first, first + count):
            self._sessions[client_id] = _Session(index, {})
            self._dirty.add(client_id)
        return Registered(first, count)

    def run(self, client_id: int, seq: int, index: int, execute: Callable[[], object],
            overlay: dict) -> object:
        """Apply ``execute()`` once for ``(client_id, seq)`` at ``index``; see the module
        docstring for what is refused."""
        s = self._sessions.get(client_id)
        if s is None:
            return SessionExpired(client_id, seq)
        if self.lifetime_entries and index - s.last_index > self.lifetime_entries:
            self._drop(client_id, overlay)
            return SessionExpired(client_id, seq)
        if seq in s.results:
            s.last_index = index  # a retry is activity too
            self._dirty.add(client_id)
            return self._decode(s.results[seq])
        if s.results and len(s.results) >= self.session_results and seq < min(s.results):
            return SessionExpired(client_id, seq)
        result = execute()
        s.results[seq] = self._encode(result)
        while len(s.results) > self.session_results:
            del s.results[min(s.results)]
        s.last_index = index
        self._dirty.add(client_id)
        return result

    def _drop(self, client_id: int, overlay: dict) -> None:
        del self._sessions[client_id]
        self._dirty.discard(client_id)
        overlay[P_SESSION + _CLIENT.pack(client_id)] = None

    def flush(self, overlay: dict) -> None:
        for client_id in self._dirty:
            overlay[P_SESSION + _CLIENT.pack(client_id)] = self._sessions[client_id].encode()
        self._dirty = set()

