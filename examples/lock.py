"""A distributed lock on a lease and a watch, with fencing tokens, against `dengine cluster up`.

Each contender holds a lease (kept alive in the background) and puts one key under the lock's
prefix, attached to that lease: the put's revision is its place in line and its *fencing
token*. The contender with the smallest revision holds the lock; every other one watches the
key just ahead of it (from that key's revision + 1, so a delete that already happened is
replayed, not missed) and looks again when it is deleted. Releasing deletes the key; a holder
that dies loses its lease, which deletes the key for it. A protected resource accepts a write
only with a token above the last one it saw, so a holder that paused past its lease can no
longer do harm.

Here three workers each increment a shared counter five times with a plain read and write
(a lost update without mutual exclusion) and, with ``--kill-leader``, the cluster's leader is
killed with SIGKILL midway. Run::

    dengine cluster up &            # in another terminal
    python examples/lock.py --kill-leader
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _local import endpoints, kill_leader  # noqa: E402

from dengine.client import Client  # noqa: E402


class Lock:
    """A lock named ``name`` held through ``lease_id`` (the caller keeps the lease alive)."""

    def __init__(self, client: Client, name: str, lease_id: int) -> None:
        self.c = client
        self.prefix = f"{name}/"
        self.key = f"{self.prefix}{lease_id:016x}"
        self.lease_id = lease_id

    async def acquire(self) -> int:
        """Wait for the lock; returns the fencing token (the revision of our place in line)."""
        token = await self.c.put(self.key, b"", lease=self.lease_id)
        while True:
            page = await self.c.scan(prefix=self.prefix, limit=10_000)
            ahead = [kv for kv in page.kvs if kv.revision < token]
            if not ahead:
                return token
            pred = max(ahead, key=lambda kv: kv.revision)
            async for update in self.c.watch(pred.key, start_revision=pred.revision + 1):
                if any(e.type == "delete" for e in update.events):
                    break

    async def release(self) -> None:
        await self.c.delete(self.key)


async def worker(n: int, eps: list[str], rounds: int, log: list) -> None:
    async with Client(eps, timeout=20) as c:
        lease = await c.grant(5)
        keeper = asyncio.ensure_future(_keep(c.keep_alive(lease.id)))
        lock = Lock(c, "lock-demo/lock", lease.id)
        try:
            for _ in range(rounds):
                token = await lock.acquire()
                kv = await c.get("lock-demo/counter")
                count, last_token = map(int, (kv.value if kv else b"0:0").split(b":"))
                if token <= last_token:  # the resource refuses a stale holder
                    raise SystemExit(f"fencing: token {token} is not above {last_token}")
                await asyncio.sleep(0.05)  # the critical section takes a while
                await c.put("lock-demo/counter", f"{count + 1}:{token}")
                log.append((n, token))
                print(f"worker {n} held the lock with fencing token {token}; counter "
                      f"{count} -> {count + 1}", flush=True)
                await lock.release()
        finally:
            keeper.cancel()
            await c.revoke(lease.id)


async def _keep(renewals) -> None:
    async for _ in renewals:
        pass


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None, help="the cluster's directory (cluster up)")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--kill-leader", action="store_true",
                    help="SIGKILL the cluster's leader midway")
    args = ap.parse_args()
    eps = endpoints(args.data_dir)
    async with Client(eps, timeout=20) as c:
        await c.delete("lock-demo/counter")
        log: list = []
        tasks = [asyncio.ensure_future(worker(n, eps, args.rounds, log))
                 for n in range(1, args.workers + 1)]
        if args.kill_leader:
            total = args.workers * args.rounds
            while len(log) < total // 3 and not all(t.done() for t in tasks):
                await asyncio.sleep(0.02)
            print(f"killed the leader, node {await kill_leader(c, args.data_dir)} (SIGKILL)",
                  flush=True)
        await asyncio.gather(*tasks)
        kv = await c.get("lock-demo/counter")
        count = int(kv.value.split(b":")[0])
        tokens = [t for _, t in log]
        expected = args.workers * args.rounds
        print(f"counter = {count} after {args.workers} workers x {args.rounds} rounds: "
              + ("no update lost" if count == expected else "UPDATES LOST"))
        print("fencing tokens strictly increased" if tokens == sorted(set(tokens))
              else "FENCING TOKENS OUT OF ORDER")
        return 0 if count == expected and tokens == sorted(set(tokens)) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
