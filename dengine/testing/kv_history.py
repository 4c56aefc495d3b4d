"""A client workload against a real cluster that records what it saw, for the checker.

Workers share a few keys and run puts, compare-and-sets and linearizable gets through
:class:`dengine.client.Client`; each call's invocation and response times (``time.monotonic``,
one process, so one clock) and outcome go into a :class:`~dengine.testing.linearizability.History`.
Fault tests start it, inject their fault, stop it and hand the history to
:func:`~dengine.testing.linearizability.check`.

How an error is recorded is the client's promise about it (README, "Operating dengine"):

* a write refused before it was proposed (:data:`NOT_APPLIED`: not leader, overloaded, dropped,
  malformed or too large) is *failed*: it had no effect, so it leaves the history; if the node
  lied and it did take effect, the checker finds a value nobody wrote;
* every other write error (a timeout, ``OutcomeUnknown``, ``SessionExpired`` after a retry) is
  *unknown*: it may take effect at any instant after its call, or never;
* a read that fails constrains nothing and leaves the history.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

from dengine.errors import (
    InvalidArgument,
    NotLeader,
    Overloaded,
    PayloadTooLarge,
    ProposalDropped,
)
from dengine.testing.linearizability import CheckResult, History, OpKind, check

__all__ = ["NOT_APPLIED", "KvHistoryWorkload"]

#: Write errors that promise the write was not applied (safe to retry anywhere).
NOT_APPLIED: tuple[type[BaseException], ...] = (
    NotLeader, Overloaded, ProposalDropped, InvalidArgument, PayloadTooLarge)


class KvHistoryWorkload:
    """``workers`` concurrent loops over ``keys`` keys (prefixed ``prefix``), each call timed
    out after ``timeout`` s; the clients are used round-robin by the workers."""

    def __init__(self, clients: Sequence[Any], *, workers: int = 4, keys: int = 6,
                 prefix: str = "lin/", timeout: float = 5.0, seed: int = 0) -> None:
        self.clients = list(clients)
        self.workers = workers
        self.keys = [f"{prefix}{i}".encode() for i in range(keys)]
        self.timeout = timeout
        self.history = History()
        self.counts = {"ok": 0, "failed": 0, "unknown": 0}
        self.errors: list[BaseException] = []
        self._rng = random.Random(seed)
        self._stop = asyncio.Event()
        self._task: asyncio.Future[Any] | None = None

    def start(self) -> KvHistoryWorkload:
        self._task = asyncio.ensure_future(asyncio.gather(
            *(self._worker(w) for w in range(self.workers))))
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def wait_ok(self, count: int, timeout: float = 20) -> None:
        """Wait until ``count`` more calls than now have succeeded."""
        target = self.counts["ok"] + count
        deadline = time.monotonic() + timeout
        while self.counts["ok"] < target:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {self.counts['ok']} of {target} calls succeeded in {timeout}s; "
                    f"last errors: {self.errors[-3:]!r}")
            await asyncio.sleep(0.02)

    async def read_all(self, client: Any) -> None:
        """One final linearizable read of every key, recorded too (it pins the last value)."""
        for key in self.keys:
            await self._call(client, OpKind.GET, key)

    def check(self) -> CheckResult:
        return check(self.history)

    def summary(self) -> str:
        c = self.counts
        return (f"{len(self.history.ops())} ops recorded: {c['ok']} ok, {c['failed']} failed "
                f"(not applied), {c['unknown']} unknown")

    async def _worker(self, w: int) -> None:
        rng = random.Random(self._rng.random())
        client = self.clients[w % len(self.clients)]
        seen: dict[bytes, bytes | None] = {}
        n = 0
        while not self._stop.is_set():
            key = rng.choice(self.keys)
            n += 1
            value = f"{w}-{n}".encode()
            roll = rng.random()
            if roll < 0.4:
                await self._call(client, OpKind.PUT, key, value=value, worker=w)
                seen[key] = value
            elif roll < 0.6:
                expected = seen.get(key)
                if expected is None:
                    expected = f"{w}-{max(n - 1, 1)}".encode()
                await self._call(client, OpKind.CAS, key, value=value, expected=expected,
                                 worker=w)
            else:
                seen[key] = await self._call(client, OpKind.GET, key, worker=w)

    async def _call(self, client: Any, kind: OpKind, key: bytes, *, value: bytes | None = None,
                    expected: bytes | None = None, worker: int = -1) -> Any:
        h = self.history
        op = h.invoke(worker, kind, key, value=value, expected=expected, time=time.monotonic())
        try:
            if kind is OpKind.PUT:
                await client.put(key, value, timeout=self.timeout)
                out = None
            elif kind is OpKind.CAS:
                res = await client.compare_and_set(key, expected_value=expected, new_value=value,
                                                   timeout=self.timeout)
                out = res.succeeded
            else:
                kv = await client.get(key, timeout=self.timeout)
                out = None if kv is None else kv.value
        except Exception as e:  # noqa: BLE001 - every outcome is recorded, none is lost
            self.errors.append(e)
            if kind is OpKind.GET or isinstance(e, NOT_APPLIED):
                h.failed(op)
                self.counts["failed"] += 1
            else:
                h.unknown(op)
                self.counts["unknown"] += 1
            await asyncio.sleep(0.01)
            return None
        h.ok(op, out, time=time.monotonic())
        self.counts["ok"] += 1
        return out
