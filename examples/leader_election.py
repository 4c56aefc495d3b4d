"""Leader election on a lease and a watch (campaign, observe, resign), against `dengine cluster
up`.

A candidate *campaigns* by putting a key under the election's prefix, attached to its lease:
the candidate whose key has the smallest revision leads, and the others wait in line by
watching the key just ahead of theirs. *Observe* watches the whole prefix from a revision and
reports who leads after each change, without a gap and without a repeat even if the member it
watches moves. *Resign* deletes the candidate's key; a candidate that dies loses its lease,
which deletes the key for it, so the next in line takes over within one TTL.

Here three candidates campaign; each leads for a moment, then resigns, and an observer checks
that the leaders it saw are exactly the candidates in campaign order, once each. With
``--kill-leader`` the cluster's Raft leader is killed with SIGKILL midway. Run::

    dengine cluster up &            # in another terminal
    python examples/leader_election.py --kill-leader
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _local import endpoints, kill_leader  # noqa: E402

from dengine.client import Client  # noqa: E402

PREFIX = "election-demo/"


class Election:
    """One candidate's view of the election under ``prefix``."""

    def __init__(self, client: Client, prefix: str, lease_id: int) -> None:
        self.c = client
        self.prefix = prefix
        self.key = f"{prefix}{lease_id:016x}"
        self.lease_id = lease_id

    async def campaign(self, name: str) -> int:
        """Wait until this candidate leads; returns its revision (a fencing token)."""
        rev = await self.c.put(self.key, name, lease=self.lease_id)
        while True:
            page = await self.c.scan(prefix=self.prefix, limit=10_000)
            ahead = [kv for kv in page.kvs if kv.revision < rev]
            if not ahead:
                return rev
            pred = max(ahead, key=lambda kv: kv.revision)
            async for update in self.c.watch(pred.key, start_revision=pred.revision + 1):
                if any(e.type == "delete" for e in update.events):
                    break

    async def resign(self) -> None:
        await self.c.delete(self.key)


async def observe(c: Client, prefix: str, start_revision: int, until: int, seen: list) -> None:
    """Report the leader (the live key with the smallest revision) after every change."""
    live: dict[bytes, tuple[int, bytes]] = {}
    leader = None
    async for update in c.watch(prefix, prefix=True, start_revision=start_revision):
        for e in update.events:
            if e.type == "put" and e.version == 1:
                live[e.key] = (e.revision, e.value)
            elif e.type == "delete":
                live.pop(e.key, None)
        now = min(live.values())[1] if live else None
        if now is not None and now != leader:
            leader = now
            seen.append(now.decode())
            print(f"observer: the leader is {now.decode()} (as of revision {update.revision})",
                  flush=True)
        if len(seen) >= until and not live:
            return


async def candidate(name: str, eps: list[str], order: list) -> None:
    async with Client(eps, timeout=20) as c:
        lease = await c.grant(5)
        keeper = asyncio.ensure_future(_keep(c.keep_alive(lease.id)))
        election = Election(c, PREFIX, lease.id)
        try:
            order.append(name)
            token = await election.campaign(name)
            print(f"{name} leads (token {token})", flush=True)
            await asyncio.sleep(0.5)  # lead for a while
            await election.resign()
            print(f"{name} resigned", flush=True)
        finally:
            keeper.cancel()
            await c.revoke(lease.id)


async def _keep(renewals) -> None:
    async for _ in renewals:
        pass


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None, help="the cluster's directory (cluster up)")
    ap.add_argument("--kill-leader", action="store_true",
                    help="SIGKILL the cluster's Raft leader midway")
    args = ap.parse_args()
    eps = endpoints(args.data_dir)
    names = ["alice", "bob", "carol"]
    async with Client(eps, timeout=20) as c:
        start = await c.put(PREFIX.rstrip("/"), "marker") + 1
        seen: list[str] = []
        watcher = asyncio.ensure_future(observe(c, PREFIX, start, len(names), seen))
        order: list[str] = []
        tasks = []
        for name in names:  # campaign one after the other: the line is alice, bob, carol
            tasks.append(asyncio.ensure_future(candidate(name, eps, order)))
            while len(order) < len(tasks):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
        if args.kill_leader:
            while len(seen) < 2:
                await asyncio.sleep(0.02)
            print(f"killed the Raft leader, node {await kill_leader(c, args.data_dir)} (SIGKILL)",
                  flush=True)
        await asyncio.gather(*tasks)
        await asyncio.wait_for(watcher, 30)
        ok = seen == names
        print("every candidate led once, in campaign order" if ok
              else f"LEADERS OUT OF ORDER: {seen}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
