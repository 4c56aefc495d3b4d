"""Membership in force: configs take effect when their entry is appended (thesis §4.1).

A node always uses the latest config in its log, committed or not. So :class:`Membership` keeps
the history of configs of the uncompacted log: ``history`` is ``[(index, config), ...]``, the
first item being the config at the snapshot point; a CONF_CHANGE entry appended (by a leader
proposing, or a follower accepting an append) pushes a new item, and a follower that truncates
its log pops the items of the entries it lost, falling back to the config before them.
Whenever the latest config changes, ``on_change`` (the core's ``install_config``) is called with
it: the core owns what a change does to its tracker and role.

One change may be pending at a time (``pending_index > commit_index`` refuses another), so at
most one uncommitted config exists and two disjoint majorities never decide in one term (thesis
§4.3). The leader's side (proposing, leaving a joint config, stepping down when removed) lives
in ``_leader``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter

from dengine.errors import ConfChangeError, DecodeError
from dengine.raft.confchange import ConfChange, apply_conf_change, decode_conf_change
from dengine.raft.log import LogReader, iter_chunks
from dengine.raft.tracker import QuorumConfig
from dengine.raft.types import Entry, EntryKind

CONF = int(EntryKind.CONF_CHANGE)
_KIND = itemgetter(2)


def has_conf_entries(entries: Sequence[Entry]) -> bool:
    return any(map(_KIND, entries))


class Membership:
    """The configs of the held log and the pending change.

    Invariants: ``history`` is never empty and its indexes increase; ``history[0]`` is the
    config at the snapshot point; ``history[-1]`` is the config in force.
    """

    __slots__ = ("history", "pending_index", "_on_change")

    def __init__(self, base_index: int, base: QuorumConfig,
                 on_change: Callable[[QuorumConfig], None]) -> None:
        self.history: list[tuple[int, QuorumConfig]] = [(base_index, base)]
        #: Index of the latest change a leader appended (one pending at a time).
        self.pending_index = 0
        self._on_change = on_change

    @property
    def latest(self) -> QuorumConfig:
        return self.history[-1][1]

    @property
    def has_changes(self) -> bool:
        """True when the held log carries a change after the snapshot point."""
        return len(self.history) > 1

    def replay(self, reader: LogReader, first: int, last: int) -> None:
        """Push the changes of the persisted log ``[first, last]`` (on start)."""
        for chunk in iter_chunks(reader, first, last + 1):
            if has_conf_entries(chunk):
                self._push_entries(chunk)
        self._on_change(self.latest)

    def on_appended(self, entries: Sequence[Entry]) -> None:
        """New entries joined the log (after any truncation was undone by ``on_truncated``)."""
        if has_conf_entries(entries):
            before = self.latest
            self._push_entries(entries)
            if self.latest is not before:
                self._on_change(self.latest)

    def on_truncated(self, after: int) -> None:
        """Entries after ``after`` were dropped: so are the configs they carried."""
        log = self.history
        if log[-1][0] <= after:
            return
        while len(log) > 1 and log[-1][0] > after:
            log.pop()
        self._on_change(self.latest)

    def on_compacted(self, index: int) -> None:
        """The log up to ``index`` is compacted: fold the configs at or before it into the base."""
        log = self.history
        k = 0
        while k + 1 < len(log) and log[k + 1][0] <= index:
            k += 1
        self.history = [(index, log[k][1])] + log[k + 1 :]

    def reset(self, index: int, config: QuorumConfig) -> None:
        """A snapshot replaced the whole log."""
        self.history = [(index, config)]
        self._on_change(config)

    def config_at(self, index: int) -> QuorumConfig:
        """The config in force once the log ends at ``index`` (for snapshot metadata)."""
        found = self.history[0][1]
        for at, cfg in self.history:
            if at > index:
                break
            found = cfg
        return found

    def check_proposal(self, cc: ConfChange, committed: int) -> None:
        """Raise ConfChangeError unless ``cc`` may be proposed now."""
        if self.pending_index > committed:
            raise ConfChangeError(
                f"the change at index {self.pending_index} is not committed yet; retry after it"
            )
        current = self.latest
        if current.joint and not cc.leaves_joint:
            raise ConfChangeError("the config is joint; leave it before the next change")
        for ch in cc.changes:
            if ch.node_id <= 0:
                raise ConfChangeError(f"node id {ch.node_id} is not positive")
        apply_conf_change(current, cc)  # raises when not allowed

    def mark_pending(self, index: int) -> None:
        """A change (or, for a new leader, possibly one) sits at ``index``."""
        self.pending_index = index

    def _push_entries(self, entries: Sequence[Entry]) -> None:
        cfg = self.latest
        for e in entries:
            if e.kind != CONF:
                continue
            try:
                cfg = apply_conf_change(cfg, decode_conf_change(e.data))
            except (ConfChangeError, DecodeError):
                # Deterministic on every node: a bad entry changes nothing anywhere.
                continue
            self.history.append((e.index, cfg))
