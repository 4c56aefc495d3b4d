"""The core's :class:`~dengine.raft.messages.Message` <-> protobuf ``dengine.v1.RaftMessage``.

The core never sees protobuf; this is the edge where its frozen dataclasses meet the wire.
``MessageType`` numbers are the proto's ``RaftMessageType`` numbers, so types convert by cast.
:func:`decode` trusts nothing: a local type (HUP, BEAT, CHECK_QUORUM), an unknown type, an
unknown entry kind, a missing node id, or a term, index or node id at or above 2^63 (which no
core ever accepts: ``dengine.raft.guard.HARD_BOUND``) raise :class:`~dengine.errors.DecodeError`.
Finer bounds (2^62) are the core's to check when it steps the message.
"""

from __future__ import annotations

from dengine.errors import DecodeError
from dengine.raft.guard import HARD_BOUND
from dengine.raft.messages import WIRE_TYPES, Message, MessageType
from dengine.raft.types import ConfState, Entry, EntryKind, SnapshotMeta
from dengine.v1 import raft_pb2

__all__ = ["encode", "decode", "meta_to_proto", "meta_from_proto"]

_WIRE_NUMBERS = frozenset(int(t) for t in WIRE_TYPES)
_TYPE_OF = {int(t): t for t in MessageType}
_KINDS = frozenset(int(k) for k in EntryKind)
_PbEntry = raft_pb2.Entry


def meta_to_proto(meta: SnapshotMeta) -> raft_pb2.SnapshotMeta:
    cs = meta.conf_state
    return raft_pb2.SnapshotMeta(
        index=meta.index,
        term=meta.term,
        conf_state=raft_pb2.ConfState(
            voters=sorted(cs.voters),
            learners=sorted(cs.learners),
            voters_outgoing=sorted(cs.voters_outgoing),
            learners_next=sorted(cs.learners_next),
            auto_leave=cs.auto_leave,
        ),
    )


def _out_of_range(pb: raft_pb2.RaftMessage) -> str:
    for name in ("from", "to", "term", "log_term", "index", "commit", "reject_hint",
                 "conflict_term", "conflict_index"):
        value = getattr(pb, name)
        if value >= HARD_BOUND:
            return f"{name} {value} is not below 2^63"
    return "a field is not below 2^63"


def meta_from_proto(pb: raft_pb2.SnapshotMeta) -> SnapshotMeta:
    """Snapshot metadata from the wire; DecodeError when a number is at or above 2^63."""
    cs = pb.conf_state
    ids = (*cs.voters, *cs.learners, *cs.voters_outgoing, *cs.learners_next)
    if pb.index >= HARD_BOUND or pb.term >= HARD_BOUND or any(
            i == 0 or i >= HARD_BOUND for i in ids):
        raise DecodeError("snapshot metadata", f"index {pb.index}, term {pb.term} or a member "
                                               "id is out of range (1 .. 2^63-1)")
    return SnapshotMeta(
        index=pb.index,
        term=pb.term,
        conf_state=ConfState(
            voters=frozenset(cs.voters),
            learners=frozenset(cs.learners),
            voters_outgoing=frozenset(cs.voters_outgoing),
            learners_next=frozenset(cs.learners_next),
            auto_leave=cs.auto_leave,
        ),
    )


def encode(msg: Message) -> raft_pb2.RaftMessage:
    """One core message as a wire message (defaults are left unset: they cost no bytes)."""
    pb = raft_pb2.RaftMessage(type=int(msg.type), to=msg.to, term=msg.term)  # type: ignore[arg-type]  # protobuf takes any int; its stubs only the enum class
    setattr(pb, "from", msg.from_)
    if msg.log_term:
        pb.log_term = msg.log_term
    if msg.index:
        pb.index = msg.index
    if msg.entries:
        pb.entries.extend(
            [_PbEntry(term=e.term, index=e.index, kind=e.kind, data=e.data)  # type: ignore[arg-type]  # protobuf takes any int; its stubs only the enum class
             for e in msg.entries]
        )
    if msg.commit:
        pb.commit = msg.commit
    if msg.reject:
        pb.reject = True
    if msg.reject_hint:
        pb.reject_hint = msg.reject_hint
    if msg.conflict_term:
        pb.conflict_term = msg.conflict_term
    if msg.conflict_index:
        pb.conflict_index = msg.conflict_index
    if msg.context:
        pb.context = msg.context
    if msg.snapshot is not None:
        pb.snapshot.CopyFrom(meta_to_proto(msg.snapshot))
    return pb


def decode(pb: raft_pb2.RaftMessage) -> Message:
    """A wire message as a core message; refuses what no peer may send."""
    if pb.type not in _WIRE_NUMBERS:
        raise DecodeError("raft message", f"type {pb.type} is not a peer message type")
    sender = getattr(pb, "from")
    if not sender or not pb.to:
        raise DecodeError("raft message", f"missing node id (from={sender}, to={pb.to})")
    if max(sender, pb.to, pb.term, pb.log_term, pb.index, pb.commit, pb.reject_hint,
           pb.conflict_term, pb.conflict_index) >= HARD_BOUND:
        raise DecodeError("raft message", _out_of_range(pb))
    entries: tuple[Entry, ...] = ()
    if pb.entries:
        kinds = _KINDS
        for e in pb.entries:
            if e.kind not in kinds:
                raise DecodeError("raft entry", f"unknown entry kind {e.kind} at index {e.index}")
            if e.term >= HARD_BOUND or e.index >= HARD_BOUND:
                raise DecodeError("raft entry", f"term {e.term} or index {e.index} is not below "
                                                "2^63")
        entries = tuple([Entry(e.term, e.index, e.kind, e.data) for e in pb.entries])
    return Message(
        type=_TYPE_OF[pb.type],
        to=pb.to,
        from_=sender,
        term=pb.term,
        log_term=pb.log_term,
        index=pb.index,
        entries=entries,
        commit=pb.commit,
        reject=pb.reject,
        reject_hint=pb.reject_hint,
        conflict_term=pb.conflict_term,
        conflict_index=pb.conflict_index,
        context=pb.context,
        snapshot=meta_from_proto(pb.snapshot) if pb.HasField("snapshot") else None,
    )
