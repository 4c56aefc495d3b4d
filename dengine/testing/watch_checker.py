"""Watch checker: every watcher saw exactly the committed changes to its keys, in order.

A watcher's record is what it was asked (key, prefix, start revision) and what it received
(the updates of :meth:`dengine.client.Client.watch`, across any number of reconnects). The
truth is the sequence of committed changes, as the replicas' watch histories hold them (read
after the run from each node's state machine; :func:`histories_agree` checks the replicas hold
the same one). :func:`check_watcher` demands that the events delivered equal, one for one and in
order, the truth's changes to the watcher's keys with revision from its start through the last
revision it was told it had seen: no gap, no duplicate, no reordering, no invented event, and
positions that never go back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Change", "WatchRecord", "WatchCheckError", "check_watcher", "check_all",
           "changes_from_history", "histories_agree"]


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change: ``type`` ``"put"`` or ``"delete"``."""

    type: str
    key: bytes
    value: bytes
    revision: int


@dataclass(slots=True)
class WatchRecord:
    """What one watcher asked for and every update it received (in arrival order)."""

    key: bytes
    prefix: bool
    start_revision: int
    updates: list[Any] = field(default_factory=list)

    def matches(self, key: bytes) -> bool:
        return key.startswith(self.key) if self.prefix else key == self.key


class WatchCheckError(AssertionError):
    """A watcher's stream differs from the committed changes; the message says where."""


def _change(e: Any) -> Change:
    t = e.type if isinstance(e.type, str) else ("delete" if e.type == 1 else "put")
    return Change(t, bytes(e.key), bytes(e.value), e.revision)


def changes_from_history(history: Any, start: int = 1) -> list[Change]:
    """Every change a :class:`~dengine.statemachine.history.History` holds from ``start``."""
    out: list[Change] = []
    nxt = start
    while True:
        events, after = history.read(nxt, 4096)
        if after == nxt:
            return out
        out += [_change(e) for e in events]
        nxt = after


def histories_agree(histories: Sequence[list[Change]]) -> list[Change]:
    """The replicas' change lists agree where they overlap (a replica may lag or have
    compacted further); returns the longest. Raises :class:`WatchCheckError` otherwise."""
    if not histories:
        raise WatchCheckError("no history to check against")
    longest = max(histories, key=lambda h: h[-1].revision if h else 0)
    known = set(longest)
    for h in histories:
        for c in h:
            if c not in known:
                raise WatchCheckError(f"replicas disagree on the change {c}")
    return longest


def check_watcher(truth: Sequence[Change], rec: WatchRecord, name: str = "watcher") -> int:
    """Raise :class:`WatchCheckError` unless ``rec`` received exactly the truth's changes to
    its keys from its start through its last revision; returns how many it received."""
    got: list[Change] = []
    last = 0
    for u in rec.updates:
        if u.revision < last:
            raise WatchCheckError(f"{name}: position went back from {last} to {u.revision}")
        last = u.revision
        for e in u.events:
            if e.revision > u.revision:
                raise WatchCheckError(f"{name}: event at {e.revision} in an update at "
                                      f"{u.revision}")
            got.append(_change(e))
    if rec.start_revision < 1:
        raise WatchCheckError(f"{name}: give the checker an explicit start revision")
    want = [c for c in truth if rec.matches(c.key) and rec.start_revision <= c.revision <= last]
    if got != want:
        for i, (g, w) in enumerate(zip(got, want, strict=False)):
            if g != w:
                raise WatchCheckError(f"{name}: event {i} is {g}, the committed change there "
                                      f"is {w}")
        if len(got) > len(want):
            raise WatchCheckError(f"{name}: {len(got) - len(want)} events more than committed "
                                  f"(first extra {got[len(want)]})")
        raise WatchCheckError(f"{name}: missing {len(want) - len(got)} committed changes "
                              f"(first missing {want[len(got)]})")
    return len(got)


def check_all(truth: Sequence[Change], records: Iterable[WatchRecord]) -> int:
    """:func:`check_watcher` for every record; returns the events checked in all."""
    return sum(check_watcher(truth, r, f"watcher {i}") for i, r in enumerate(records))
