"""Refused peer messages: counted by reason, logged at warning level at most once per interval.

A forged or broken peer can send thousands of bad messages a second; each is counted (a
Prometheus counter ``dengine_peer_refusals_total{reason}`` once a registry is bound, and the
plain ``counts`` dict always), but a reason is logged at most once per ``interval_s``, with the
peer's address, the detail of the latest refusal and how many were not logged since.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RefusalLog", "reason_kind"]

_NUMBER = re.compile(r"\d+")


def reason_kind(reason: str) -> str:
    """A label of bounded cardinality for a free-text reason (numbers folded to ``N``)."""
    return _NUMBER.sub("N", reason)[:80]


class RefusalLog:
    """Counts every refusal; logs each reason at most once per ``interval_s``."""

    def __init__(
        self,
        logger: Any,
        *,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self.counts: dict[str, int] = {}
        self._last: dict[str, tuple[float, int]] = {}  # kind -> (logged at, count then)
        self._counter: Any = None

    def bind_registry(self, registry: Any) -> None:
        """Export the counts to a Prometheus registry (once; later calls are ignored)."""
        if self._counter is not None:
            return
        from prometheus_client import Counter

        self._counter = Counter("dengine_peer_refusals", "peer messages and streams refused, "
                                "by reason", ["reason"], registry=registry)
        for kind, n in self.counts.items():
            self._counter.labels(kind).inc(n)

    def refuse(self, kind: str, peer_addr: str, detail: str, **fields: Any) -> None:
        """Record one refusal of ``kind`` from ``peer_addr``; ``detail`` says exactly why."""
        kind = reason_kind(kind)
        n = self.counts.get(kind, 0) + 1
        self.counts[kind] = n
        if self._counter is not None:
            self._counter.labels(kind).inc()
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last[0] < self.interval_s:
            return
        suppressed = n - 1 - last[1] if last is not None else 0
        self._last[kind] = (now, n)
        if self.logger is not None:
            self.logger.warning("refused peer message", peer_addr=peer_addr, reason=detail,
                             kind=kind, suppressed=suppressed, **fields)
