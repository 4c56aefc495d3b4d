"""Admission control: past its limits a node refuses a request at once, before doing anything
with it, rather than queue it and let every caller's latency and the node's memory grow.

A request holds its place (one request, its message bytes) from the moment the client API
takes it until it is answered. Past ``network.max_pending_requests`` requests or
``network.max_pending_bytes`` bytes the request is answered :class:`Overloaded`
(RESOURCE_EXHAUSTED, with a retry hint): nothing was applied, so a retry is always safe.
"""

from __future__ import annotations

from dengine.errors import Overloaded

__all__ = ["Admission"]


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
