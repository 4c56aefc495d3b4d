"""The test-only fault file: ``<data_dir>/FAULTS`` drives the transport's fault switch.

Only when ``network.fault_injection`` is true (off by default, and the switch itself refuses to
work otherwise) does a node watch this file: a JSON object ``{"drop_to": [ids], "drop_from":
[ids], "sync_fault": "EIO"}``, written atomically by a test harness (``sync_fault``, an errno
name, makes every later fsync of the log store fail: :mod:`dengine.storage.failstop`). Every change is applied to the transport's
:class:`~dengine.transport.base.FaultSwitch` and logged at warning; a deleted file or an empty
object heals every link. A file that does not parse is ignored (and logged) until fixed.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dengine.transport.base import Transport

__all__ = ["FAULT_FILE", "watch_fault_file"]

FAULT_FILE = "FAULTS"
POLL_S = 0.05


def _read(path: str) -> tuple[frozenset[int], frozenset[int]]:
    raw = _load(path)
    return (frozenset(int(i) for i in raw.get("drop_to", ())),
            frozenset(int(i) for i in raw.get("drop_from", ())))


def _load(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def _sync_fault(path: str) -> int | None:
    name = _load(path).get("sync_fault")
    return None if name is None else int(getattr(errno, str(name)))


async def watch_fault_file(data_dir: str, transport: Transport, log: Any,
                           store: Any = None) -> None:
    """Poll the fault file and apply each change to ``transport.faults`` (runs until cancelled)."""
    path = os.path.join(data_dir, FAULT_FILE)
    seen: tuple[float, int] | None = None
    current: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset())
    while True:
        try:
            st = os.stat(path)
            stamp = (st.st_mtime, st.st_ino)
        except FileNotFoundError:
            stamp = (0.0, 0)
        if stamp != seen:
            seen = stamp
            try:
                wanted = _read(path)
            except (OSError, ValueError, TypeError, AttributeError) as e:
                log.warning("fault file ignored: it does not parse", path=path, error=str(e))
                wanted = current
            if store is not None and hasattr(store, "inject_sync_fault"):
                try:
                    fault = _sync_fault(path)
                except (OSError, ValueError, TypeError, AttributeError):
                    fault = None
                if fault is not None:
                    store.inject_sync_fault(fault)
                    log.warning("test storage fault set", errno=errno.errorcode.get(fault))
            if wanted != current:
                transport.faults.set(drop_to=wanted[0], drop_from=wanted[1])
                current = wanted
                log.warning("test fault switch changed", drop_to=sorted(wanted[0]),
                            drop_from=sorted(wanted[1]))
        await asyncio.sleep(POLL_S)
