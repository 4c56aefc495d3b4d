"""The outbox: one send() routes by message type, as the persistence contract says."""

from __future__ import annotations

import pathlib
import random
import re

import dengine.raft
from dengine.raft import core as core_module
from dengine.raft.config import RaftConfig
from dengine.raft.core import RaftCore
from dengine.raft.messages import WIRE_TYPES, Message, MessageType
from dengine.raft.outbox import AFTER_PERSIST, AFTER_TERM, Outbox
from dengine.raft.types import HardState
from dengine.testing.raft_network import Network

MT = MessageType
RAFT_DIR = pathlib.Path(dengine.raft.__file__).parent


def test_after_persist_is_the_contracts_list():
    # "Before a node sends a message in ``persisted_messages`` (VOTE requests and responses,
    # APPEND_RESP), ..." -- the core docstring's persistence contract.
    doc = " ".join(core_module.__doc__.split())
    listed = re.search(r"message in ``persisted_messages`` \(([^)]*)\)", doc).group(1)
    named = set()
    if "VOTE requests and responses" in listed:
        named |= {MT.VOTE, MT.VOTE_RESP}
    named |= {MT[w] for w in re.findall(r"\b[A-Z_]{4,}\b", listed) if w in MT.__members__}
    assert named == AFTER_PERSIST


def test_send_routes_by_type():
    out = Outbox(durable_term=1)
    for t in sorted(WIRE_TYPES):
        out.send(Message(t, 2, 1, 1))
    now, after, dropped = out.take()
    assert {m.type for m in after} == AFTER_PERSIST
    assert {m.type for m in now} == set(WIRE_TYPES) - AFTER_PERSIST
    assert dropped == [] and not out
    # A term not yet durable holds back the types of AFTER_TERM too.
    for t in sorted(WIRE_TYPES):
        out.send(Message(t, 2, 1, 2))
    now, after, _ = out.take()
    assert {m.type for m in after} == AFTER_PERSIST | AFTER_TERM
    out.term_durable(2)
    out.send(Message(MT.HEARTBEAT_RESP, 2, 1, 2))
    assert [m.type for m in out.now] == [MT.HEARTBEAT_RESP]


def test_reply_fills_in_sender_receiver_and_term():
    core = RaftCore(1, RaftConfig(), random.Random(0), peers=[2, 3],
                    hard_state=HardState(term=4))
    core.reply(Message(MT.HEARTBEAT, 1, 3, 4, index=9), MT.HEARTBEAT_RESP, index=9)
    core.reply(Message(MT.PRE_VOTE, 1, 2, 6), MT.PRE_VOTE_RESP, term=6)
    assert core.out.now == [
        Message(MT.HEARTBEAT_RESP, to=3, from_=1, term=4, index=9),
        Message(MT.PRE_VOTE_RESP, to=2, from_=1, term=6),
    ]


def test_vote_answers_wait_for_the_fsync_pre_votes_do_not():
    net = Network([1, 2, 3], RaftConfig(pre_vote=True))
    net.core(1).campaign()
    rd = net.core(1).ready()
    assert {m.type for m in rd.messages} == {MT.PRE_VOTE}
    assert rd.persisted_messages == []
    net.core(1).advance(rd)


def test_handlers_never_pick_a_queue_nor_build_messages_positionally():
    for f in RAFT_DIR.glob("*.py"):
        if f.name in ("outbox.py", "messages.py"):
            continue
        src = f.read_text()
        assert ".out.now" not in src and ".out.after" not in src, f.name
        assert "msgs_after" not in src and ".msgs." not in src, f.name
        # Message(type, to, from_, term, ...) positionally: only the core's send_to builds one.
        positional = re.findall(r"Message\(\s*MT\.\w+\s*,", src)
        assert positional == [], (f.name, positional)


def test_a_heartbeat_answer_waits_while_its_term_is_not_durable():
    # Issue 13, defect 1 (stale lease read): a fresh voter that did not vote learns term 1
    # from a heartbeat. Its answer counts toward the leader's lease, which relies on the
    # voter refusing votes for an election timeout; were it to leave before the term is
    # durable, a crash would restart the voter at term 0, where no restart guard applies.
    core = RaftCore(3, RaftConfig(), random.Random(0), peers=[1, 2])
    core.step(Message(MT.HEARTBEAT, 3, 1, 1, index=1))
    rd = core.ready()
    assert rd.hard_state is not None and rd.hard_state.term == 1
    assert [m.type for m in rd.persisted_messages] == [MT.HEARTBEAT_RESP]
    assert all(m.type != MT.HEARTBEAT_RESP for m in rd.messages)
    core.on_persisted(rd.number)
    core.advance(rd)
    # Once the term is durable, heartbeat answers leave at once again.
    core.step(Message(MT.HEARTBEAT, 3, 1, 1, index=2))
    rd = core.ready()
    assert [m.type for m in rd.messages] == [MT.HEARTBEAT_RESP] and not rd.persisted_messages
    core.advance(rd)


def test_a_heartbeat_answer_at_a_durable_term_leaves_at_once_after_a_restart():
    core = RaftCore(3, RaftConfig(), random.Random(0), peers=[1, 2],
                    hard_state=HardState(term=4))
    core.step(Message(MT.HEARTBEAT, 3, 1, 4, index=1))
    rd = core.ready()
    assert [m.type for m in rd.messages] == [MT.HEARTBEAT_RESP]
