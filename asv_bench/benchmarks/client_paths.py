"""The client paths of a real cluster: single writes, and the unary gRPC path beside the stream.

Three ``dengine serve`` processes on loopback with the defaults (RocksDB, fsync on), started
once per parameter through :func:`dengine.bench.local.dengine_processes`; the client runs in the
benchmark process on its own event loop (a background thread, as in ``end_to_end``). Both
clients are the ones ``dengine bench`` drives: ``stream`` is dengine's Python client (the Batch
stream), ``unary`` plain generated stubs, one call per operation (``--client unary``).

- ``time_write_single``: ``OPS`` puts one after another from one caller: one fsync on the leader
  and a follower plus the client's and the followers' round trips per write, nothing to batch.
- ``time_write_concurrent`` / ``time_read_linearizable_concurrent``: ``OPS`` operations from
  ``CONCURRENCY`` callers on ``CONNECTIONS`` channels.

``python asv_bench/benchmarks/client_paths.py`` prints operations per second for each case.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
import time
from typing import Any

OPS = 200
CONCURRENCY = 50
CONNECTIONS = 5
VALUE = b"v" * 256
CLIENTS = ["stream", "unary"]


class _Bench:
    """A running cluster and an opened bench target; ``run(coro)`` runs on the client loop."""

    def __init__(self, client: str) -> None:
        from dengine.observability.logging import configure_logging

        configure_logging("error")
        self.tmp = tempfile.mkdtemp(prefix="dengine-asv-paths-")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stack = contextlib.AsyncExitStack()
        self.target = self.run(self._open(client), timeout=120)

    def run(self, coro: Any, timeout: float = 300) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _open(self, client: str) -> Any:
        from dengine.bench.local import dengine_processes
        from dengine.bench.targets import make_target

        lc = await self.stack.enter_async_context(dengine_processes(f"{self.tmp}/cluster"))
        target = make_target("dengine-unary" if client == "unary" else "dengine", lc.endpoints)
        await target.open(CONNECTIONS)
        self.stack.push_async_callback(target.close)
        for i in range(0, OPS, CONCURRENCY):  # every key the reads ask for exists
            await asyncio.gather(*(target.put(w, b"%08d" % (i + w), VALUE)
                                   for w in range(CONCURRENCY)))
        return target

    async def write_single(self) -> None:
        put = self.target.put
        for i in range(OPS):
            await put(0, b"%08d" % i, VALUE)

    async def concurrent(self, read: bool) -> None:
        per = OPS // CONCURRENCY
        t = self.target

        async def one(w: int) -> None:
            for i in range(per):
                key = b"%08d" % (w * per + i)
                if read:
                    await t.get(w, key, "linearizable")
                else:
                    await t.put(w, key, VALUE)

        await asyncio.gather(*(one(w) for w in range(CONCURRENCY)))

    def close(self) -> None:
        try:
            self.run(self.stack.aclose(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


class ClientPaths:
    """``OPS`` operations per timed call; compare the two clients within one run."""

    params = CLIENTS
    param_names = ["client"]
    timeout = 300
    number = 1
    repeat = (1, 3, 20.0)
    warmup_time = 0
    processes = 1  # each process starts a cluster of its own: one is enough

    def setup(self, client: str) -> None:
        self.b = _Bench(client)

    def teardown(self, client: str) -> None:
        self.b.close()

    def time_write_single(self, client: str) -> None:
        self.b.run(self.b.write_single())

    def time_write_concurrent(self, client: str) -> None:
        self.b.run(self.b.concurrent(read=False))

    def time_read_linearizable_concurrent(self, client: str) -> None:
        self.b.run(self.b.concurrent(read=True))


def main() -> None:
    cases = [("write_single", lambda b: b.write_single()),
             ("write_concurrent", lambda b: b.concurrent(read=False)),
             ("read_linearizable_concurrent", lambda b: b.concurrent(read=True))]
    for client in CLIENTS:
        b = _Bench(client)
        try:
            for name, make in cases:
                t0 = time.perf_counter()
                for _ in range(3):
                    b.run(make(b))
                rate = 3 * OPS / (time.perf_counter() - t0)
                print(f"{client:<7} {name:<30} {rate:>9,.0f} ops/s")
        finally:
            b.close()


if __name__ == "__main__":
    main()
