"""The safety invariants the simulator checks after every step (Raft figure 3, and more).

Each check is incremental: it sees every Ready, every applied entry and every leader as they
happen, and keeps just enough global knowledge to catch a violation at the step that causes it.

- Election safety: at most one leader per term.
- Log matching: entries with the same index and term carry the same data and follow the same
  term at the index before (by induction the logs are then identical up to there).
- Leader completeness: a leader of term T holds every entry committed in a term <= T. An entry
  is known committed once any node applied it.
- State-machine safety: no two nodes apply different entries at one index.
- Applied and commit indexes never go back on a node (the state machine is durable across
  restarts here; the core's commit index only within one incarnation); terms never go back
  (in memory within an incarnation; durably across them); a durable vote never changes
  within its term.
- No acknowledged write is lost: an acknowledged write's entry stays applied at its index and
  is in the log of every later leader (which leader completeness and state-machine safety
  check) and, at the end, in every node's applied state.
- No two disjoint majorities decide in one term (thesis §4.3): for each term, the configs
  used for decisions -- the config a node won the term's election with, then each config its
  leader had in force when its commit index moved -- form a sequence in which each config
  shares a node with every quorum of the one before (a joint config's quorum needs a majority
  of both halves). Only consecutive configs are compared: a leader that passes through a joint
  config legitimately decides under C_old and later under C_new in one term, and the two may
  have disjoint majorities; the joint config between them is what links them. A change of
  several voters applied without the joint step puts C_old and C_new next to each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

from dengine.raft.types import Entry

__all__ = ["InvariantBroken", "Invariants", "Voters", "disjoint_quorums"]

#: The voters of a config: (incoming, outgoing); outgoing is empty unless the config is joint.
Voters = tuple[tuple[int, ...], tuple[int, ...]]


def _is_quorum(nodes: frozenset[int], cfg: Voters) -> bool:
    incoming, outgoing = cfg
    if 2 * len(nodes.intersection(incoming)) <= len(incoming):
        return False
    return not outgoing or 2 * len(nodes.intersection(outgoing)) > len(outgoing)


@lru_cache(maxsize=4096)
def disjoint_quorums(a: Voters, b: Voters) -> tuple[frozenset[int], frozenset[int]] | None:
    """Two disjoint quorums, one of ``a`` and one of ``b``, or None when every quorum of one
    meets every quorum of the other. Brute force over the subsets of their voters (at most
    ten ids here): quorums are upward closed, so a quorum of ``a`` has a disjoint quorum of
    ``b`` exactly when the rest of the ids is one."""
    ids = sorted(set(a[0]) | set(a[1]) | set(b[0]) | set(b[1]))
    everyone = frozenset(ids)
    for size in range(len(ids) + 1):
        for combo in combinations(ids, size):
            q = frozenset(combo)
            if _is_quorum(q, a) and _is_quorum(everyone - q, b):
                return q, everyone - q
    return None


def _describe_voters(cfg: Voters) -> str:
    incoming, outgoing = cfg
    text = "{" + ",".join(map(str, incoming)) + "}"
    return f"joint {text} & {{{','.join(map(str, outgoing))}}}" if outgoing else text



class InvariantBroken(AssertionError):
    """A safety property failed; the message says which and where."""


@dataclass(slots=True)
class _LeaderSeen:
    node: int
    checked_to: int  # committed indexes verified present in its log


class Invariants:
    """Global knowledge of one run, fed by the simulator's shell."""

    def __init__(self) -> None:
        self.leader_of_term: dict[int, int] = {}
        self.entry_at: dict[tuple[int, int], tuple[bytes, int, int]] = {}
        self.applied: dict[int, Entry] = {}
        self.committed_max = 0
        self.sm_applied: dict[int, int] = {}
        self.core_applied: dict[int, int] = {}
        self.core_commit: dict[int, int] = {}
        self.term_of: dict[int, int] = {}
        self.leaders: dict[tuple[int, int], _LeaderSeen] = {}
        self.acked: dict[int, Entry] = {}
        self.durable_vote: dict[int, tuple[int, int]] = {}
        #: term -> the last config used for a decision in it, and what decided under it.
        self.decision_config: dict[int, tuple[Voters, str]] = {}

    # -- election safety and leader completeness ----------------------------------------------
    def on_leader(self, node: int, term: int, log_term: Callable[[int], int]) -> None:
        """``node`` is leader in ``term``; ``log_term(i)`` is the term it holds at index i
        (-1 if compacted, -2 if past its end)."""
        other = self.leader_of_term.setdefault(term, node)
        if other != node:
            raise InvariantBroken(
                f"election safety: nodes {other} and {node} both lead term {term}"
            )
        seen = self.leaders.get((node, term))
        if seen is None:
            seen = self.leaders[(node, term)] = _LeaderSeen(node, 0)
        i = seen.checked_to + 1
        while i <= self.committed_max:
            e = self.applied.get(i)
            if e is not None:
                if e.term > term:
                    break  # committed by a later leader: this one is stale, not incomplete
                held = log_term(i)
                if held != -1 and held != e.term:
                    raise InvariantBroken(
                        f"leader completeness: node {node}, leader of term {term}, holds term "
                        f"{held} at index {i} where entry {i}@{e.term} is committed"
                    )
            seen.checked_to = i
            i += 1

    # -- no two disjoint majorities in one term -----------------------------------------------
    def on_decision(self, node: int, term: int, voters: Voters, what: str) -> None:
        """``node`` made a decision in ``term`` (won its election, moved its commit index as
        leader) with ``voters`` in force: it must not have a quorum disjoint from one of the
        config of the term's previous decision."""
        prev = self.decision_config.get(term)
        if prev is not None and prev[0] != voters:
            found = disjoint_quorums(prev[0], voters)
            if found is not None:
                raise InvariantBroken(
                    f"two disjoint majorities in term {term}: {prev[1]} under "
                    f"{_describe_voters(prev[0])} (quorum {sorted(found[0])}), then node "
                    f"{node} {what} under {_describe_voters(voters)} (quorum {sorted(found[1])})"
                )
        self.decision_config[term] = (voters, f"node {node} {what}")

    # -- log matching -------------------------------------------------------------------------
    def on_entries(self, node: int, entries: Sequence[Entry], prev_term: int) -> None:
        """Entries a node put in its log (a Ready's ``entries``); ``prev_term`` is the term it
        holds just before the first (-1 when unknown: compacted)."""
        for e in entries:
            key = (e.index, e.term)
            mine = (e.data, e.kind, prev_term)
            known = self.entry_at.get(key)
            if known is None:
                self.entry_at[key] = mine
            else:
                if known[0] != e.data or known[1] != e.kind:
                    raise InvariantBroken(
                        f"log matching: node {node} holds entry {e.index}@{e.term} with other "
                        f"data than another node's"
                    )
                if -1 not in (known[2], prev_term) and known[2] != prev_term:
                    raise InvariantBroken(
                        f"log matching: node {node} holds {e.index}@{e.term} after term "
                        f"{prev_term}, another node after term {known[2]}"
                    )
            prev_term = e.term

    # -- state-machine safety ----------------------------------------------------------------
    def on_apply(self, node: int, e: Entry) -> bool:
        """A node applies ``e``; False when its state machine already had it (a restart
        re-delivers entries up to the commit it had persisted), which must match."""
        prev = self.applied.get(e.index)
        if prev is None:
            self.applied[e.index] = e
            if e.index > self.committed_max:
                self.committed_max = e.index
        elif prev != e:
            raise InvariantBroken(
                f"state-machine safety: node {node} applies {e.index}@{e.term} "
                f"({len(e.data)} bytes) where another applied {prev.index}@{prev.term}"
            )
        done = self.sm_applied.get(node, 0)
        if e.index <= done:
            return False
        if e.index != done + 1:
            raise InvariantBroken(f"node {node} applies index {e.index} right after {done}: a gap")
        self.sm_applied[node] = e.index
        return True

    def on_state_machine_reset(self, node: int, index: int) -> None:
        """A snapshot replaced a node's state machine at ``index``."""
        done = self.sm_applied.get(node, 0)
        if index < done:
            raise InvariantBroken(
                f"a snapshot moves node {node}'s applied index back from {done} to {index}"
            )
        self.sm_applied[node] = index

    # -- monotonic positions ------------------------------------------------------------------
    def on_positions(self, node: int, term: int, commit: int, applied: int) -> None:
        if term < self.term_of.get(node, 0):
            raise InvariantBroken(
                f"node {node}'s term goes back from {self.term_of[node]} to {term}"
            )
        self.term_of[node] = term
        if commit < self.core_commit.get(node, 0):
            raise InvariantBroken(
                f"node {node}'s commit index goes back from {self.core_commit[node]} to {commit}"
            )
        self.core_commit[node] = commit
        if applied < self.core_applied.get(node, 0):
            raise InvariantBroken(
                f"node {node}'s applied index goes back from {self.core_applied[node]} to {applied}"
            )
        self.core_applied[node] = applied

    def on_restart(self, node: int) -> None:
        """A new incarnation: commit and the core's applied index may restart lower (the hard
        state's commit is persisted lazily), and so may a term it never persisted; the state
        machine's applied index and the persisted term and vote may not."""
        self.core_commit.pop(node, None)
        self.core_applied.pop(node, None)
        self.term_of.pop(node, None)

    def on_persist_hard_state(self, node: int, term: int, vote: int) -> None:
        """A node made (term, vote) durable: the term never goes back, and a vote once
        durable in a term never changes within it (one vote per term, Raft §5.2)."""
        old = self.durable_vote.get(node)
        if old is not None:
            if term < old[0]:
                raise InvariantBroken(f"node {node} persists term {term} after term {old[0]}")
            if term == old[0] and old[1] and vote != old[1]:
                then = f"then for {vote}" if vote else "then forgets it (it may vote again)"
                raise InvariantBroken(
                    f"node {node} votes twice in term {term}: for {old[1]}, {then}"
                )
        self.durable_vote[node] = (term, vote)

    # -- acknowledged writes -------------------------------------------------------------------
    def on_ack(self, e: Entry) -> None:
        self.acked[e.index] = e

    def check_acked_in(self, node: int, log_term: Callable[[int], int]) -> None:
        """Every acknowledged write is in ``node``'s log (or compacted away under it)."""
        for i in sorted(self.acked):
            e = self.acked[i]
            held = log_term(i)
            if held != -1 and held != e.term:
                raise InvariantBroken(
                    f"acknowledged write {i}@{e.term} is lost: node {node} holds "
                    f"{'nothing' if held == -2 else f'term {held}'} at index {i}"
                )
