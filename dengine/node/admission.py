"""Admission control: past its limits a node refuses a request at once, before doing anything
with it, rather than queue it and let every caller's latency and the node's memory grow.

A request holds its place (one request, its message bytes) from the moment the client API
takes it until it is answered. Past ``network.max_pending_requests`` requests or
``network.max_pending_bytes`` bytes the request is answered :class:`Overloaded`
(RESOURCE_EXHAUSTED, with a retry hint): nothing was applied, so a retry is always safe.

:class:`ApplyLag` sheds on the leader's apply lag: while its state machine trails its commit
index by more than ``network.max_apply_lag_entries`` entries (a new leader with a backlog to
apply, or a state machine slower than the log), a new write is refused the same way instead of
queueing behind the backlog. Its bytes need no second limit: a client write holds its admission
bytes until it is applied, so ``max_pending_bytes`` already bounds them.
"""

from __future__ import annotations

from dengine.errors import Overloaded

__all__ = ["Admission", "ApplyLag"]


class Admission:
    """Counts what the client API holds; :meth:`admit` refuses past either limit."""

    def __init__(self, max_requests: int, max_bytes: int, retry_after_ms: int = 50) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.retry_after_ms = retry_after_ms
        self.requests = 0
        self.bytes = 0
        self.refused = 0

    def admit(self, nbytes: int) -> None:
        """Take a place for a request of ``nbytes``, or raise Overloaded (nothing taken)."""
        if self.requests >= self.max_requests:
            self.refused += 1
            raise Overloaded(f"{self.requests} requests in flight (limit {self.max_requests})",
                             self.retry_after_ms)
        if self.bytes and self.bytes + nbytes > self.max_bytes:
            self.refused += 1
            raise Overloaded(f"{self.bytes} request bytes in flight (limit {self.max_bytes})",
                             self.retry_after_ms)
        self.requests += 1
        self.bytes += nbytes

    def release(self, nbytes: int) -> None:
        self.requests -= 1
        self.bytes -= nbytes


class ApplyLag:
    """Refuses new writes while committed minus applied exceeds ``max_entries`` (0: never)."""

    #: The retry hint assumes about this many entries applied per millisecond, within bounds.
    ENTRIES_PER_MS = 50
    MIN_RETRY_MS, MAX_RETRY_MS = 50, 2000

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.refused = 0

    def check(self, commit_index: int, applied_index: int) -> None:
        """Raise Overloaded (nothing proposed) past the limit; the hint is the time to apply
        the backlog at ENTRIES_PER_MS, so a client that waits finds it mostly gone."""
        lag = commit_index - applied_index
        if self.max_entries and lag > self.max_entries:
            self.refused += 1
            retry = min(max(lag // self.ENTRIES_PER_MS, self.MIN_RETRY_MS), self.MAX_RETRY_MS)
            raise Overloaded(f"the state machine trails the commit index by {lag} entries "
                             f"(limit {self.max_entries})", retry)
