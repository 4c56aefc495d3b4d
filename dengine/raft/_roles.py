"""The step logic of RaftCore: validation, the term rules, and per-role handlers.

``step`` validates a message, applies the term rules common to every role (Raft figure 2, "all
servers"; pre-vote and leader stickiness from thesis §9.6), then calls the handler that
``TABLE[(role, type)]`` names. A type a role has no handler for is dropped with a reason.
The functions take the core as their first argument and change it only through its methods and
its components (``out``, ``reads``, ``membership``, ``log``, ``tracker``): only ``core.py``
assigns the core's fields (a test checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import gt
from typing import TYPE_CHECKING

from dengine._core import quorum
from dengine.errors import NotLeader
from dengine.raft import _leader
from dengine.raft.messages import CAMPAIGN_TRANSFER, LOCAL_TYPES, Message, MessageType
from dengine.raft.ready import Role

if TYPE_CHECKING:
    from dengine.raft.core import RaftCore

MT = MessageType
MAX_U64 = (1 << 64) - 1

#: Types sent by a leader of ``term``: a follower that knows no leader adopts the sender.
FROM_LEADER = frozenset({MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT})

#: Types accepted from a node outside our config. A lagging node may not know yet the change
#: that added the sender: a new leader must reach it, and a new voter's campaign may need its
#: vote. Answering these is always safe (term rules, log comparison); everything else from a
#: stranger is dropped.
FROM_UNKNOWN = FROM_LEADER | {MT.VOTE, MT.PRE_VOTE}


# -- validation -------------------------------------------------------------------------------
def invalid_reason(core: RaftCore, m: Message) -> str | None:
    """Why a peer's message cannot be processed at all, or None when it is well formed."""
    if m.type in LOCAL_TYPES:
        return None if m.from_ == core.id else "local message type from a peer"
    if m.to != core.id:
        return f"addressed to node {m.to}"
    if m.from_ == core.id:
        return "message from ourselves"
    if not (0 < m.term <= MAX_U64):
        return "term out of range"
    if not (
        0 <= m.index <= MAX_U64
        and 0 <= m.log_term <= MAX_U64
        and 0 <= m.commit <= MAX_U64
        and 0 <= m.conflict_index <= MAX_U64
        and 0 <= m.conflict_term <= MAX_U64
        and 0 <= m.reject_hint <= MAX_U64
    ):
        return "index, term or commit field out of range"
    if m.from_ not in core.tracker.progress and m.type not in FROM_UNKNOWN and not (
        # A node added by a change that a later leader rolled back may still forward reads
        # to us: a stale one is refused with our term (``_term_rules``) so that it learns.
        m.type == MT.READ_INDEX and m.term < core.term
    ) and not (
        # We follow a leader our config does not know yet (a new node behind): the answer to
        # a read we forwarded to it, dropped, would leave the read waiting forever.
        m.type == MT.READ_INDEX_RESP and core.reads.forwarded_to(m.context) == m.from_
    ):
        return f"unknown sender {m.from_}"
    if m.type == MT.APPEND and m.entries:
        first, last = m.entries[0], m.entries[-1]
        if first.index != m.index + 1 or last.index != m.index + len(m.entries):
            return "append entries are not contiguous after the probe index"
        if first.term < m.log_term or last.term > m.term or last.term < first.term:
            return "append entry terms out of order"
        if len(m.entries) > 2 and first.term != last.term:
            terms = [e.term for e in m.entries]
            if any(map(gt, terms, terms[1:])):
                return "append entry terms out of order"
    return None


# -- step -------------------------------------------------------------------------------------
def step(core: RaftCore, m: Message) -> None:
    reason = invalid_reason(core, m)
    if reason is not None:
        core.out.drop(m, reason)
        return
    if m.term and not _term_rules(core, m):
        return
    handler = TABLE.get((core.role, m.type))
    if handler is None:
        if m.type not in IGNORED:
            core.out.drop(m, f"unexpected {m.type.name} for a {core.role.name}")
        return
    handler(core, m)


