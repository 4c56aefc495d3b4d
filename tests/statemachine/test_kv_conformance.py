"""The shipped state machine suites, run against the KV machine on both engines."""

from dengine.testing.statemachine_conformance import (
    KVStateMachineConformance,
    StateMachineConformance,
)


class TestKVSemantics(KVStateMachineConformance):
    """KV semantics on memory and rocksdb (``kv_factory`` in conftest.py)."""


class TestKVIsAStateMachine(StateMachineConformance):
    """The generic contract, with the KV machine as ``sm_factory``."""
