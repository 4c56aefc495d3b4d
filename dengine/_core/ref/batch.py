"""The proposal batch buffer: proposals go in one by one, batches come out; reference.

A batch holds at most ``max_entries`` proposals and at most ``max_bytes`` of payload, except
that a single proposal larger than ``max_bytes`` still forms a batch of its own (it is never
stuck). Order is kept and nothing is dropped: every proposal pushed comes out of exactly one
``pop_batch`` or ``drain``.
"""

from __future__ import annotations

from collections import deque


class BatchBuffer:
    """FIFO of (payload, token) pairs cut into bounded batches."""

    __slots__ = ("_items", "_bytes", "max_entries", "max_bytes")

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: deque[tuple[bytes, object]] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def pending_bytes(self) -> int:
        """Total payload bytes waiting."""
        return self._bytes

    def push(self, payload: bytes, token: object = None) -> None:
        """Queue one proposal; ``token`` comes back beside it (e.g. the caller's future)."""
        if not isinstance(payload, bytes):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        self._items.append((payload, token))
        self._bytes += len(payload)

    def ready(self) -> bool:
        """True when a full batch (by count or by bytes) is waiting."""
        return len(self._items) >= self.max_entries or self._bytes >= self.max_bytes

    def pop_batch(self) -> tuple[list[bytes], list[object]]:
        """Take the next batch from the front: payloads and their tokens, in push order."""
        payloads: list[bytes] = []
        tokens: list[object] = []
        size = 0
        while self._items and len(payloads) < self.max_entries:
            payload, token = self._items[0]
            if payloads and size + len(payload) > self.max_bytes:
                break
            self._items.popleft()
            payloads.append(payload)
            tokens.append(token)
            size += len(payload)
        self._bytes -= size
        return payloads, tokens

    def drain(self) -> tuple[list[bytes], list[object]]:
        """Take everything waiting, ignoring the bounds (used to fail proposals on stop)."""
        payloads = [p for p, _ in self._items]
        tokens = [t for _, t in self._items]
        self._items.clear()
        self._bytes = 0
        return payloads, tokens