def _term_rules(core: RaftCore, m: Message) -> bool:
    """Raft's rules on terms; False when the message is fully handled (or dropped) here."""
    if m.term > core.term:
        in_lease = (
            core.cfg.check_quorum
            and (core.leader_id != 0 or core.restart_guard)
            and core.election_elapsed < core.cfg.election_ticks
        )
        if m.type in (MT.VOTE, MT.PRE_VOTE):
            force = m.context == CAMPAIGN_TRANSFER
            if in_lease and not force:
                # Leader stickiness (thesis §4.2.3): we hear from a live leader, or restarted
                # less than an election timeout ago and may have acked one whose lease holds.
                core.out.drop(m, "vote request while a leader is live (stickiness)")
                return False
        elif m.type in (MT.VOTE_RESP, MT.PRE_VOTE_RESP) and in_lease:
            # An answer to a campaign we made before we heard from our leader (or before a
            # restart): that election is over. Taking its newer term would drop the leader
            # our acks may hold a lease for, and a vote request of that term would then be
            # granted at once, inside the lease (the stickiness above checks only requests
            # that raise our term).
            core.out.drop(m, f"stale vote answer of term {m.term} while a leader is live")
            return False
        if m.type == MT.PRE_VOTE or (m.type == MT.PRE_VOTE_RESP and not m.reject):
            # A pre-vote never changes our term; a granted pre-vote response carries the
            # term the pre-candidate will campaign for.
            return True
        core.become_follower(m.term, m.from_ if m.type in FROM_LEADER else 0)
        if in_lease and m.type not in FROM_LEADER and m.type != MT.VOTE:
            # E.g. a refusal of a read we forwarded before a restart: the term is newer, but
            # our acks may still hold a lease; a vote request of this term must not get
            # through at once (``on_vote_request``).
            core.keep_lease_promise()
        return True
    if m.term < core.term:
        if m.type in (MT.APPEND, MT.HEARTBEAT) and (core.cfg.check_quorum or core.cfg.pre_vote):
            # Tell a stale leader the newer term so that it steps down (etcd: a node
            # partitioned with pre-vote would otherwise never disturb it, nor learn).
            core.reply(m, MT.APPEND_RESP)
        elif m.type == MT.PRE_VOTE:
            core.reply(m, MT.PRE_VOTE_RESP, reject=True)
        elif m.type == MT.READ_INDEX:
            # A follower forwarded a read to us while we led an older term: refuse it with the
            # newer term, so that it resets, fails its forwarded reads and learns of the new
            # term (dropped, the read would wait forever at a node no leader contacts).
            core.reply(m, MT.READ_INDEX_RESP, reject=True, context=m.context)
        else:
            core.out.drop(m, f"stale term {m.term} < {core.term}")
        return False
    return True


# -- elections --------------------------------------------------------------------------------
def on_hup(core: RaftCore, m: Message) -> None:
    if not core.promotable:
        core.become_follower_or_learner()  # the config that still counted us committed away
        core.out.drop(m, "a learner or removed node does not campaign")
        return
    campaign(core, pre=core.cfg.pre_vote, transfer=False)


def campaign(core: RaftCore, pre: bool, transfer: bool) -> None:
    if pre:
        core.become_pre_candidate()
        term, vote_type = core.term + 1, MT.PRE_VOTE
    else:
        core.become_candidate()
        term, vote_type = core.term, MT.VOTE
    core.tracker.record_vote(core.id, True)
    if core.tracker.tally() == quorum.VOTE_WON:
        # A single-voter config wins at once.
        if pre:
            campaign(core, pre=False, transfer=transfer)
        else:
            core.become_leader()
        return
    lg = core.log
    context = CAMPAIGN_TRANSFER if transfer else b""
    # The outbox holds a VOTE until our term and self-vote are durable; a PRE_VOTE leaves now.
    for peer in sorted(core.tracker.config.all_voters()):
        if peer != core.id:
            core.send_to(peer, vote_type, term=term, log_term=lg.last_term,
                         index=lg.last_index, context=context)
    core.log_role()


