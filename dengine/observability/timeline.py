"""An opt-in timeline of the stages of each request, for finding where a write's latency goes.

Theory of operation
-------------------
Off unless the environment variable ``DENGINE_TIMELINE`` names a directory when this module is
first imported: :data:`ON` is then a constant False and every call site is guarded by
``if timeline.ON:``, one global lookup and a branch. When on, :func:`mark` appends
``(time.monotonic_ns(), stage, a, b)`` to an in-process list (``a`` and ``b`` are small
integers a stage gives meaning to: a log index, a peer id), from any thread; the list is written
to ``<dir>/<pid>.tl`` as tab-separated lines every 20,000 events and at exit. CLOCK_MONOTONIC is
one clock for every process of a host, so the files of a client and of the nodes of a local
cluster merge into one timeline (``benches/write_timeline.py`` does that for single writes).

Not for production: nothing bounds the file, and the stages are the ones that single-write
latency work needed, not a stable interface.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from typing import Final

__all__ = ["ON", "mark", "flush"]

_DIR: Final = os.environ.get("DENGINE_TIMELINE", "")
#: True when the timeline records (read once, at import).
ON: Final = bool(_DIR)

_events: list[tuple[int, str, int, int]] = []
_lock = threading.Lock()
_now = time.monotonic_ns


def mark(stage: str, a: int = 0, b: int = 0) -> None:
    """Record that ``stage`` happened now (call only under ``if timeline.ON``)."""
    _events.append((_now(), stage, a, b))
    if len(_events) >= 20_000:
        flush()


def flush() -> None:
    """Append what was recorded to this process's file (marks made meanwhile, from other
    threads, stay in the list for the next flush: one list, cut from the front only)."""
    with _lock:
        n = len(_events)
        if not n:
            return
        events = _events[:n]
        del _events[:n]
        with open(os.path.join(_DIR, f"{os.getpid()}.tl"), "a", encoding="ascii") as f:
            f.writelines(f"{t}\t{s}\t{a}\t{b}\n" for t, s, a, b in events)


if ON:
    os.makedirs(_DIR, exist_ok=True)
    atexit.register(flush)
