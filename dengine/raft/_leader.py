"""The leader's half of RaftCore: replication, commit, heartbeats, reads, transfer.

Replication follows etcd-io/raft: a Progress per follower (``tracker``), appends streamed in
REPLICATE state within an inflight window, one probe per heartbeat in PROBE state, and fast
backtracking on rejection. The leader's own entry in the tracker moves only when the shell
reports its fsync done (``self_persisted``), so the leader counts itself in the quorum only for
entries it holds durably, while its appends to followers leave before that fsync ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from typing import TYPE_CHECKING

from dengine.errors import InvariantViolation
from dengine.raft.confchange import ConfChange, encode_conf_change
from dengine.raft.messages import Message, MessageType
from dengine.raft.ready import Role
from dengine.raft.tracker import Progress, ProgressState
from dengine.raft.types import Entry, EntryKind

if TYPE_CHECKING:
    from dengine.raft.core import RaftCore

MT = MessageType
CONF = int(EntryKind.CONF_CHANGE)
_make_entry = Entry._make
REPLICATE = ProgressState.REPLICATE
PROBE = ProgressState.PROBE
SNAPSHOT = ProgressState.SNAPSHOT


# -- appending and sending --------------------------------------------------------------------
def append_entries(core: RaftCore, payloads: Sequence[bytes], kind: int) -> int:
    """Append payloads as entries of the current term; send them; returns the last index."""
    lg = core.log
    term = core.term
    first = lg.last_index + 1
    n = len(payloads)
    entries = list(map(_make_entry, zip(repeat(term, n), range(first, first + n),
                                         repeat(kind, n), payloads, strict=True)))
    last = lg.append(entries)
    if kind:
        core.membership.on_appended(entries)
    bcast_append(core)
    return last


def bcast_append(core: RaftCore) -> None:
    me = core.id
    for peer, pr in core.tracker.progress.items():
        if peer != me:
            send_append(core, peer, pr, True)


def send_append(core: RaftCore, peer: int, pr: Progress, send_if_empty: bool) -> bool:
    """Send ``peer`` the entries from its next index, if its window allows; True if sent."""
    if pr.is_paused():
        return False
    lg = core.log
    prev = pr.next_index - 1
    prev_term = lg.index.maybe_term(prev)
    if prev_term < 0:
        # Compacted below the follower's next index: only a snapshot can catch it up.
        return send_snapshot(core, peer, pr)
    last = lg.last_index
    entries: list[Entry] = []
    if prev < last:
        hi = min(last + 1, pr.next_index + core.cfg.max_msg_entries)
        entries = lg.entries(pr.next_index, hi, core.cfg.max_msg_bytes)
    if not entries and not send_if_empty:
        return False
    commit = lg.committed
    core.send_to(peer, MT.APPEND, log_term=prev_term, index=prev, entries=tuple(entries),
                 commit=commit)
    pr.sent(commit, entries)
    return True


def commit_to_send(core: RaftCore) -> bool:
    """True when some follower in REPLICATE has not been told the latest commit index (and
    it may be told now: ``RaftConfig.commit_on_tick``)."""
    if not core.commit_flush_due():
        return False
    committed = core.log.committed
    me = core.id
    for peer, pr in core.tracker.progress.items():
        if peer != me and pr.sent_commit < committed and pr.state == REPLICATE \
                and not pr.inflights.full():
            return True
    return False


def flush_leader(core: RaftCore) -> None:
    """Before a Ready: start a read round if reads wait; tell followers the new commit.

    Both are coalesced to once per Ready, so a burst of acks or reads costs one message per
    follower rather than one per event; with ``commit_on_tick``, commit-only appends go out at
    most once per tick.
    """
    if core.reads.rounds.round_due():
        bcast_heartbeat(core)
    if not core.commit_flush_due():
        return
    core.commit_flushed()
    committed = core.log.committed
    me = core.id
    for peer, pr in core.tracker.progress.items():
        if peer != me and pr.sent_commit < committed and pr.state == REPLICATE:
            send_append(core, peer, pr, True)


def bcast_heartbeat(core: RaftCore) -> None:
    rnd = core.reads.rounds.start_round(core.now)
    committed = core.log.committed
    me = core.id
    for peer, pr in core.tracker.progress.items():
        if peer != me:
            # A follower may not hold our commit index yet; never tell it past its match.
            core.send_to(peer, MT.HEARTBEAT, commit=min(pr.match_index, committed), index=rnd)
    _confirm_reads(core)  # a single-voter config confirms at once


# -- commit -----------------------------------------------------------------------------------
def maybe_commit(core: RaftCore) -> bool:
    """Commit what a quorum holds, if it is of the current term (Raft §5.4.2)."""
    lg = core.log
    index = core.tracker.committed()
    if index <= lg.committed:
        return False
    if index > lg.last_index:
        raise InvariantViolation(f"a quorum matches index {index}, past our last index "
                                 f"{lg.last_index}")
    if not core.may_commit_by_counting(index):
        return False
    first_in_term = lg.term(lg.committed) != core.term
    lg.commit_to(index)
    after_commit(core)
    if core.role != Role.LEADER:
        return True
    if first_in_term and core.reads.until_commit:
        for context, requester, lease in core.reads.take_until_commit():
            leader_read(core, context, requester, lease)
    return True


def self_persisted(core: RaftCore) -> None:
    me = core.tracker.progress.get(core.id)
    if me is not None and me.self_persisted_to(core.log.persisted_index):
        maybe_commit(core)


# -- timers -----------------------------------------------------------------------------------
def on_beat(core: RaftCore, m: Message) -> None:
    bcast_heartbeat(core)


def on_check_quorum(core: RaftCore, m: Message) -> None:
    """Step down when a quorum has not been heard from for an election timeout (§6.2)."""
    tracker = core.tracker
    if not tracker.quorum_active(core.id):
        core.become_follower(core.term, 0)
        return
    tracker.reset_recent_active(core.id)


# -- responses --------------------------------------------------------------------------------
def on_append_resp(core: RaftCore, m: Message) -> None:
    pr = core.tracker.progress.get(m.from_)
    if pr is None:
        core.out.drop(m, f"append response from non-member {m.from_}")
        return
    lg = core.log
    if m.index > lg.last_index:
        core.out.drop(m, f"acknowledges index {m.index} past our last index {lg.last_index}")
        return
    pr.heard()
    if m.reject:
        _on_reject(core, m, pr)
        return
    was_paused = pr.is_paused()
    if pr.maybe_update(m.index):
        if pr.state == PROBE:
            pr.become_replicate()
        elif pr.state == SNAPSHOT and pr.match_index >= pr.pending_snapshot:
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == REPLICATE:
            pr.inflights.free_le(m.index)
        maybe_commit(core)
        while send_append(core, m.from_, pr, False):
            pass
        if m.from_ == core.lead_transferee and pr.match_index == lg.last_index:
            send_timeout_now(core, m.from_)
    elif was_paused and not pr.is_paused():
        send_append(core, m.from_, pr, False)


def _on_reject(core: RaftCore, m: Message, pr: Progress) -> None:
    # Fast backtracking: the follower's hint (conflict_index, conflict_term) names its last
    # entry that may match; our own largest index at or below it with a term <= that term is
    # where the logs can agree, so the next probe goes right after it.
    lg = core.log
    probe = m.conflict_index
    if m.conflict_term > 0:
        probe = lg.index.last_index_with_term_at_most(m.conflict_term, probe)
    if pr.maybe_decr_to(m.index, probe + 1):
        if pr.state == REPLICATE:
            pr.become_probe()
        send_append(core, m.from_, pr, True)


def on_heartbeat_resp(core: RaftCore, m: Message) -> None:
    pr = core.tracker.progress.get(m.from_)
    if pr is None:
        core.out.drop(m, f"heartbeat response from non-member {m.from_}")
        return
    ro = core.reads.rounds
    if m.index > ro.round:
        core.out.drop(m, f"heartbeat round {m.index} was never sent")
        return
    pr.on_heartbeat_resp()
    if pr.match_index < core.log.last_index:
        # Empty when everything was sent: its probe index then finds a lost append.
        send_append(core, m.from_, pr, True)
    ro.ack(m.from_, m.index)
    if ro.pending or core.cfg.lease_ticks:
        _confirm_reads(core)


# -- reads ------------------------------------------------------------------------------------
def leader_read(core: RaftCore, context: bytes, requester: int, lease: bool) -> None:
    lg = core.log
    if lg.term(lg.committed) != core.term:
        # Until an entry of our term commits we do not know the latest commit index (§6.4).
        core.reads.wait_for_commit(context, requester, lease)
        return
    if lease and core.lease_valid():
        _release(core, context, lg.committed, requester)
        return
    core.reads.rounds.add(context, lg.committed, requester)
    if len(core.tracker.config.all_voters()) == 1 and core.tracker.config.is_voter(core.id):
        bcast_heartbeat(core)


def on_read_index(core: RaftCore, m: Message) -> None:
    leader_read(core, m.context, m.from_, False)


def _confirm_reads(core: RaftCore) -> None:
    cfg = core.tracker.config
    for req in core.reads.rounds.confirm(cfg.voters, cfg.voters_outgoing, core.id):
        _release(core, req.context, req.index, req.requester)


def _release(core: RaftCore, context: bytes, index: int, requester: int) -> None:
    if requester == core.id:
        core.reads.serve(context, index)
    else:
        core.send_to(requester, MT.READ_INDEX_RESP, index=index, context=context)


def fail_pending_reads(core: RaftCore) -> None:
    """Leadership is lost: every read still waiting fails (the caller retries)."""
    for context, requester in core.reads.lose_leadership(core.id):
        core.send_to(requester, MT.READ_INDEX_RESP, reject=True, context=context)


# -- leadership transfer ----------------------------------------------------------------------
def transfer(core: RaftCore, target: int) -> str:
    """Start a transfer to ``target``; returns why it cannot, or '' when started."""
    if target == core.id:
        return "it is already the leader"
    pr = core.tracker.progress.get(target)
    if pr is None or pr.is_learner:
        return "it is not a voter"
    if core.lead_transferee == target:
        return ""
    core.start_transfer(target)
    if pr.match_index == core.log.last_index:
        send_timeout_now(core, target)
    else:
        send_append(core, target, pr, True)
    return ""


def send_timeout_now(core: RaftCore, target: int) -> None:
    # Once the target may campaign past stickiness, our lease is no longer safe this term.
    core.reads.void_lease()
    core.send_to(target, MT.TIMEOUT_NOW)


def on_transfer_leader(core: RaftCore, m: Message) -> None:
    reason = transfer(core, m.index)
    if reason:
        core.out.drop(m, f"transfer to node {m.index} refused: {reason}")


# -- snapshots --------------------------------------------------------------------------------
def send_snapshot(core: RaftCore, peer: int, pr: Progress) -> bool:
    """Move ``peer`` to SNAPSHOT state and ask the shell to stream our latest snapshot."""
    meta = core.snapshot_meta
    if meta is None or pr.state == SNAPSHOT:
        return False
    pr.become_snapshot(meta.index)
    core.send_to(peer, MT.SNAPSHOT, snapshot=meta, commit=core.log.committed)
    return True


def report_snapshot(core: RaftCore, peer: int, success: bool) -> None:
    """The shell's stream of a snapshot to ``peer`` ended; on failure probe again."""
    pr = core.tracker.progress.get(peer)
    if core.role != Role.LEADER or pr is None or pr.state != SNAPSHOT:
        return
    pr.on_snapshot_report(success)


