"""The node's reads: ReadIndex requests in flight (:class:`ReadRequests`), and a follower's
linearizable reads batched into rounds to the leader (:class:`FollowerReads`).

A read at ``SERIALIZABLE`` answers from the local state machine at once. On the leader, a
``LINEARIZABLE`` or ``LEASE`` read is one ReadIndex request through the core (a lease read skips
the heartbeat round while the leader's lease holds); it waits, keyed by its request context,
until the core's Ready releases it, which happens once the read index is applied here.

A follower cannot know on its own that its state is current, so for each linearizable read it
asks the leader for a read index (the leader's commit index, confirmed by a heartbeat round to a
quorum, Raft thesis §6.4) and answers once it has applied that far. One round serves many
reads: a read that arrives while a round is in flight cannot use that round's index (it may
have been fixed before the read began, which linearizability forbids), so it waits for the next
round, which starts as soon as the current one ends and carries every read that arrived
meanwhile. Under load that is one round trip to the leader per round trip, however many reads.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from dengine.consistency import Consistency
from dengine.errors import InvalidArgument, NotLeader
from dengine.raft.ready import ReadState

if TYPE_CHECKING:
    from dengine.node.node import Node

__all__ = ["FollowerReads", "ReadRequests"]


class ReadRequests:
    """Owns a node's ReadIndex requests in flight: one future per request context, settled
    when the core's Ready releases that context (see the module doc).

    ``submit`` runs a closure on the drive loop (the only place the core may be touched).
    """

    def __init__(self, node: Node, submit: Callable[[Callable[[], None]], None]) -> None:
        self._node = node
        self._submit = submit
        self._waiting: dict[bytes, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self.follower = FollowerReads(self.read_index)

    def __len__(self) -> int:
        return len(self._waiting)

    async def barrier(self, consistency: int = Consistency.LINEARIZABLE) -> None:
        """Return once the local state machine may answer a read at ``consistency``."""
        node = self._node
        if consistency == Consistency.SERIALIZABLE:
            return
        if consistency not in (Consistency.LINEARIZABLE, Consistency.LEASE):
            raise InvalidArgument(f"unknown read consistency {consistency}")
        if not node.is_leader:
            # A follower asks the leader for a read index (one round for every read waiting,
            # see FollowerReads) and answers once it has applied up to it (Raft thesis §6.4).
            if node.leader_id is None:
                raise node.not_leader()
            await self.follower.barrier()
            return
        await self.read_index(consistency == Consistency.LEASE)

    async def read_index(self, lease: bool = False) -> int:
        """One ReadIndex round through the core; returns once the read index is applied."""
        node = self._node
        ctx = next(self._ids).to_bytes(8, "big")
        fut = asyncio.get_running_loop().create_future()

        def op() -> None:
            node.metrics.read_index_requests.inc()
            try:
                node.core.read_index(ctx, lease=lease)
            except NotLeader:
                if not fut.done():
                    fut.set_exception(node.not_leader())
                return
            if not fut.done():
                self._waiting[ctx] = fut

        self._submit(op)
        try:
            return await fut
        finally:
            self._waiting.pop(ctx, None)

    def release(self, read_states: list[ReadState]) -> None:
        """The core confirmed (or failed) these reads: answer their callers."""
        for rs in read_states:
            fut = self._waiting.pop(rs.context, None)
            if fut is not None and not fut.done():
                if rs.failed:
                    fut.set_exception(self._node.not_leader())
                else:
                    fut.set_result(rs.index)

    def take_all(self) -> list[asyncio.Future]:
        """Hand over every read in flight (the node fails them when it stops)."""
        futures = list(self._waiting.values())
        self._waiting.clear()
        return futures


class FollowerReads:
    """Batches a follower's linearizable reads into ReadIndex rounds (see the module doc)."""

    def __init__(self, read_index: Callable[[], Awaitable[int]]) -> None:
        self._read_index = read_index
        self._inflight: asyncio.Future[int] | None = None
        self._next: asyncio.Future[int] | None = None
        self.rounds = 0  # rounds started so far (for tests and metrics)

    async def barrier(self) -> int:
        """Wait for a round that started after this call; returns its (applied) read index."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        fut = self._next
        if self._inflight is None:
            self._launch()
        # Shielded: one caller cancelled must not cancel the round the others wait on.
        return await asyncio.shield(fut)

    def _launch(self) -> None:
        fut, self._inflight, self._next = self._next, self._next, None
        assert fut is not None
        self.rounds += 1
        task = asyncio.get_running_loop().create_task(self._round(fut))
        task.add_done_callback(_seen)

    async def _round(self, fut: asyncio.Future[int]) -> None:
        try:
            index = await self._read_index()
        except asyncio.CancelledError:
            if not fut.done():
                fut.cancel()
            raise
        except BaseException as e:  # noqa: BLE001 - every waiting read gets the error
            if not fut.done():
                fut.set_exception(e)
            _retrieve(fut)
        else:
            if not fut.done():
                fut.set_result(index)
        finally:
            self._inflight = None
            if self._next is not None:
                self._launch()


def _retrieve(fut: asyncio.Future) -> None:
    """A round nobody waits for any more must not log "exception never retrieved"."""
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())


def _seen(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()
