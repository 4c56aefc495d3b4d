"""A user-defined state machine (a ledger of account balances) plugs into the same seam.

It is not KV: it knows nothing of the codec's commands. It keeps its state in memory and its
applied index with it, snapshots as checksummed chunks through a SnapshotStore, and passes the
shipped generic conformance suite.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Sequence

import pytest

from dengine.errors import DecodeError, SnapshotError
from dengine.raft.types import ConfState, Entry, EntryKind
from dengine.statemachine import StateMachine, restore_snapshot, take_snapshot
from dengine.storage.snapshot import SnapshotStore
from dengine.testing.statemachine_conformance import StateMachineConformance, entries


class Ledger:
    """Transfers between accounts; an overdraft is refused (a result, not an exception)."""

    def __init__(self) -> None:
        self.balances: dict[str, int] = {}
        self._applied = (0, 0)

    def apply(self, es: Sequence[Entry]) -> list[object]:
        out: list[object] = []
        for e in es:
            self._applied = (e.index, e.term)
            if e.kind != EntryKind.NORMAL or not e.data:
                out.append(None)
                continue
            try:
                src, dst, amount = json.loads(e.data)
            except ValueError as err:
                out.append(DecodeError("transfer", str(err)))
                continue
            if src and self.balances.get(src, 0) < amount:
                out.append(False)
                continue
            if src:
                self.balances[src] -= amount
            self.balances[dst] = self.balances.get(dst, 0) + amount
            out.append(True)
        return out

    def applied_index(self) -> int:
        return self._applied[0]

    def applied_term(self) -> int:
        return self._applied[1]

    def snapshot(self) -> _Source:
        return _Source(dict(self.balances), self._applied)

    def restore(self, chunks: Iterable[bytes]) -> None:
        data = b"".join(chunks)  # everything first: a bad stream changes nothing
        try:
            state = json.loads(data)
        except ValueError as e:
            raise SnapshotError(f"not a ledger snapshot: {e}") from e
        self.balances, self._applied = state["balances"], tuple(state["applied"])

    def close(self) -> None:
        pass


class _Source:
    def __init__(self, balances: dict[str, int], applied: tuple[int, int]) -> None:
        self.index, self.term = applied
        self._data = json.dumps({"balances": balances, "applied": applied}).encode()

    def chunks(self) -> Iterator[bytes]:
        for i in range(0, len(self._data), 16):
            yield self._data[i : i + 16]

    def close(self) -> None:
        pass


class LedgerFactory:
    durable = False

    def open(self) -> Ledger:
        return Ledger()

    def command(self, rng: random.Random) -> bytes:
        src = rng.choice(["", "alice", "bob"])
        return json.dumps([src, rng.choice(["alice", "bob", "carol"]), rng.randrange(1, 50)]).encode()

    def state(self, sm: Ledger) -> object:
        return dict(sm.balances), sm.applied_index()


@pytest.fixture
def sm_factory() -> LedgerFactory:
    return LedgerFactory()


class TestLedgerIsAStateMachine(StateMachineConformance):
    """The generic suite passes for a machine that is not KV."""


def test_ledger_through_snapshot_files(tmp_path):
    ledger = Ledger()
    assert isinstance(ledger, StateMachine)
    moves = [["", "alice", 100], ["alice", "bob", 30], ["bob", "carol", 31], ["bob", "carol", 30]]
    r = ledger.apply(entries(1, [json.dumps(m).encode() for m in moves]))
    assert r == [True, True, False, True]
    store = SnapshotStore(str(tmp_path / "snaps"))
    meta, _path = take_snapshot(ledger, store, ConfState(frozenset({1, 2, 3})))
    assert (meta.index, meta.term) == (4, 1)
    other = Ledger()
    assert restore_snapshot(other, store.latest()) == meta
    assert other.balances == {"alice": 70, "bob": 0, "carol": 30}
    assert other.applied_index() == 4
