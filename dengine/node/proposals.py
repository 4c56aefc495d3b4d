"""Writes from the moment a caller hands them to the node until their entry applies.

A :class:`Proposals` owns the two places a write waits: the batch buffer (queued on the node,
not yet proposed) and the pending table (proposed: a future keyed by its log index and term).
The drive loop proposes what is queued in batches (one ``propose_batch`` per batch: one append
message per follower); the entry that commits at that index with that term is the answer; one
with another term means a new leader overwrote it (``ProposalDropped``), and a follower whose
log a new leader rewrote tells the proposers at once (their outcome is unknown: another node's
log may still hold the entry).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from dengine._core import BatchBuffer
from dengine.errors import DengineError, NotLeader, OutcomeUnknown, ProposalDropped
from dengine.observability import timeline as _tl
from dengine.raft.types import Entry, EntryKind
from dengine.statemachine.base import StateMachine

if TYPE_CHECKING:
    from dengine.node.node import Node

__all__ = ["Proposals"]

CONF = int(EntryKind.CONF_CHANGE)


class Proposals:
    """Owns the queued and the proposed writes of a node (see the module docstring).

    ``on_conf`` is called with each membership entry as it applies.
    """

    def __init__(self, node: Node, state_machine: StateMachine, max_batch_entries: int,
                 max_batch_bytes: int, on_conf: Callable[[Entry], None]) -> None:
        self._node = node
        self._state_machine = state_machine
        self._on_conf = on_conf
        #: Queued, not yet proposed: (command, future) pairs popped a batch at a time.
        self.queued = BatchBuffer(max_batch_entries, max_batch_bytes)
        #: Proposed: log index -> (term it was proposed at, its caller's future).
        self._pending: dict[int, tuple[int, asyncio.Future]] = {}

    def __len__(self) -> int:
        """Writes in flight: queued and proposed."""
        return len(self._pending) + len(self.queued)

    @property
    def pending_count(self) -> int:
        """Proposed writes waiting for their entry to apply."""
        return len(self._pending)

    def push(self, command: bytes, fut: asyncio.Future) -> None:
        """Queue ``command``; ``fut`` gets its result once applied."""
        self.queued.push(command, fut)

    def track(self, index: int, term: int, fut: asyncio.Future) -> None:
        """Answer ``fut`` when the entry at ``index`` applies (ProposalDropped if not ``term``)."""
        self._pending[index] = (term, fut)

    def propose_queued(self) -> None:
        """Propose everything queued, a batch at a time (on the drive loop)."""
        batch = self.queued
        while len(batch):
            payloads, tokens = batch.pop_batch()
            self._propose(payloads, tokens)

    def _propose(self, payloads: list[bytes], futures: list[asyncio.Future]) -> None:
        node = self._node
        core = node.core
        try:
            last = core.propose_batch(payloads)
        except (NotLeader, ProposalDropped) as e:
            err = node.not_leader() if isinstance(e, NotLeader) else e
            node.metrics.on_proposals_failed(
                "not_leader" if isinstance(e, NotLeader) else "dropped", len(futures))
            for fut in futures:
                if not fut.done():
                    fut.set_exception(err)
            return
        term = core.term
        if _tl.ON:
            _tl.mark("n.proposed", last)
        node.metrics.on_proposed(last, len(futures))
        pending = self._pending
        for index, fut in enumerate(futures, last - len(futures) + 1):
            pending[index] = (term, fut)

    def fail_queued(self, err: DengineError) -> None:
        """Writes queued here were never proposed: tell their callers (``err`` says why)."""
        _, tokens = self.queued.drain()
        for fut in tokens:
            if not fut.done():
                fut.set_exception(err)

    def take_pending(self) -> list[asyncio.Future]:
        """Hand over every proposed write's future (the node fails them when it stops)."""
        futures = [f for _, f in self._pending.values()]
        self._pending.clear()
        return futures

    def drop_overwritten(self, entries: list[Entry]) -> None:
        """A new leader's entries replaced ours: their proposers learn it now, not at commit."""
        if not self._pending:
            return
        first, last = entries[0].index, entries[-1].index
        # Gone from this log, yet another node's log may still hold it and a later leader
        # commit it (with five nodes, say): not a PROPOSAL_DROPPED, whose promise is "never".
        lost = OutcomeUnknown("a new leader replaced the entry in this node's log before it "
                              "committed")
        for index in [i for i in self._pending if i >= first]:
            term, fut = self._pending[index]
            if index > last or entries[index - first].term != term:
                del self._pending[index]
                if not fut.done():
                    fut.set_exception(lost)

    def apply(self, entries: list[Entry]) -> None:
        """Apply committed entries to the state machine and answer their proposers."""
        applied = self._state_machine.applied_index()
        if entries[0].index <= applied:
            entries = [e for e in entries if e.index > applied]
            if not entries:
                return
        results = self._state_machine.apply(entries)
        pending = self._pending
        for e, result in zip(entries, results, strict=True):
            if e.kind == CONF:
                self._on_conf(e)
            if not pending:
                continue
            item = pending.pop(e.index, None)
            if item is None:
                continue
            term, fut = item
            if fut.done():
                continue
            if term != e.term:
                fut.set_exception(ProposalDropped(
                    f"entry {e.index} was replaced by a new leader's entry; retry"))
            elif isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)