def on_vote_request(core: RaftCore, m: Message) -> None:
    """VOTE / PRE_VOTE in any role (Raft §5.2, §5.4.1; thesis §9.6)."""
    pre = m.type == MT.PRE_VOTE
    resp = MT.PRE_VOTE_RESP if pre else MT.VOTE_RESP
    can_vote = (
        core.vote == m.from_
        or (core.vote == 0 and core.leader_id == 0)
        or (pre and m.term > core.term)
    )
    if (not pre and core.vote != m.from_ and core.restart_guard and core.cfg.check_quorum
            and core.election_elapsed < core.cfg.election_ticks
            and m.context != CAMPAIGN_TRANSFER):
        can_vote = False  # inside a lease we may have acked (``keep_lease_promise``)
    if can_vote and core.log.is_up_to_date(m.index, m.log_term):
        # A granted response carries the candidate's term so it is not dropped as stale.
        if not pre:
            core.grant_vote(m.from_)
        core.reply(m, resp, term=m.term)
    else:
        core.reply(m, resp, reject=True)


def on_vote_response(core: RaftCore, m: Message) -> None:
    pre = core.role == Role.PRE_CANDIDATE
    if (m.type == MT.PRE_VOTE_RESP) != pre:
        return  # a response to an earlier phase of this election
    core.tracker.record_vote(m.from_, not m.reject)
    result = core.tracker.tally()
    if result == quorum.VOTE_WON:
        if pre:
            campaign(core, pre=False, transfer=False)
        else:
            core.become_leader()
    elif result == quorum.VOTE_LOST:
        core.become_follower(core.term, 0)


def on_timeout_now(core: RaftCore, m: Message) -> None:
    """A leader hands us leadership: campaign at once, bypassing pre-vote (thesis §3.10)."""
    if not core.promotable:
        core.out.drop(m, "a learner cannot take leadership")
        return
    campaign(core, pre=False, transfer=True)


# -- follower ---------------------------------------------------------------------------------
def on_append(core: RaftCore, m: Message) -> None:
    core.heard_from_leader(m.from_)
    lg = core.log
    if m.index < lg.committed:
        # Already committed here: tell the leader where we stand.
        core.reply(m, MT.APPEND_RESP, index=lg.committed)
        return
    last = lg.maybe_append(m.index, m.log_term, m.commit, m.entries)
    if lg.last_conflict:
        conflict = lg.last_conflict
        core.rewritten_from(conflict)
        core.membership.on_appended(m.entries[conflict - m.index - 1 :])
    if last >= 0:
        core.reply(m, MT.APPEND_RESP, index=last)
        return
    # Fast backtracking (etcd findConflictByTerm): our largest index at or below the probe
    # whose term is <= the leader's term there. The leader skips every entry after it that
    # cannot match, so a diverged log is fixed in one round trip.
    probe = min(m.index, lg.last_index)
    hint = lg.index.last_index_with_term_at_most(m.log_term, probe)
    core.reply(m, MT.APPEND_RESP, index=m.index, reject=True, reject_hint=lg.last_index,
               conflict_index=hint, conflict_term=max(lg.term(hint), 0))


def on_heartbeat(core: RaftCore, m: Message) -> None:
    core.heard_from_leader(m.from_)
    lg = core.log
    lg.commit_to(min(m.commit, lg.last_index))
    core.reply(m, MT.HEARTBEAT_RESP, index=m.index)


