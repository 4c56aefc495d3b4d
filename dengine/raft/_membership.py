"""Membership in force: configs take effect when their entry is appended (thesis §4.1).

A node always uses the latest config in its log, committed or not. So the core keeps the
history of configs of the uncompacted log: ``conf_log`` is ``[(index, config), ...]``, the
first item being the config at the snapshot point; a CONF_CHANGE entry appended (by a leader
proposing, or a follower accepting an append) pushes a new item, and a follower that truncates
its log pops the items of the entries it lost, falling back to the config before them.

One change may be pending at a time (``pending_conf_index > commit_index`` refuses another), so
at most one uncommitted config exists and two disjoint majorities never decide in one term
(thesis §4.3). A joint config entered with ``auto_leave`` is left by the leader as soon as the
entry that entered it commits; a leader not among the voters steps down once that is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import TYPE_CHECKING

from dengine.errors import ConfChangeError, DecodeError
from dengine.raft.confchange import (
    ConfChange,
    apply_conf_change,
    decode_conf_change,
    encode_conf_change,
)
from dengine.raft.log import iter_chunks
from dengine.raft.ready import Role
from dengine.raft.tracker import QuorumConfig
from dengine.raft.types import Entry, EntryKind

if TYPE_CHECKING:
    from dengine.raft.core import RaftCore

CONF = int(EntryKind.CONF_CHANGE)
_KIND = itemgetter(2)


def has_conf_entries(entries: Sequence[Entry]) -> bool:
    return any(map(_KIND, entries))


def replay(core: RaftCore, base: QuorumConfig, base_index: int) -> None:
    """Set the history from the config at the snapshot point plus the held log's changes."""
    core.conf_log = [(base_index, base)]
    lg = core.log
    for chunk in iter_chunks(lg.storage, lg.first_index, lg.last_index + 1):
        if has_conf_entries(chunk):
            _push_entries(core, chunk)
    _install(core, core.conf_log[-1][1])


def on_appended(core: RaftCore, entries: Sequence[Entry]) -> None:
    """New entries joined the log (after any truncation was undone by ``on_truncated``)."""
    if has_conf_entries(entries):
        before = core.conf_log[-1][1]
        _push_entries(core, entries)
        if core.conf_log[-1][1] is not before:
            _install(core, core.conf_log[-1][1])


def on_truncated(core: RaftCore, after: int) -> None:
    """Entries after ``after`` were dropped: so are the configs they carried."""
    log = core.conf_log
    if log[-1][0] <= after:
        return
    while len(log) > 1 and log[-1][0] > after:
        log.pop()
    _install(core, log[-1][1])


def on_compacted(core: RaftCore, index: int) -> None:
    """The log up to ``index`` is compacted: fold the configs at or before it into the base."""
    log = core.conf_log
    k = 0
    while k + 1 < len(log) and log[k + 1][0] <= index:
        k += 1
    core.conf_log = [(index, log[k][1])] + log[k + 1 :]


def reset(core: RaftCore, index: int, config: QuorumConfig) -> None:
    """A snapshot replaced the whole log."""
    core.conf_log = [(index, config)]
    _install(core, config)


def config_at(core: RaftCore, index: int) -> QuorumConfig:
    """The config in force once the log ends at ``index`` (for snapshot metadata)."""
    found = core.conf_log[0][1]
    for at, cfg in core.conf_log:
        if at > index:
            break
        found = cfg
    return found


def _push_entries(core: RaftCore, entries: Sequence[Entry]) -> None:
    cfg = core.conf_log[-1][1]
    for e in entries:
        if e.kind != CONF:
            continue
        try:
            cfg = apply_conf_change(cfg, decode_conf_change(e.data))
        except (ConfChangeError, DecodeError):
            # Deterministic on every node: a bad entry changes nothing anywhere.
            continue
        core.conf_log.append((e.index, cfg))


def _install(core: RaftCore, cfg: QuorumConfig) -> None:
    tracker = core.tracker
    if tracker.config == cfg:
        return
    tracker.set_config(cfg, next_index=core.log.last_index + 1)
    me = tracker.progress.get(core.id)
    if core.role == Role.LEADER and me is not None:
        me.match_index = max(me.match_index, core.log.persisted_index)
    voter = core.promotable
    if core.role in (Role.FOLLOWER, Role.LEARNER):
        core.role = Role.FOLLOWER if voter else Role.LEARNER
    elif core.role in (Role.PRE_CANDIDATE, Role.CANDIDATE) and not voter:
        core.become_follower(core.term, 0)


# -- leader side ------------------------------------------------------------------------------
def propose(core: RaftCore, cc: ConfChange) -> int:
    """Validate and append a change; returns its index. Raises ConfChangeError."""
    lg = core.log
    if core.pending_conf_index > lg.committed:
        raise ConfChangeError(
            f"the change at index {core.pending_conf_index} is not committed yet; retry after it"
        )
    current = core.tracker.config
    if current.joint and not cc.leaves_joint:
        raise ConfChangeError("the config is joint; leave it before the next change")
    for ch in cc.changes:
        if ch.node_id <= 0:
            raise ConfChangeError(f"node id {ch.node_id} is not positive")
    apply_conf_change(current, cc)  # raises when not allowed
    return _append(core, encode_conf_change(cc))


def _append(core: RaftCore, data: bytes) -> int:
    from dengine.raft import _leader

    index = _leader.append_entries(core, (data,), CONF)
    core.pending_conf_index = index
    return index


def after_commit(core: RaftCore) -> None:
    """Leader: leave a joint config once its entry committed; step down if removed."""
    lg = core.log
    cfg = core.tracker.config
    if core.pending_conf_index > lg.committed:
        return
    if cfg.joint and cfg.auto_leave:
        _append(core, encode_conf_change(ConfChange()))
        return
    if not cfg.is_voter(core.id):
        from dengine.raft import _leader

        _leader.bcast_append(core)  # tell the followers the commit before going
        core.become_follower(core.term, 0)
