"""Fixtures for the state machine tests: the KV machine on each engine."""

from __future__ import annotations

import os
import random

import pytest

from dengine._core import codec
from dengine.statemachine import KVStateMachine, MemoryEngine, RocksEngine
from dengine.statemachine.sessions import encode_register


class KVFactory:
    """Opens the KV machine on one engine at one directory; ``open`` again is a restart."""

    def __init__(self, kind: str, path: str) -> None:
        self.kind = kind
        self.path = path
        self.durable = kind != "memory"

    def open(self, **options) -> KVStateMachine:
        engine = MemoryEngine() if self.kind == "memory" else RocksEngine(self.path)
        return KVStateMachine(engine, **options)

    def command(self, rng: random.Random) -> bytes:
        key = b"k%d" % rng.randrange(20)
        r = rng.random()
        if r < 0.6:
            return codec.encode_put(key, rng.randbytes(rng.randrange(40)))
        if r < 0.8:
            return codec.encode_delete(key)
        if r < 0.85:
            return encode_register()  # sessions are named after their entry's index
        return codec.encode_session(rng.randrange(1, 40) * 256, rng.randrange(10),
                                    codec.encode_put(key, b"s"))

    def state(self, sm: KVStateMachine) -> object:
        return sm.range(b"").items, sm.applied_index(), sm.sessions.dump()

    def __repr__(self) -> str:
        return f"KVFactory({self.kind})"


@pytest.fixture(params=["memory", "rocksdb"])
def kv_factory(request, tmp_path) -> KVFactory:
    return KVFactory(request.param, os.path.join(tmp_path, "kv"))


@pytest.fixture
def sm_factory(kv_factory) -> KVFactory:
    return kv_factory
