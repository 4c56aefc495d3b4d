"""The one Ready driver: its order is the core docstring's, and every shell uses it."""

from __future__ import annotations

import pathlib
import re

import pytest

import dengine
from dengine.raft import core as core_module
from dengine.raft.driver import PERSIST_LATER, STEPS, ReadyIO, drive_ready, on_durable, run_now
from dengine.raft.messages import Message, MessageType
from dengine.raft.ready import ReadState, Ready, SoftState
from dengine.raft.types import ConfState, Entry, HardState, SnapshotMeta

MT = MessageType

#: The core docstring's loop, line by line: the call each line starts with -> driver step.
DOC_CALLS = {
    "install": "install_snapshot",
    "observe": "observe",
    "reconnect": "reconnect",
    "send(rd.messages)": "send",
    "persist": "persist",
    "apply": "apply",
    "core.on_persisted": "on_persisted",
    "send(rd.persisted_messages)": "send_persisted",
    "core.advance": "advance",
    "compact": "compact",
}


def _docstring_order() -> list[str]:
    doc = core_module.__doc__
    block = doc[doc.index("rd = core.ready()"):].split("\n\n")[0].splitlines()[1:]
    order = []
    for line in block:
        code = line.split("#")[0].strip()
        if not code:
            continue
        for call, step in DOC_CALLS.items():
            if code.startswith(call):
                order.append(step)
                break
        else:
            raise AssertionError(f"unknown call in the core docstring's loop: {code!r}")
    return order


class _Recorder:
    """A shell whose I/O steps record their names (and the core calls the driver makes)."""

    def __init__(self, rd: Ready, persist_result: object = None) -> None:
        self.rd = rd
        self.calls: list[str] = []
        self.persist_result = persist_result

    # the core's side
    def on_persisted(self, number: int) -> None:
        assert number == self.rd.number
        self.calls.append("on_persisted")

    def advance(self, rd: Ready) -> None:
        self.calls.append("advance")

    def conf_state_at(self, index: int) -> ConfState:
        return ConfState(voters=frozenset({1}))

    # ReadyIO
    def install_snapshot(self, meta: SnapshotMeta) -> None:
        self.calls.append("install_snapshot")

    def observe(self, rd: Ready) -> None:
        self.calls.append("observe")

    def reconnect(self, conf_state: ConfState) -> None:
        self.calls.append("reconnect")

    def send(self, messages: list[Message]) -> None:
        if messages is self.rd.persisted_messages:
            self.calls.append("send_persisted")
        else:
            assert messages is self.rd.messages
            self.calls.append("send")

    def persist(self, rd: Ready) -> object:
        self.calls.append("persist")
        return self.persist_result

    def apply(self, entries: list[Entry], read_states: list[ReadState]) -> None:
        self.calls.append("apply")

    def compact(self, index: int, conf_state: ConfState) -> None:
        self.calls.append("compact")


def _full_ready() -> Ready:
    e = Entry(2, 5, 0, b"x")
    return Ready(
        7,
        soft_state=SoftState(1, 0, 2),
        hard_state=HardState(2, 1, 4),
        entries=[e],
        messages=[Message(MT.APPEND, 2, 1, 2)],
        persisted_messages=[Message(MT.VOTE_RESP, 2, 1, 2)],
        committed_entries=[Entry(2, 4, 0, b"y")],
        read_states=[ReadState(b"r", 4)],
        snapshot=SnapshotMeta(3, 1, ConfState(voters=frozenset({1, 2}))),
        compact_to=2,
        conf_state=ConfState(voters=frozenset({1, 2})),
    )


def test_the_core_docstring_states_the_drivers_order():
    assert _docstring_order() == list(STEPS)


def test_the_driver_calls_every_step_in_the_docstrings_order():
    rd = _full_ready()
    rec = _Recorder(rd)
    run_now(drive_ready(rec, rd, rec))  # type: ignore[arg-type]
    assert rec.calls == _docstring_order()


def test_empty_parts_of_a_ready_are_skipped():
    rd = Ready(3)
    rec = _Recorder(rd)
    run_now(drive_ready(rec, rd, rec))  # type: ignore[arg-type]
    assert rec.calls == ["observe", "persist", "on_persisted", "advance"]


class _Later:
    def __await__(self):
        yield self


def test_apply_runs_while_the_fsync_does_and_acks_wait_for_it():
    rd = _full_ready()
    rec = _Recorder(rd, persist_result=_Later())
    turn = drive_ready(rec, rd, rec)  # type: ignore[arg-type]
    assert isinstance(turn.send(None), _Later)  # suspended on the fsync
    assert rec.calls[-2:] == ["persist", "apply"]
    assert "send_persisted" not in rec.calls and "on_persisted" not in rec.calls
    with pytest.raises(StopIteration):
        turn.send(None)
    assert rec.calls[-4:] == ["on_persisted", "send_persisted", "advance", "compact"]


def test_persist_later_leaves_the_durability_report_to_the_shell():
    rd = _full_ready()
    rec = _Recorder(rd, persist_result=PERSIST_LATER)
    run_now(drive_ready(rec, rd, rec))  # type: ignore[arg-type]
    assert "on_persisted" not in rec.calls and "send_persisted" not in rec.calls
    assert rec.calls[-2:] == ["advance", "compact"]
    on_durable(rec, rd.number, rd.persisted_messages, rec)  # type: ignore[arg-type]
    assert rec.calls[-2:] == ["on_persisted", "send_persisted"]


def test_run_now_refuses_a_turn_that_would_wait():
    rd = Ready(1)
    rec = _Recorder(rd, persist_result=_Later())
    with pytest.raises(RuntimeError, match="suspended"):
        run_now(drive_ready(rec, rd, rec))  # type: ignore[arg-type]


def test_the_recorder_implements_the_whole_protocol():
    names = {n for n in vars(ReadyIO) if not n.startswith("_")}
    assert names == set(STEPS) - {"on_persisted", "send_persisted", "advance"}
    assert all(callable(getattr(_Recorder, n)) for n in names)


ROOT = pathlib.Path(dengine.__file__).parent
SHELLS = ["node/node.py", "testing/sim_shell.py", "testing/raft_network.py"]


@pytest.mark.parametrize("path", SHELLS)
def test_every_shell_takes_its_readies_only_into_the_one_driver(path):
    src = (ROOT / path).read_text()
    calls = re.findall(r"^.*\.ready\(\).*$", src, re.M)
    assert calls, f"{path} never takes a Ready"
    for line in calls:
        named = re.match(r"\s*(\w+) = \w+\.ready\(\)$", line)
        assert "drive_ready(" in line or (
            named and f"drive_ready(core, {named.group(1)}, " in src), line
    assert ".advance(" not in src and ".on_persisted(" not in src


def test_the_node_and_the_test_shells_implement_every_step():
    from dengine.node.node import Node
    from dengine.testing import raft_network, sim_shell

    names = {n for n in vars(ReadyIO) if not n.startswith("_")}
    for shell in (Node, sim_shell.SimIO, raft_network._PeerIO):
        missing = [n for n in names if not callable(getattr(shell, n, None))]
        assert missing == [], shell
