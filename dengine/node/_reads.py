"""Linearizable reads on a follower: one ReadIndex round to the leader for every read waiting.

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
from collections.abc import Awaitable, Callable

__all__ = ["FollowerReads"]


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
