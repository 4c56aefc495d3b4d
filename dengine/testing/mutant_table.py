"""The rule mutants of ``dengine/raft/``: each breaks one safety rule by a small textual patch.

A mutant is a list of (file, old, new) edits; ``old`` must occur exactly once in its file (the
gate fails loudly otherwise, so a refactor of the core that moves a rule breaks its mutant
rather than silently testing nothing). Each names the rule it breaks and where the rule comes
from (Raft figure 2, the thesis, or a defect this project fixed).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MUTANTS", "Mutant"]


@dataclass(frozen=True, slots=True)
class Mutant:
    name: str
    rule: str
    #: (path relative to the ``dengine`` package, old snippet, new snippet)
    edits: tuple[tuple[str, str, str], ...]


def _m(name: str, rule: str, path: str, old: str, new: str) -> Mutant:
    return Mutant(name, rule, ((path, old, new),))


MUTANTS: tuple[Mutant, ...] = (
    # -- elections (figure 2, RequestVote; §5.2, §5.4.1) ----------------------------------------
    _m("vote_without_log_check", "RequestVote rule 2: grant only to an up-to-date log (§5.4.1)",
       "raft/_roles.py",
       "if can_vote and core.log.is_up_to_date(m.index, m.log_term):",
       "if can_vote:"),
    _m("vote_twice_in_a_term", "RequestVote rule 2: at most one vote per term (§5.2)",
       "raft/_roles.py",
       "or (core.vote == 0 and core.leader_id == 0)",
       "or (core.leader_id == 0)"),
    _m("candidate_does_not_vote_for_itself", "a candidate votes for itself (§5.2)",
       "raft/core.py",
       "self._reset(self.term + 1)\n        self.vote = self.id",
       "self._reset(self.term + 1)"),
    _m("stale_vote_answers_counted", "answers of an older term are ignored (figure 2)",
       "raft/_roles.py",
       'core.out.drop(m, f"stale term {m.term} < {core.term}")\n        return False',
       'core.out.drop(m, f"stale term {m.term} < {core.term}")\n'
       "        return m.type == MT.VOTE_RESP"),
    _m("vote_answer_before_durable", "a vote answer leaves only once the vote is durable "
       "(figure 2: persist before responding; AFTER_PERSIST)",
       "raft/outbox.py",
       "AFTER_PERSIST = frozenset({MT.VOTE, MT.VOTE_RESP, MT.APPEND_RESP})",
       "AFTER_PERSIST = frozenset({MT.VOTE, MT.APPEND_RESP})"),
    _m("pre_vote_records_a_vote", "a granted pre-vote changes nothing durable (thesis §9.6)",
       "raft/_roles.py",
       "if not pre:\n            core.grant_vote(m.from_)",
       "core.grant_vote(m.from_)"),
    # -- replication (figure 2, AppendEntries; §5.3, §5.4.2) ------------------------------------
    _m("append_ack_before_durable", "an append ack leaves only once its entries are durable",
       "raft/outbox.py",
       "AFTER_PERSIST = frozenset({MT.VOTE, MT.VOTE_RESP, MT.APPEND_RESP})",
       "AFTER_PERSIST = frozenset({MT.VOTE, MT.VOTE_RESP})"),
    _m("follower_commit_not_capped", "AppendEntries rule 5: commit = min(leaderCommit, index of "
       "the last new entry)",
       "raft/log.py",
       "self.commit_to(min(commit, last_new))",
       "self.commit_to(min(commit, self.index.last_index))"),
    _m("heartbeat_commit_not_capped", "a heartbeat never tells a follower a commit index past "
       "its match (the follower's log may differ beyond it)",
       "raft/_leader.py",
       "commit=min(pr.match_index, committed), index=rnd",
       "commit=committed, index=rnd"),
    _m("commit_old_term_by_counting", "only current-term entries commit by counting (§5.4.2, "
       "figure 8)",
       "raft/core.py",
       "return self.log.term(index) == self.term",
       "return True"),
    _m("truncate_without_conflict_check", "AppendEntries rule 3: delete only entries that "
       "conflict; the consistency check at prevLogIndex (rule 2)",
       "raft/log.py",
       "if self.index.maybe_term(prev_index) != prev_term:\n            return -1",
       "if self.index.maybe_term(prev_index) < 0:\n            return -1"),
    _m("no_noop_on_election", "a new leader appends an entry of its term (§8), so earlier "
       "entries commit",
       "raft/core.py",
       '_leader.append_entries(self, (b"",), 0)',
       "pass"),
    # -- reads (thesis §6.4, §6.4.1) ------------------------------------------------------------
    _m("read_index_without_round", "ReadIndex confirms leadership with a heartbeat round",
       "raft/_leader.py",
       "    core.reads.rounds.add(context, lg.committed, requester)\n",
       "    return _release(core, context, lg.committed, requester)\n"),
    _m("read_index_counts_old_round_acks", "a read waits for acks of its own round or later",
       "raft/_leader.py",
       "ro.ack(m.from_, m.index)",
       "ro.ack(m.from_, ro.round)"),
    _m("read_before_first_commit", "a new leader serves reads only after an entry of its "
       "term commits (§6.4)",
       "raft/_leader.py",
       "    if lg.term(lg.committed) != core.term:\n        # Until",
       "    if False:\n        # Until"),
    _m("lease_never_expires", "a lease ends lease_ticks after the round that started it",
       "raft/read_only.py",
       "return not self.lease_void and start >= 0 and now < start + lease_ticks",
       "return not self.lease_void and start >= 0"),
    _m("no_leader_stickiness", "a follower that hears from a leader refuses votes for an "
       "election timeout (thesis §4.2.3)",
       "raft/_roles.py",
       "and (core.leader_id != 0 or core.restart_guard)",
       "and core.restart_guard"),
    _m("no_restart_guard", "a restarted node refuses votes for an election timeout (it may "
       "have acked a lease before the crash)",
       "raft/core.py",
       "self.restart_guard = hs.term > 0",
       "self.restart_guard = False"),
    _m("transfer_keeps_lease", "a leader that starts a transfer stops serving lease reads "
       "(the target campaigns past stickiness, thesis §3.10)",
       "raft/_leader.py",
       "    core.reads.void_lease()\n",
       "    pass\n"),
    _m("no_check_quorum", "a leader that has not heard from a quorum for an election timeout "
       "steps down (thesis §6.2)",
       "raft/_leader.py",
       "if not tracker.quorum_active(core.id):",
       "if False:"),
    # -- membership (thesis §4.1-4.3) -----------------------------------------------------------
    _m("joint_commit_ignores_outgoing", "a joint config commits with majorities of both halves",
       "raft/tracker.py",
       "return quorum.joint_commit_index(self.voters, self.voters_outgoing, match)",
       "return quorum.commit_index(self.voters, match)"),
    _m("joint_vote_ignores_outgoing", "a joint config elects with majorities of both halves",
       "raft/tracker.py",
       "return quorum.joint_vote_result(self.voters, self.voters_outgoing, votes)",
       "return quorum.vote_result(self.voters, votes)"),
    _m("several_voters_without_joint", "a change of several voters goes through a joint config",
       "raft/confchange.py",
       "    if not joint:\n        if len(old ^ voters) > 1:",
       "    if not joint or len(cc.changes) > 1:\n        if False:"),
    _m("two_changes_pending", "one membership change at a time: the next waits for the "
       "previous to commit",
       "raft/_membership.py",
       "if self.pending_index > committed:",
       "if False:"),
    # -- snapshots --------------------------------------------------------------------------------
    _m("install_older_snapshot", "a snapshot at or below the commit index is not installed",
       "raft/_roles.py",
       "    if meta.index <= lg.committed:\n        core.out.drop(",
       "    if False:\n        core.out.drop("),
    # -- rules added after the first gate: one more of each kind, tried on unseen seeds -------
    _m("vote_refusals_counted", "a candidate counts only granted votes (§5.2)",
       "raft/_roles.py",
       "core.tracker.record_vote(m.from_, not m.reject)",
       "core.tracker.record_vote(m.from_, True)"),
    _m("campaign_claims_its_term", "a vote request carries the candidate's last log term "
       "(§5.4.1)",
       "raft/_roles.py",
       "core.send_to(peer, vote_type, term=term, log_term=lg.last_term,",
       "core.send_to(peer, vote_type, term=term, log_term=term,"),
    _m("new_term_keeps_vote", "a new term starts with no vote (figure 2: votedFor is per term)",
       "raft/core.py",
       "            self.term = term\n            self.vote = 0",
       "            self.term = term"),
    _m("leader_counts_itself_before_fsync", "a leader counts itself for an entry only once its "
       "own disk holds it (§10.2.1)",
       "raft/_leader.py",
       "    bcast_append(core)\n    return last",
       "    core.tracker.progress[core.id].maybe_update(last)\n    bcast_append(core)\n"
       "    return last"),
    _m("committed_probe_acks_last_index", "an append below the commit index acks the commit "
       "index, not the unchecked suffix",
       "raft/_roles.py",
       "        core.reply(m, MT.APPEND_RESP, index=lg.committed)\n        return\n"
       "    last = lg.maybe_append",
       "        core.reply(m, MT.APPEND_RESP, index=lg.last_index)\n        return\n"
       "    last = lg.maybe_append"),
    _m("fast_forward_without_term_check", "a snapshot fast-forwards only a log that holds its "
       "point at its term",
       "raft/_roles.py",
       "if lg.term(meta.index) == meta.term:",
       "if lg.term(meta.index) > 0:"),
    _m("read_index_at_applied", "a ReadIndex read waits for the commit index, not the applied "
       "one (§6.4)",
       "raft/_leader.py",
       "core.reads.rounds.add(context, lg.committed, requester)",
       "core.reads.rounds.add(context, lg.applied, requester)"),
    _m("follower_read_ignores_index", "a follower serves a forwarded read once it applied the "
       "leader's read index (§6.4)",
       "raft/_roles.py",
       "core.reads.on_answer(m.context, m.index, m.reject)",
       "core.reads.on_answer(m.context, 0, m.reject)"),
    _m("lease_read_without_lease", "a lease read is served at once only while the lease holds",
       "raft/_leader.py",
       "if lease and core.lease_valid():",
       "if lease:"),
    _m("lease_from_unconfirmed_round", "a lease starts at the latest round a quorum acked, not "
       "the latest sent",
       "raft/read_only.py",
       "tick = self.round_tick.get(confirmed)",
       "tick = self.round_tick.get(self.round)"),
    _m("new_leader_no_pending_change", "a new leader counts its whole log as a possibly pending "
       "change until an entry of its term commits (thesis §4.1; etcd's pendingConfIndex)",
       "raft/core.py",
       "self.membership.mark_pending(lg.last_index)",
       "pass"),
    # -- the lease's protections against newer terms (the soak's two finds, reverted) ---------
    # A vote answer of a newer term is kept from opening the vote twice: it is dropped, and a
    # newer term taken in the lease from any message that is not a leader's keeps votes of
    # that term refused (3472006). Undoing the drop alone is an equivalent mutant (the second
    # rule covers it); the mutant undoes the rule for vote answers: the core of 8bf7882^.
    Mutant("stale_vote_answer_takes_term", "a vote or pre-vote answer of a newer term reaching "
           "a node in its lease does not open a vote of that term (reverts 8bf7882)", (
               ("raft/_roles.py",
                "elif m.type in (MT.VOTE_RESP, MT.PRE_VOTE_RESP) and in_lease:",
                "elif False:"),
               ("raft/_roles.py",
                "if in_lease and m.type not in FROM_LEADER and m.type != MT.VOTE:",
                "if in_lease and m.type not in FROM_LEADER and m.type not in (\n"
                "                MT.VOTE, MT.VOTE_RESP, MT.PRE_VOTE_RESP):"),
           )),
    _m("newer_term_breaks_lease_promise", "a newer term taken from a non-leader message in the "
       "lease keeps votes of that term refused for an election timeout (reverts 3472006)",
       "raft/_roles.py",
       "            core.keep_lease_promise()\n",
       "            pass\n"),
    # -- the three defects this project fixed (reverted) ----------------------------------------
    _m("defect_fast_forward_acks_last_index", "a snapshot fast-forward acks the snapshot point, "
       "not the unchecked suffix (reverts dda0425)",
       "raft/_roles.py",
       "        lg.commit_to(meta.index)\n        core.reply(m, MT.APPEND_RESP, index=lg.committed)",
       "        lg.commit_to(meta.index)\n        core.reply(m, MT.APPEND_RESP, index=lg.last_index)"),
    _m("defect_heartbeat_answer_before_term_durable", "a heartbeat answer with a term not yet "
       "durable waits for the fsync (reverts 22fce78)",
       "raft/outbox.py",
       "wait = t in AFTER_PERSIST or (t in AFTER_TERM and msg.term > self.durable_term)",
       "wait = t in AFTER_PERSIST"),
    _m("defect_stable_tracking_aba", "stable tracking that ABA cannot fool (reverts 53a8919)",
       "raft/core.py",
       "(n, index, term, hs) if index < first else (n, first - 1, lg.term(first - 1), hs)",
       "(n, index, term, hs)"),
)
