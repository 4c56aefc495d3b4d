"""The opt-in request timeline: off without DENGINE_TIMELINE, and when on, every mark of every
thread reaches the process's file, in CLOCK_MONOTONIC order per thread."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import threading, time
from dengine.observability import timeline
assert timeline.ON
def marks(tag):
    for i in range(15_000):
        timeline.mark(tag, i, 7)
threads = [threading.Thread(target=marks, args=(f"t{n}",)) for n in range(2)]
for t in threads: t.start()
for t in threads: t.join()
timeline.mark("main.end", 1, 2)
print(__import__("os").getpid())
"""


def _run(env_extra: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DENGINE_TIMELINE"}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=True)


def test_off_without_the_variable() -> None:
    out = _run({}, "from dengine.observability import timeline; print(timeline.ON)")
    assert out.stdout.strip() == "False"


def test_every_mark_of_every_thread_reaches_the_file(tmp_path: Path) -> None:
    out = _run({"DENGINE_TIMELINE": str(tmp_path)}, SCRIPT)
    pid = out.stdout.strip()
    lines = (tmp_path / f"{pid}.tl").read_text().splitlines()
    rows = [line.split("\t") for line in lines]
    assert len(rows) == 30_001  # flushed at 20,000 and at exit: nothing lost or doubled
    for tag in ("t0", "t1"):
        mine = [r for r in rows if r[1] == tag]
        assert [int(r[2]) for r in mine] == list(range(15_000))
        assert all(r[3] == "7" for r in mine)
        times = [int(r[0]) for r in mine]
        assert times == sorted(times)
    assert rows[-1][1:] == ["main.end", "1", "2"]
