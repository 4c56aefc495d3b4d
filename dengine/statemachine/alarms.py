"""Cluster alarms kept in the replicated state, as etcd keeps its alarms.

Theory of operation. A member whose disk passes its quota does not just refuse writes itself:
it proposes an ALARM entry (activate NOSPACE for its id) through the log, as etcd's members
do. Applying it records the alarm in the engine under ``b"malarm" + member id`` in the same
atomic write as the rest of the batch, so every member holds the same alarms at the same
index, they survive a restart and move with a snapshot. While any member has an alarm, every
member refuses writes other than deletes (the node asks :meth:`AlarmTable.active`).
``dengine alarm disarm`` proposes the deactivation; a member still over its quota raises it
again at its next check.

An entry is ``op u8 (OP_ALARM) | action u8 (1 activate, 0 deactivate) | member u64 |
alarm u8 (1 NOSPACE) | used u64 | quota u64`` (the member's disk use and quota when it raised
the alarm, for the error every member answers with); deactivating member 0 clears the alarm on
every member. A malformed
entry applies as a :class:`~dengine.errors.DecodeError` result and changes nothing.
"""

from __future__ import annotations

import struct
from typing import Any

from dengine.errors import DecodeError

__all__ = ["ALARM_NAMES", "OP_ALARM", "AlarmTable", "encode_alarm", "is_alarm"]

#: Above the codec's ops and the lease machine's (0x40-0x5F).
OP_ALARM = 0x60
NOSPACE = 1
ALARM_NAMES = {NOSPACE: "NOSPACE"}
_ENTRY = struct.Struct("<BBQBQQ")
_VALUE = struct.Struct("<BQQ")
_MEMBER = struct.Struct(">Q")
P_ALARM = b"malarm"


def encode_alarm(activate: bool, member_id: int, alarm: int = NOSPACE, used_bytes: int = 0,
                 quota_bytes: int = 0) -> bytes:
    """The command that raises (``activate``) or clears ``alarm`` for ``member_id`` (0 with
    ``activate`` False: for every member)."""
    return _ENTRY.pack(OP_ALARM, 1 if activate else 0, member_id, alarm, used_bytes, quota_bytes)


def is_alarm(data: bytes) -> bool:
    return bool(data) and data[0] == OP_ALARM


class AlarmTable:
    """The alarms every member raised, as the engine holds them."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._alarms: dict[int, tuple[int, int, int]] = {}  # member -> (alarm, used, quota)
        self.raised = False  # any alarm: read on every proposal, so kept as a plain flag
        self.load()

    def load(self) -> None:
        """(Re)read the alarms from the engine (at open, after a snapshot is installed)."""
        self._alarms = {}
        for k, v in self.engine.scan(P_ALARM, P_ALARM + b"\xff" * 9, 0):
            if len(k) == len(P_ALARM) + _MEMBER.size and len(v) == _VALUE.size:
                self._alarms[_MEMBER.unpack(k[len(P_ALARM):])[0]] = _VALUE.unpack(v)
        self.raised = bool(self._alarms)

    def active(self) -> dict[int, str]:
        """Member id -> alarm name, for every member with an alarm."""
        return {m: ALARM_NAMES.get(a[0], f"ALARM{a[0]}") for m, a in sorted(self._alarms.items())}

    def usage(self, member_id: int) -> tuple[int, int]:
        """The disk use and quota ``member_id`` reported with its alarm ((0, 0) if none)."""
        a = self._alarms.get(member_id)
        return (a[1], a[2]) if a else (0, 0)

    def apply(self, data: bytes, overlay: dict) -> object:
        """Apply one ALARM entry into ``overlay``; returns the alarms active after it."""
        if len(data) != _ENTRY.size:
            return DecodeError("command", f"alarm entry of {len(data)} bytes, not {_ENTRY.size}")
        _op, action, member, alarm, used, quota = _ENTRY.unpack(data)
        if action not in (0, 1) or alarm not in ALARM_NAMES:
            return DecodeError("command", f"alarm entry with action {action}, alarm {alarm}")
        if action == 1:
            if member == 0:
                return DecodeError("command", "an alarm is raised by a member (id 0 given)")
            self._alarms[member] = (alarm, used, quota)
            overlay[P_ALARM + _MEMBER.pack(member)] = _VALUE.pack(alarm, used, quota)
        else:
            for m in [m for m in self._alarms if member in (0, m)]:
                del self._alarms[m]
                overlay[P_ALARM + _MEMBER.pack(m)] = None
        self.raised = bool(self._alarms)
        return self.active()
