"""Your own replicated state machine: a bank ledger whose transfers never break the total.

dengine replicates opaque commands (bytes) through Raft and hands each committed command, in
log order, to the state machine of every node. Anything that implements the
:class:`dengine.statemachine.StateMachine` protocol can be that machine: here, a ledger of
account balances. A transfer that would overdraw an account is refused with a result (an
exception *instance*, returned, not raised), so every replica refuses it the same way and the
replicas never diverge. The proposer gets that result back from ``node.propose``.

The program runs three nodes in one asyncio process, stops one follower, sends a few hundred
concurrent random transfers (the ledger snapshots itself and the log is compacted meanwhile),
restarts the follower with an empty ledger, and checks that all three replicas end up identical
and that the money in the bank is exactly what was deposited.

Run it:  python examples/custom_state_machine.py
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from dengine.config import Config, build_config
from dengine.errors import SnapshotError
from dengine.node import Node, NodeBuilder
from dengine.observability.logging import configure_logging
from dengine.raft.types import Entry, EntryKind
from dengine.statemachine import StateMachine


class InsufficientFunds(Exception):
    """A transfer larger than the balance of the account it draws on."""


class Ledger:
    """Account balances. Commands (JSON): ``["open", account, amount]`` and
    ``["transfer", from_account, to_account, amount]``."""

    def __init__(self) -> None:
        self.balances: dict[str, int] = {}
        self._applied = (0, 0)  # (index, term) of the last entry applied

    # -- the StateMachine protocol ----------------------------------------------------------
    def apply(self, entries: Sequence[Entry]) -> list[object]:
        results: list[object] = []
        for e in entries:
            self._applied = (e.index, e.term)
            if e.kind != EntryKind.NORMAL or not e.data:
                results.append(None)  # membership changes, a new leader's empty entry
                continue
            results.append(self._execute(json.loads(e.data)))
        return results

    def applied_index(self) -> int:
        return self._applied[0]

    def applied_term(self) -> int:
        return self._applied[1]

    def snapshot(self) -> LedgerSnapshot:
        return LedgerSnapshot(dict(self.balances), self._applied)

    def restore(self, chunks: Iterable[bytes]) -> None:
        data = b"".join(chunks)  # read it all first: a bad snapshot changes nothing
        try:
            state = json.loads(data)
        except ValueError as e:
            raise SnapshotError(f"not a ledger snapshot: {e}") from e
        self.balances = state["balances"]
        self._applied = tuple(state["applied"])

    def close(self) -> None:
        pass

    # -- the business logic -----------------------------------------------------------------
    def _execute(self, cmd: list) -> object:
        if cmd[0] == "open":
            _, account, amount = cmd
            self.balances[account] = self.balances.get(account, 0) + amount
            return self.balances[account]
        _, src, dst, amount = cmd
        if self.balances.get(src, 0) < amount:
            return InsufficientFunds(f"{src} has {self.balances.get(src, 0)}, not {amount}")
        self.balances[src] -= amount
        self.balances[dst] = self.balances.get(dst, 0) + amount
        return self.balances[src]

    @property
    def total(self) -> int:
        return sum(self.balances.values())


class LedgerSnapshot:
    """A point-in-time copy, taken at once and read later in chunks."""

    def __init__(self, balances: dict[str, int], applied: tuple[int, int]) -> None:
        self.index, self.term = applied
        self._data = json.dumps({"balances": balances, "applied": applied}).encode()

    def chunks(self) -> Iterator[bytes]:
        for i in range(0, len(self._data), 4096):
            yield self._data[i : i + 4096]

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def node_config(node_id: int, members: dict[int, str], root: Path) -> Config:
    return build_config({
        "cluster": {"cluster_id": "bank", "node_id": node_id, "initial_members": members,
                    "data_dir": str(root / f"node-{node_id}")},
        "raft": {"heartbeat_ms": 50, "election_ms": 400, "lease_ms": 300,
                 # snapshot often, so that this short run shows it too
                 "snapshot_interval_entries": 100, "compaction_tail_entries": 20},
    })


async def start(config: Config) -> Node:
    ledger = Ledger()
    assert isinstance(ledger, StateMachine)  # the protocol is all dengine asks for
    # serve_clients(False): no KV client API; this node's clients are in this program.
    node = NodeBuilder(config).state_machine(ledger).serve_clients(False).build()
    await node.start()
    return node


async def leader_of(nodes: dict[int, Node]) -> Node:
    async with asyncio.timeout(30):
        while True:
            for node in nodes.values():
                if node.running and node.is_leader:
                    return node
            await asyncio.sleep(0.02)


async def propose(node: Node, *cmd: object) -> object:
    return await node.propose(json.dumps(cmd).encode())


async def main() -> None:
    configure_logging("warning")
    accounts = ["alice", "bob", "carol", "dave", "erin"]
    with tempfile.TemporaryDirectory(prefix="dengine-bank-") as tmp:
        members = {i: f"127.0.0.1:{p}" for i, p in enumerate(free_ports(3), start=1)}
        configs = {i: node_config(i, members, Path(tmp)) for i in members}
        nodes = {i: await start(cfg) for i, cfg in configs.items()}
        leader = await leader_of(nodes)
        for account in accounts:
            await propose(leader, "open", account, 1000)
        deposited = 1000 * len(accounts)
        print(f"node {leader.node_id} leads; opened {len(accounts)} accounts with 1000 each")

        follower = next(i for i in nodes if i != leader.node_id)
        await nodes[follower].stop()
        print(f"stopped node {follower}; the other two still form a majority")

        rng = random.Random(7)
        done = {"accepted": 0, "refused": 0}

        async def teller() -> None:
            for _ in range(25):
                src, dst = rng.sample(accounts, 2)
                try:
                    await propose(leader, "transfer", src, dst, rng.randrange(1, 600))
                    done["accepted"] += 1
                except InsufficientFunds:
                    done["refused"] += 1

        await asyncio.gather(*(teller() for _ in range(16)))  # 400 concurrent transfers
        print(f"transfers: {done['accepted']} accepted, {done['refused']} refused "
              "(they would have overdrawn an account)")

        nodes[follower] = await start(configs[follower])
        last = leader.status()["commit_index"]
        async with asyncio.timeout(30):
            while any(n.status()["applied_index"] < last for n in nodes.values()):
                await asyncio.sleep(0.02)
        print(f"node {follower} restarted with an empty ledger and caught up to index {last}")

        ledgers = {i: n.state_machine for i, n in nodes.items()}
        for i, ledger in sorted(ledgers.items()):
            print(f"  node {i}: total {ledger.total}  "
                  + "  ".join(f"{a}={ledger.balances[a]}" for a in accounts))
        assert all(lg.total == deposited for lg in ledgers.values()), "money appeared or vanished"
        assert all(lg.balances == ledgers[leader.node_id].balances for lg in ledgers.values())
        print(f"every replica holds the same balances, and the total is {deposited}, "
              "as deposited")
        for node in nodes.values():
            await node.stop()


if __name__ == "__main__":
    asyncio.run(main())
