"""Shared by the coordination examples: find the cluster ``dengine cluster up`` started, and
kill its leader with SIGKILL (to show the example rides through a failover)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from dengine.client import Client


def cluster_record(data_dir: str | None) -> dict | None:
    """``cluster.json`` of the local cluster in ``data_dir`` (default ``./data``, where
    `dengine cluster up` puts it), or None."""
    path = Path(data_dir or "data") / "cluster.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def endpoints(data_dir: str | None) -> list[str]:
    """$DENGINE_ENDPOINTS, else the endpoints of the local cluster."""
    env = os.environ.get("DENGINE_ENDPOINTS")
    if env:
        return [e for e in env.split(",") if e]
    record = cluster_record(data_dir)
    if record is None:
        raise SystemExit(f"no cluster found in {data_dir or './data'}: start one with "
                         "`dengine cluster up` there, or pass --data-dir or $DENGINE_ENDPOINTS")
    return record["endpoints"]


async def kill_leader(c: Client, data_dir: str | None) -> int:
    """SIGKILL the leader's process (pid from cluster.json); returns its node id."""
    st = await c.status()
    record = cluster_record(data_dir) or {}
    pids = {n["id"]: n.get("pid") for n in record.get("nodes", [])}
    pid = pids.get(st.id)
    if not pid:
        raise SystemExit(f"no pid recorded for node {st.id}: is `dengine cluster up` running?")
    os.kill(pid, signal.SIGKILL)
    return st.id
