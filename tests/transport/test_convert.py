"""Core Message <-> protobuf RaftMessage: every wire field survives, garbage is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dengine.errors import DecodeError
from dengine.raft.messages import LOCAL_TYPES, WIRE_TYPES, Message, MessageType
from dengine.raft.types import ConfState, Entry, EntryKind, SnapshotMeta
from dengine.transport.convert import decode, encode, meta_from_proto, meta_to_proto
from dengine.v1 import raft_pb2

# What decode accepts: below 2^63 (dengine.raft.guard.HARD_BOUND); more is a DecodeError.
U64 = st.integers(min_value=0, max_value=2**63 - 1)
IDS = st.integers(min_value=1, max_value=2**63 - 1)
NODE_SETS = st.frozensets(IDS, max_size=5)

entries = st.lists(
    st.builds(
        Entry,
        term=U64,
        index=U64,
        kind=st.sampled_from([int(k) for k in EntryKind]),
        data=st.binary(max_size=64),
    ),
    max_size=5,
).map(tuple)

metas = st.builds(
    SnapshotMeta,
    index=U64,
    term=U64,
    conf_state=st.builds(
        ConfState,
        voters=NODE_SETS,
        learners=NODE_SETS,
        voters_outgoing=NODE_SETS,
        learners_next=NODE_SETS,
        auto_leave=st.booleans(),
    ),
)

messages = st.builds(
    Message,
    type=st.sampled_from(sorted(WIRE_TYPES)),
    to=IDS,
    from_=IDS,
    term=U64,
    log_term=U64,
    index=U64,
    entries=entries,
    commit=U64,
    reject=st.booleans(),
    reject_hint=U64,
    conflict_term=U64,
    conflict_index=U64,
    context=st.binary(max_size=16),
    snapshot=st.none() | metas,
)


@given(messages)
def test_round_trip(msg):
    wire = encode(msg).SerializeToString()
    assert decode(raft_pb2.RaftMessage.FromString(wire)) == msg


@given(metas)
def test_meta_round_trip(meta):
    assert meta_from_proto(meta_to_proto(meta)) == meta


def test_defaults_cost_no_bytes():
    msg = Message(MessageType.HEARTBEAT, to=2, from_=1, term=5)
    assert len(encode(msg).SerializeToString()) <= 8


@pytest.mark.parametrize("local", sorted(LOCAL_TYPES))
def test_local_types_are_refused(local):
    pb = encode(Message(local, to=2, from_=1, term=1))
    with pytest.raises(DecodeError, match="not a peer message type"):
        decode(pb)


def test_unknown_type_missing_ids_and_bad_entry_kind_are_refused():
    pb = raft_pb2.RaftMessage(type=77, to=2, term=1)
    setattr(pb, "from", 1)
    with pytest.raises(DecodeError):
        decode(pb)
    pb = raft_pb2.RaftMessage(type=raft_pb2.MSG_APPEND, to=2, term=1)
    with pytest.raises(DecodeError, match="missing node id"):
        decode(pb)
    pb = encode(Message(MessageType.APPEND, to=2, from_=1, term=1, entries=(Entry(1, 1),)))
    pb.entries[0].kind = 9
    with pytest.raises(DecodeError, match="entry kind"):
        decode(pb)


def test_types_are_the_proto_numbers():
    for t in WIRE_TYPES:
        assert raft_pb2.RaftMessageType.Name(int(t)) == "MSG_" + t.name


@pytest.mark.parametrize("value", [2**63, 2**64 - 1])
@pytest.mark.parametrize(
    "field",
    ["from", "to", "term", "log_term", "index", "commit", "reject_hint", "conflict_term",
     "conflict_index", "entry_term", "entry_index", "snapshot_index", "snapshot_term",
     "snapshot_voter"],
)
def test_numbers_at_or_above_2_63_are_refused_with_a_decode_error(field, value):
    pb = encode(Message(MessageType.APPEND, 2, 1, term=3, log_term=3, index=4,
                        entries=(Entry(3, 5, 0, b"x"),), commit=4,
                        snapshot=SnapshotMeta(1, 1, ConfState(voters=frozenset({1})))))
    if field.startswith("entry_"):
        setattr(pb.entries[0], field.removeprefix("entry_"), value)
    elif field == "snapshot_voter":
        pb.snapshot.conf_state.voters.append(value)
    elif field.startswith("snapshot_"):
        setattr(pb.snapshot, field.removeprefix("snapshot_"), value)
    else:
        setattr(pb, field, value)
    with pytest.raises(DecodeError, match="2\\^63|out of range"):
        decode(pb)
    decode(encode(decode(encode(Message(MessageType.HEARTBEAT, 2, 1, term=2**63 - 1)))))
