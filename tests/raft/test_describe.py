"""The canonical text forms used in traces."""

from __future__ import annotations

from dengine.raft import Entry, Message, MessageType
from dengine.raft.describe import describe_entries, describe_message, describe_ready
from dengine.testing.raft_network import Network

MT = MessageType


def test_entries_fold_runs_of_one_term():
    ents = [Entry(1, 1), Entry(1, 2), Entry(1, 3), Entry(2, 4), Entry(3, 5), Entry(3, 6)]
    assert describe_entries(ents) == "[1..3@1 4@2 5..6@3]"
    assert describe_entries([]) == "[]"


def test_message_shows_the_fields_its_type_uses():
    m = Message(MT.APPEND, 2, 1, term=3, log_term=2, index=5, commit=4,
                entries=(Entry(3, 6), Entry(3, 7)))
    assert describe_message(m) == "APPEND 1->2 t3 i5@2 c4 [6..7@3]"
    r = Message(MT.APPEND_RESP, 1, 2, term=3, index=5, reject=True, conflict_index=3,
                conflict_term=2, reject_hint=4)
    assert describe_message(r) == "APPEND_RESP 2->1 t3 reject i5 hint3@2 last4"
    assert describe_message(Message(MT.HEARTBEAT, 2, 1, term=3, commit=4, index=9)) == (
        "HEARTBEAT 1->2 t3 c4 r9"
    )


def test_ready_is_one_header_line_and_one_line_per_message():
    net = Network((1, 2, 3))
    core = net.core(1)
    core.campaign()
    text = describe_ready(core.ready())
    assert text.splitlines() == [
        "ready#1 pre_candidate lead0",
        "  send PRE_VOTE 1->2 t1 last0@0",
        "  send PRE_VOTE 1->3 t1 last0@0",
    ]