# -- membership changes (thesis §4.1-4.3) ------------------------------------------------------
def propose_conf_change(core: RaftCore, cc: ConfChange) -> int:
    """Validate and append a change; returns its index. Raises ConfChangeError."""
    core.membership.check_proposal(cc, core.log.committed)
    return _append_conf(core, encode_conf_change(cc))


def _append_conf(core: RaftCore, data: bytes) -> int:
    index = append_entries(core, (data,), CONF)
    core.membership.mark_pending(index)
    return index


def after_commit(core: RaftCore) -> None:
    """Leave a joint config once its entry committed; step down if removed."""
    cfg = core.tracker.config
    if core.membership.pending_index > core.log.committed:
        return
    if cfg.joint and cfg.auto_leave:
        _append_conf(core, encode_conf_change(ConfChange()))
        return
    if not cfg.is_voter(core.id):
        bcast_append(core)  # tell the followers the commit before going
        core.become_follower(core.term, 0)


Handler = Callable[["RaftCore", Message], None]

TABLE: dict[tuple[Role, MessageType], Handler] = {
    (Role.LEADER, MT.BEAT): on_beat,
    (Role.LEADER, MT.CHECK_QUORUM): on_check_quorum,
    (Role.LEADER, MT.APPEND_RESP): on_append_resp,
    (Role.LEADER, MT.HEARTBEAT_RESP): on_heartbeat_resp,
    (Role.LEADER, MT.READ_INDEX): on_read_index,
    (Role.LEADER, MT.TRANSFER_LEADER): on_transfer_leader,
}
