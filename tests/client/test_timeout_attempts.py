"""A client call that times out says what every attempt met, not just the last one (the issue:
the timeout carried only its last attempt's error)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from dengine.client import Client
from dengine.errors import OperationTimeout


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"  # closed again: nobody listens there


def test_the_timeout_lists_every_attempt():
    dead = [_dead_address(), _dead_address()]

    async def run() -> OperationTimeout:
        async with Client(dead, timeout=1.5) as c:
            with pytest.raises(OperationTimeout) as err:
                await c.get(b"k", endpoint=dead[0])
            return err.value

    err = asyncio.run(run())
    text = str(err)
    assert "attempts:" in text and dead[0] in text
    n = int(text.split(" attempts:")[0].rsplit("(", 1)[1])
    assert n >= 2, text  # more than the last one, each named with its node and error
