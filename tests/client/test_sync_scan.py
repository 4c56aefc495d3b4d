"""SyncClient.scan_iter: one hop per page and the next page read ahead, so that a long scan
(``dengine scan``) runs at the async client's speed; stopping early leaves nothing behind."""

from __future__ import annotations

import time

from dengine.client import SyncClient


def _wait_for(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_scan_iter_reads_the_next_page_ahead_and_returns_every_key(serve_in_thread):
    fc, stop = serve_in_thread()
    try:
        with SyncClient(fc.endpoints, timeout=10) as c:
            keys = [b"k%05d" % i for i in range(2500)]
            c.write_batch(puts=[(k, k[::-1]) for k in keys])
            before = fc.total("scan")
            it = c.scan_iter(page_size=1000)
            first = next(it)
            # Only one key of the first page consumed, yet the second page is asked for.
            assert _wait_for(lambda: fc.total("scan") - before == 2)
            rest = list(it)
            assert [first.key] + [kv.key for kv in rest] == keys
            assert all(kv.value == kv.key[::-1] for kv in rest)
            assert fc.total("scan") - before == 3  # three pages, nothing read past the end
    finally:
        stop()


def test_scan_iter_stopped_early_drops_its_read_ahead(serve_in_thread):
    fc, stop = serve_in_thread()
    try:
        with SyncClient(fc.endpoints, timeout=10) as c:
            c.write_batch(puts=[(b"k%04d" % i, b"v") for i in range(30)])
            it = c.scan_iter(page_size=10)
            assert next(it).key == b"k0000"
            it.close()
            assert c.get(b"k0029").value == b"v"  # the client carries on
            assert [kv.key for kv in c.scan_iter(b"k0025", page_size=10)] == [
                b"k%04d" % i for i in range(25, 30)]
    finally:
        stop()
