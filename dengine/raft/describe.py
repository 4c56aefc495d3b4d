"""Short canonical text for messages, Readies and logs: readable traces and seed reports.

The forms are stable (tests compare them) and compact: one line per message, entries as
``index@term``, runs of entries of one term folded to ``first..last@term``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from dengine.raft.messages import Message, MessageType
from dengine.raft.ready import Ready
from dengine.raft.types import Entry, HardState

if TYPE_CHECKING:
    from dengine.raft.core import RaftCore

__all__ = [
    "describe_core",
    "describe_entries",
    "describe_hard_state",
    "describe_log",
    "describe_message",
    "describe_ready",
]

MT = MessageType


def describe_entries(entries: Sequence[Entry]) -> str:
    """``[1..3@1 4@2]``: runs of consecutive indexes of one term folded together."""
    parts: list[str] = []
    run_start: Entry | None = None
    prev: Entry | None = None
    for e in entries:
        if run_start is not None and prev is not None and (
            e.term != run_start.term or e.index != prev.index + 1
        ):
            parts.append(_run(run_start, prev))
            run_start = None
        if run_start is None:
            run_start = e
        prev = e
    if run_start is not None and prev is not None:
        parts.append(_run(run_start, prev))
    return "[" + " ".join(parts) + "]"


def _run(first: Entry, last: Entry) -> str:
    if first.index == last.index:
        return f"{first.index}@{first.term}"
    return f"{first.index}..{last.index}@{first.term}"


def describe_message(m: Message) -> str:
    """``APPEND 1->2 t3 i5@2 c4 [6..8@3]``, showing only the fields the type uses."""
    head = f"{m.type.name} {m.from_}->{m.to} t{m.term}"
    t = m.type
    if t == MT.APPEND:
        return f"{head} i{m.index}@{m.log_term} c{m.commit} {describe_entries(m.entries)}"
    if t == MT.APPEND_RESP:
        if m.reject:
            return (f"{head} reject i{m.index} hint{m.conflict_index}@{m.conflict_term} "
                    f"last{m.reject_hint}")
        return f"{head} i{m.index}"
    if t in (MT.VOTE, MT.PRE_VOTE):
        extra = " transfer" if m.context else ""
        return f"{head} last{m.index}@{m.log_term}{extra}"
    if t in (MT.VOTE_RESP, MT.PRE_VOTE_RESP, MT.SNAPSHOT_STATUS):
        return f"{head} {'reject' if m.reject else 'grant'}"
    if t == MT.HEARTBEAT:
        return f"{head} c{m.commit} r{m.index}"
    if t == MT.HEARTBEAT_RESP:
        return f"{head} r{m.index}"
    if t in (MT.READ_INDEX, MT.READ_INDEX_RESP):
        tail = " reject" if m.reject else ""
        return f"{head} ctx={m.context!r} i{m.index}{tail}"
    if t == MT.TRANSFER_LEADER:
        return f"{head} target{m.index}"
    if t == MT.SNAPSHOT and m.snapshot is not None:
        return f"{head} snap{m.snapshot.index}@{m.snapshot.term}"
    return head


def describe_hard_state(hs: HardState) -> str:
    return f"t{hs.term} v{hs.vote} c{hs.commit}"


def describe_ready(rd: Ready) -> str:
    """Multi-line: one header line, then one indented line per message."""
    head = [f"ready#{rd.number}"]
    if rd.soft_state is not None:
        ss = rd.soft_state
        head.append(f"{ss.role.name.lower()} lead{ss.leader_id}")
    if rd.hard_state is not None:
        head.append(f"hs({describe_hard_state(rd.hard_state)})")
    if rd.entries:
        head.append(f"persist{describe_entries(rd.entries)}")
    if rd.committed_entries:
        head.append(f"apply{describe_entries(rd.committed_entries)}")
    if rd.snapshot is not None:
        head.append(f"install{rd.snapshot.index}@{rd.snapshot.term}")
    if rd.compact_to:
        head.append(f"compact{rd.compact_to}")
    if rd.conf_state is not None:
        cs = rd.conf_state
        conf = "voters" + ",".join(map(str, sorted(cs.voters)))
        if cs.voters_outgoing:
            conf += "&" + ",".join(map(str, sorted(cs.voters_outgoing)))
        if cs.learners:
            conf += " learners" + ",".join(map(str, sorted(cs.learners)))
        head.append(f"conf({conf})")
    if rd.read_states:
        head.append("reads[" + " ".join(
            f"{rs.context!r}@{'fail' if rs.failed else rs.index}" for rs in rd.read_states
        ) + "]")
    lines = [" ".join(head)]
    lines += _msg_lines("send", rd.messages)
    lines += _msg_lines("after", rd.persisted_messages)
    lines += [f"  drop {describe_message(d.message)}: {d.reason}" for d in rd.dropped]
    return "\n".join(lines)


def _msg_lines(label: str, msgs: Iterable[Message]) -> list[str]:
    return [f"  {label} {describe_message(m)}" for m in msgs]


def describe_log(entries: Sequence[Entry], commit: int = 0, applied: int = 0) -> str:
    """``[1..3@1 4@2] c3 a2``."""
    return f"{describe_entries(entries)} c{commit} a{applied}"


def describe_core(core: RaftCore) -> str:
    """One line of a core's positions: what a node logs when an invariant breaks."""
    lg = core.log
    return (f"node {core.id} {core.role.name.lower()} t{core.term} v{core.vote} "
            f"lead{core.leader_id} first{lg.first_index} applied{lg.applied} "
            f"commit{lg.committed} persisted{lg.persisted_index} handed{lg.handed_to} "
            f"last{lg.last_index}@{lg.last_term}")