def on_snapshot(core: RaftCore, m: Message) -> None:
    """Install a leader's snapshot (its data came with it through the shell), unless our log
    already holds its point: then only the commit index moves (etcd's fast-forward)."""
    meta = m.snapshot
    if (
        meta is None
        or not 0 <= meta.term <= m.term
        or not 0 <= meta.index <= MAX_U64
        or not meta.conf_state.voters
    ):
        core.out.drop(m, "snapshot message without valid metadata")
        return
    core.heard_from_leader(m.from_)
    lg = core.log
    if meta.index <= lg.committed:
        core.out.drop(m, f"snapshot at {meta.index} is older than our commit index {lg.committed}")
        core.reply(m, MT.APPEND_RESP, index=lg.committed)
        return
    if lg.term(meta.index) == meta.term:
        # Fast-forward: our log holds the snapshot's point, so everything up to it matches
        # the leader's (log matching). Ack that, not our last index: the suffix after it was
        # never checked against the leader's log (etcd acks the commit index here too).
        lg.commit_to(meta.index)
        core.reply(m, MT.APPEND_RESP, index=lg.committed)
        return
    core.restore(meta)
    core.reply(m, MT.APPEND_RESP, index=meta.index)


def on_read_index_resp(core: RaftCore, m: Message) -> None:
    if not core.reads.on_answer(m.context, m.index, m.reject):
        core.out.drop(m, "read index response for no read we forwarded")


def on_read_index_not_leader(core: RaftCore, m: Message) -> None:
    """A follower asked us, not the leader: refuse so it can retry elsewhere."""
    core.reply(m, MT.READ_INDEX_RESP, reject=True, context=m.context)


def on_transfer_forward(core: RaftCore, m: Message) -> None:
    if core.leader_id and core.leader_id != m.from_:
        core.send_to(core.leader_id, MT.TRANSFER_LEADER, index=m.index)
    else:
        core.out.drop(m, "transfer request with no leader to forward it to")


# -- local API entry points -------------------------------------------------------------------
def read_index(core: RaftCore, context: bytes, lease: bool) -> None:
    if core.role == Role.LEADER:
        _leader.leader_read(core, context, core.id, lease)
        return
    if not core.leader_id:
        raise NotLeader(None)
    core.reads.forward(context, core.leader_id)
    core.send_to(core.leader_id, MT.READ_INDEX, context=context)


def transfer_leader(core: RaftCore, target: int) -> None:
    if core.role == Role.LEADER:
        reason = _leader.transfer(core, target)
        if reason:
            raise ValueError(f"cannot transfer leadership to node {target}: {reason}")
        return
    if not core.leader_id:
        raise NotLeader(None)
    core.send_to(core.leader_id, MT.TRANSFER_LEADER, index=target)


# -- the dispatch table -----------------------------------------------------------------------
Handler = Callable[["RaftCore", Message], None]

#: Types a role ignores silently (late responses of an earlier role are normal, not errors).
IGNORED = frozenset({MT.VOTE_RESP, MT.PRE_VOTE_RESP, MT.APPEND_RESP, MT.HEARTBEAT_RESP,
                     MT.BEAT, MT.CHECK_QUORUM, MT.READ_INDEX_RESP})


def _build_table() -> dict[tuple[Role, MessageType], Handler]:
    table: dict[tuple[Role, MessageType], Handler] = {}
    followers = (Role.FOLLOWER, Role.LEARNER)
    candidates = (Role.PRE_CANDIDATE, Role.CANDIDATE)
    for role in Role:
        table[(role, MT.VOTE)] = on_vote_request
        table[(role, MT.PRE_VOTE)] = on_vote_request
    for role in (*followers, *candidates):
        table[(role, MT.HUP)] = on_hup
        table[(role, MT.APPEND)] = on_append
        table[(role, MT.HEARTBEAT)] = on_heartbeat
        table[(role, MT.SNAPSHOT)] = on_snapshot
        table[(role, MT.READ_INDEX)] = on_read_index_not_leader
    for role in followers:
        table[(role, MT.TIMEOUT_NOW)] = on_timeout_now
        table[(role, MT.READ_INDEX_RESP)] = on_read_index_resp
        table[(role, MT.TRANSFER_LEADER)] = on_transfer_forward
    for role in candidates:
        table[(role, MT.VOTE_RESP)] = on_vote_response
        table[(role, MT.PRE_VOTE_RESP)] = on_vote_response
    table.update(_leader.TABLE)
    return table


TABLE = _build_table()

__all__ = ["TABLE", "step", "read_index", "transfer_leader"]
