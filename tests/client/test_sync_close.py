"""SyncClient.close in a real process: nothing left pending on its loop, nothing on stderr.

The script runs in a child process because asyncio reports a task destroyed pending only when
it is collected, typically at interpreter exit, on stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys, threading, time
from dengine.client import SyncClient

c = SyncClient(sys.argv[1].split(","), timeout=10)
c.put("a", "1")
outcome = []

def worker():
    try:
        c.get("a")  # the server stalls it: still in flight when the main thread closes
        outcome.append("answered")
    except BaseException as e:
        outcome.append(type(e).__name__)

t = threading.Thread(target=worker, daemon=True)
t.start()
time.sleep(0.5)
c.close()
t.join(5)
print("worker:", outcome[0] if outcome else "still waiting")
"""


def test_closing_with_a_call_in_flight_ends_it_and_prints_nothing(serve_in_thread):
    def stall_gets(fc) -> None:
        for node in fc.nodes:
            node.stall["get"] = 1

    fc, stop = serve_in_thread(3, stall_gets)
    try:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, ",".join(fc.endpoints)],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
    finally:
        stop()
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    # Closing fails the call in flight (the loop used to stop under it: it waited forever).
    assert out.stdout.strip() == "worker: Unavailable"
