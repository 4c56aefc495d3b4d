"""A set of background tasks a node keeps until they end, so none is garbage-collected midway
and ``stop()`` can wait for the ones it must."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["TaskSet"]


class TaskSet:
    """Tasks started on the running loop and held until done."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the tasks running now to end."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
