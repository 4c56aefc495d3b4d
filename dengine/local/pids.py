"""Node processes known only by their pid: those of a detached cluster, or restarted by
another ``dengine`` command, which this process did not start and cannot ``wait()`` for.

A pid is trusted only while it still runs the same node: on Linux its command line must name
the node's config file (a recycled pid belongs to some other program); a zombie counts as ended.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["pid_runs", "wait_gone", "find_node_process"]


def pid_runs(pid: int | None, config_path: str | os.PathLike[str]) -> bool:
    """True while ``pid`` is alive and (where /proc tells) runs the node of ``config_path``."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) is all there is
    return state not in ("Z", "X") and os.fsencode(str(config_path)) in cmdline


def wait_gone(pid: int, config_path: str | os.PathLike[str], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to end; True when it has."""
    deadline = time.monotonic() + timeout
    while pid_runs(pid, config_path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def find_node_process(config_path: str | os.PathLike[str]) -> int | None:
    """The pid of a process (not ours) running the node of ``config_path``, e.g. a
    ``dengine serve --config .../node.toml`` started by hand; None if none or no /proc."""
    needle = os.fsencode(str(config_path))
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for name in entries:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and b"serve" in cmdline and pid_runs(int(name), config_path):
            return int(name)
    return None
