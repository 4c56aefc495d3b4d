"""A disk space quota with a NOSPACE alarm, as etcd's backend quota.

Theory of operation. Every ``CHECK_INTERVAL_S`` a worker thread adds up the bytes under the
node's data directory (log, state machine, snapshot files). Once they pass
``storage.quota_bytes`` the node raises its NOSPACE alarm: a warning in the log, the metric
``dengine_alarm_nospace`` at 1, and ``alarms`` in the status (``dengine status`` shows it).
While the alarm is raised the node refuses every write it would propose with
:class:`~dengine.errors.QuotaExceeded` except those that only delete keys (they are how space is
freed); reads go on, and so do membership changes. The alarm stays raised until an operator has
freed space and runs ``dengine alarm disarm``, which measures again and clears the alarm only if
the node is back under its quota, so a cluster never flaps in and out of read-only mode.

Each member watches its own disk, and its alarm is made cluster-wide and durable through the
log (:mod:`dengine.node.cluster_alarm`): while any member's alarm is in the replicated table
the leader refuses writes, whoever measured. ``cluster`` is that table and ``on_measured`` the
step that proposes what changed, run after every measurement.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Gauge

from dengine._core import codec
from dengine.errors import DecodeError, QuotaExceeded
from dengine.node.cluster_alarm import NoAlarms
from dengine.statemachine.alarms import is_alarm

__all__ = ["CHECK_INTERVAL_S", "NOSPACE", "SpaceQuota", "directory_bytes"]

CHECK_INTERVAL_S = 1.0
NOSPACE = "NOSPACE"


def directory_bytes(path: str) -> int:
    """Bytes of the files under ``path`` (files removed while walking are skipped)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _only_deletes(cmd: tuple) -> bool:
    op = cmd[0]
    if op == codec.OP_SESSION:
        return _only_deletes(cmd[3])
    if op == codec.OP_DELETE:
        return True
    if op == codec.OP_BATCH:
        return all(_only_deletes(sub) for sub in cmd[1])
    return False


class SpaceQuota:
    """The node's usage, its quota and the NOSPACE alarm (see the module docstring)."""

    def __init__(self, quota_bytes: int, data_dir: str, logger: Any, node_id: int,
                 registry: Any = None) -> None:
        self.quota_bytes = quota_bytes
        self.data_dir = data_dir
        self.logger = logger
        self.node_id = node_id
        self.used_bytes = 0
        self.alarm = False
        #: The replicated alarm table (every member's alarm, as the log recorded it).
        self.cluster: Any = NoAlarms()
        #: Run after each measurement (ClusterAlarm.sync), None: nothing to propose.
        self.on_measured: Callable[[], Awaitable[None]] | None = None
        self._task: asyncio.Task | None = None
        self._used_gauge = self._alarm_gauge = None
        if registry is not None:
            self._used_gauge = Gauge("dengine_storage_used_bytes",
                                     "bytes under the data directory", registry=registry)
            self._alarm_gauge = Gauge("dengine_alarm_nospace",
                                      "1 while the NOSPACE alarm is raised", registry=registry)

    @property
    def enabled(self) -> bool:
        return self.quota_bytes > 0

    def alarms(self) -> list[str]:
        """This member's alarm, then the other members' the log holds ("NOSPACE on 3")."""
        others = [f"{name} on {m}" for m, name in self.cluster.active().items()
                  if m != self.node_id]
        return ([NOSPACE] if self.alarm else []) + others

    def note_usage(self, used: int) -> None:
        """Record a measurement; raise the alarm when it is past the quota."""
        self.used_bytes = used
        if self._used_gauge is not None:
            self._used_gauge.set(used)
        if self.enabled and used > self.quota_bytes and not self.alarm:
            self.raise_alarm()

    def raise_alarm(self, restored: bool = False) -> None:
        """Raise the local alarm (``restored``: the log held it when the node started)."""
        self.alarm = True
        if self._alarm_gauge is not None:
            self._alarm_gauge.set(1)
        self.logger.warning(
            "NOSPACE alarm raised: writes are refused (reads and deletes go on) until space "
            "is freed and `dengine alarm disarm` is run", used_bytes=self.used_bytes,
            quota_bytes=self.quota_bytes, restored_from_log=restored)

    def check_write(self, command: bytes) -> None:
        """Refuse ``command`` while this member's or any member's alarm is raised, unless it
        only deletes keys or is an alarm entry itself."""
        if not self.alarm and not self.cluster.raised:
            return
        if is_alarm(command):
            return
        try:
            if _only_deletes(codec.decode_command(command)):
                return
        except DecodeError:
            pass
        if self.alarm:
            raise QuotaExceeded(self.used_bytes, self.quota_bytes, self.node_id)
        member = next(iter(self.cluster.active()))
        used, quota = self.cluster.usage(member)
        raise QuotaExceeded(used, quota, member)

    async def disarm(self) -> None:
        """Measure now; clear the alarm if back under the quota, else QuotaExceeded; then
        record the clearing in the log (``on_measured``), so every member takes writes."""
        self.note_usage(await asyncio.to_thread(directory_bytes, self.data_dir))
        if self.enabled and self.used_bytes > self.quota_bytes:
            raise QuotaExceeded(self.used_bytes, self.quota_bytes, self.node_id)
        if self.alarm:
            self.alarm = False
            if self._alarm_gauge is not None:
                self._alarm_gauge.set(0)
            self.logger.warning("NOSPACE alarm disarmed", used_bytes=self.used_bytes,
                             quota_bytes=self.quota_bytes)
        if self.on_measured is not None:
            await self.on_measured()

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._watch(), name=f"dengine-quota-{self.node_id}")

    async def _watch(self) -> None:
        while True:
            try:
                self.note_usage(await asyncio.to_thread(directory_bytes, self.data_dir))
            except Exception as e:  # noqa: BLE001 - measured again at the next interval
                self.logger.error("measuring disk use failed", error=repr(e))
            if self.on_measured is not None:
                await self.on_measured()  # it logs its own failures and retries next time
            await asyncio.sleep(CHECK_INTERVAL_S)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
