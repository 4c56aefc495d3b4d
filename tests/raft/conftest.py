"""Helpers for the Raft scenario tests (the network itself is dengine.testing.raft_network)."""

from __future__ import annotations

import pytest

from dengine.raft.config import RaftConfig
from dengine.raft.messages import Message, MessageType
from dengine.testing.raft_network import Network


@pytest.fixture
def net3() -> Network:
    """Three nodes, node 1 elected and its no-op committed everywhere."""
    net = Network((1, 2, 3))
    net.elect(1)
    return net


@pytest.fixture
def count_messages():
    """Returns a hook that counts messages by type (and still delivers them)."""

    def make(net: Network, keep=lambda m: True):
        seen: list[Message] = []

        def hook(m: Message) -> bool:
            seen.append(m)
            return keep(m)

        net.hook = hook
        return seen

    return make


def of_type(msgs: list[Message], t: MessageType, **fields) -> list[Message]:
    return [m for m in msgs if m.type == t and all(getattr(m, k) == v for k, v in fields.items())]


@pytest.fixture
def of():
    return of_type


def config(**kw) -> RaftConfig:
    return RaftConfig(**kw)
