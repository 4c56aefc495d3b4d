"""Fixtures for transport tests: run a coroutine on asyncio and on uvloop, failing on any
unhandled loop exception; build configs and started gRPC transports on ephemeral ports."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dengine.config import build_config
from dengine.raft.messages import Message
from dengine.testing.loops import LOOP_KINDS, run_checked

LOOPS = LOOP_KINDS


@pytest.fixture(params=LOOPS)
def run(request) -> Callable[..., Any]:
    """``run(coro_fn, *args, timeout=20)`` runs ``coro_fn(*args)`` on a fresh loop of the
    parametrized kind and fails the test if the loop saw an unhandled exception."""

    def runner(coro_fn: Callable[..., Awaitable[Any]], *args: Any, timeout: float = 20) -> Any:
        return run_checked(request.param, coro_fn, *args, timeout=timeout)

    runner.loop_kind = request.param  # type: ignore[attr-defined]
    return runner


def make_config(node_id: int, tmp_path, *, cluster_id: str = "test", **sections: dict):
    """A config for ``node_id`` of a 3-node cluster listening on an ephemeral port."""
    layers: dict[str, dict] = {
        "cluster": {
            "cluster_id": cluster_id,
            "node_id": node_id,
            "initial_members": {i: f"127.0.0.1:{i}" for i in (1, 2, 3)},  # placeholders
            "listen_addr": "127.0.0.1:0",
            "data_dir": str(tmp_path / f"node-{node_id}"),
        },
        "network": {
            "fault_injection": True,
            "backoff_initial_ms": 20,
            "backoff_max_ms": 200,
            "connect_timeout_ms": 5000,  # a loaded CI machine is slow to connect
        },
    }
    for name, values in sections.items():
        layers.setdefault(name, {}).update(values)
    return build_config(layers)


class Inbox:
    """Collects delivered messages and snapshots; lets a test wait for a count."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.snapshots: list[Any] = []
        self._changed = asyncio.Event()

    def on_message(self, msg: Message) -> None:
        self.messages.append(msg)
        self._changed.set()

    async def on_snapshot(self, incoming: Any) -> None:
        self.snapshots.append(incoming)
        self._changed.set()

    async def wait_for(self, pred: Callable[[], bool], timeout: float = 10) -> None:
        async def loop() -> None:
            while not pred():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)


@pytest.fixture
def inbox_factory() -> Callable[[], Inbox]:
    return Inbox


@pytest.fixture
def config_for(tmp_path) -> Callable[..., Any]:
    """``config_for(node_id, cluster_id="test", **sections)`` (see :func:`make_config`)."""

    def factory(node_id: int, **kwargs: Any) -> Any:
        return make_config(node_id, tmp_path, **kwargs)

    return factory


async def _eventually(pred: Callable[[], bool], timeout: float = 10, step: float = 0.01) -> None:
    async def poll() -> None:
        while not pred():
            await asyncio.sleep(step)

    await asyncio.wait_for(poll(), timeout)


@pytest.fixture
def eventually() -> Callable[..., Awaitable[None]]:
    """``await eventually(pred, timeout=10)``: poll until ``pred()`` holds, else time out."""
    return _eventually
