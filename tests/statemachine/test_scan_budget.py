"""A scan page stops at its byte budget (always keeping one key) and its continuation resumes
exactly after the last key it returned, on both engines."""

from __future__ import annotations

from dengine._core import codec
from dengine.raft.types import Entry


def _fill(sm, n: int, size: int) -> None:
    sm.apply([Entry(1, i + 1, 0, codec.encode_put(b"k%03d" % i, b"v" * size)) for i in range(n)])


def _walk(sm, max_bytes: int, limit: int = 0, prefix: bytes | None = None):
    pages, start = [], b""
    while True:
        page = (sm.prefix(prefix, limit, start or None, max_bytes=max_bytes) if prefix
                else sm.range(start, None, limit, max_bytes=max_bytes))
        pages.append([kv.key for kv in page.items])
        if page.next_key is None:
            return pages
        start = page.next_key


def test_pages_stop_at_the_byte_budget(kv_factory):
    sm = kv_factory.open()
    _fill(sm, 30, 1000)
    pages = _walk(sm, max_bytes=5000)
    assert all(1 <= len(p) <= 5 for p in pages)
    assert [k for p in pages for k in p] == [b"k%03d" % i for i in range(30)]
    assert _walk(sm, max_bytes=5000, limit=3) == [[b"k%03d" % i for i in range(j, min(j + 3, 30))]
                                                 for j in range(0, 30, 3)]
    by_prefix = _walk(sm, max_bytes=2500, prefix=b"k01")
    assert [k for p in by_prefix for k in p] == [b"k%03d" % i for i in range(10, 20)]
    sm.close()


def test_a_value_over_the_budget_still_comes_one_per_page(kv_factory):
    sm = kv_factory.open()
    _fill(sm, 4, 10_000)
    assert _walk(sm, max_bytes=1024)[:4] == [[b"k%03d" % i] for i in range(4)]
    assert sm.range(b"").items[-1].key == b"k003"  # no budget: everything
    sm.close()
