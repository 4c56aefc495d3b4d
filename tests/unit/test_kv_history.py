"""The fault tests' recorder: a client that answers like a correct store passes the checker;
one that serves a stale value, or claims "not applied" for a write it applied, fails it."""

from __future__ import annotations

import asyncio

from dengine.errors import NotLeader, OperationTimeout
from dengine.testing.kv_history import KvHistoryWorkload


class _Kv:
    def __init__(self, value: bytes) -> None:
        self.value = value


class _Cas:
    def __init__(self, ok: bool) -> None:
        self.succeeded = ok


class _Store:
    """A sequential in-memory map behind the client API; ``lie`` picks how it misbehaves."""

    def __init__(self, lie: str = "") -> None:
        self.data: dict[bytes, bytes] = {}
        self.lie = lie
        self.writes = 0
        self.first: dict[bytes, bytes] = {}

    async def put(self, key, value, timeout=None):
        await asyncio.sleep(0)
        self.first.setdefault(key, value)
        self.data[key] = value
        self.writes += 1
        if self.lie == "not-applied" and self.writes % 7 == 0:
            raise NotLeader(None, None)  # applied, yet says it was not
        if self.lie == "timeout" and self.writes % 7 == 0:
            raise OperationTimeout("put", 1.0)  # applied; the outcome is unknown: allowed

    async def compare_and_set(self, key, expected_value=None, new_value=None, timeout=None):
        await asyncio.sleep(0)
        ok = self.data.get(key) == expected_value
        if ok:
            self.data[key] = new_value
        return _Cas(ok)

    async def get(self, key, timeout=None):
        await asyncio.sleep(0)
        v = self.first.get(key) if self.lie == "stale" else self.data.get(key)
        return None if v is None else _Kv(v)


def _run(store: _Store) -> KvHistoryWorkload:
    async def go() -> KvHistoryWorkload:
        w = KvHistoryWorkload([store], workers=3, keys=2, seed=5).start()
        await w.wait_ok(300)
        await w.stop()
        await w.read_all(store)
        return w

    return asyncio.run(go())


def test_a_correct_store_passes_and_unknown_outcomes_are_allowed():
    assert _run(_Store()).check().ok
    w = _run(_Store("timeout"))
    assert w.counts["unknown"] > 0 and w.check().ok


def test_stale_reads_and_false_not_applied_answers_are_caught():
    assert not _run(_Store("stale")).check().ok
    w = _run(_Store("not-applied"))
    assert w.counts["failed"] > 0 and not w.check().ok
