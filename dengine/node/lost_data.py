"""A member that lost its disk: detected, refused with what to do, never a busy loop.

Theory of operation. A voter whose data directory is wiped and that restarts under the same id
comes up with an empty log (a fresh bootstrap) and no vote record. Raft assumes neither can
happen: healing it in place by sending it a snapshot would let it vote a second time in a term
it already voted in, and two leaders could be elected in that term. So, as etcd does, such a
node is *refused*, not healed: it stops, says so, and must come back as a new member
(``dengine member remove <id>``, empty its directory, start it with ``--join``).

How it is known for sure. A leader's heartbeat carries ``min(match_index, commit)`` for that
follower, and the follower acknowledged ``match_index`` only after its log held it durably.
Entries a follower acknowledged to the current leader are never truncated (they match the
leader's log). So a heartbeat of the current leader whose commit index is past the end of the
follower's log proves the log lost acknowledged entries; no reordering of messages can fake it.
The follower then stops with :class:`~dengine.errors.DataLost` and leaves a ``LOST-DATA``
marker in its data directory, so that a restart refuses at once (the marker goes with the
directory when the operator empties it).

The leader's side. The core probes such a follower at most once per heartbeat (a rejection
that cannot move its next index no longer triggers an immediate new probe: that was a loop of
tens of thousands of rejected appends a second). The leader logs once per follower and term
that the follower rejected entries it had acknowledged, with the same advice. A log store that
is not durable (``memory``) loses everything on restart by design and is not checked.

What is left open. If the cluster changed leader since the wipe, the new leader does not know
what the node had acknowledged (its match index starts at 0): it catches the node up like any
new follower, as etcd's would. And before the first heartbeat a wiped voter could grant a vote:
a freshly bootstrapped node holds term 1, so for an election timeout after it starts it refuses
vote requests (the restart guard of leader stickiness, with ``raft.check_quorum`` on), and a
live leader's first heartbeat stops it well within that time. Only a cluster that has had no
leader for longer than an election timeout after the restart could collect a second vote from
it in a term it had voted in before the wipe.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dengine.errors import DataLost
from dengine.raft.messages import Message, MessageType
from dengine.raft.ready import Role

if TYPE_CHECKING:
    from dengine.node.node import Node

__all__ = ["MARKER_FILE", "WATCHED", "LostDataWatch", "check_marker"]

MARKER_FILE = "LOST-DATA"
WATCHED = frozenset({MessageType.HEARTBEAT, MessageType.APPEND_RESP})


def check_marker(data_dir: str) -> None:
    """Refuse to start a node that found, before, that it lost its data."""
    path = os.path.join(data_dir, MARKER_FILE)
    try:
        with open(path) as f:
            node_id, acknowledged, held = (int(x) for x in f.read().split())
    except FileNotFoundError:
        return
    except ValueError:
        node_id, acknowledged, held = 0, 0, 0
    raise DataLost(node_id, acknowledged, held)


class LostDataWatch:
    """Watches the messages that reveal lost data; owns the (peer, term) pairs warned of, so
    a leader warns once per follower and term."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._warned: set[tuple[int, int]] = set()

    def after_step(self, msg: Message) -> None:
        """Called by the drive loop after the core took a HEARTBEAT or an APPEND_RESP."""
        node = self._node
        core = node.core
        if msg.term != core.term:
            return
        if msg.type == MessageType.HEARTBEAT:
            if msg.commit > core.log.last_index and core.leader_id == msg.from_ \
                    and getattr(node.log_store, "durable", True):
                _refuse(node, msg.commit, core.log.last_index)
            return
        if msg.reject and core.role == Role.LEADER:
            pr = core.tracker.progress.get(msg.from_)
            if pr is not None and msg.reject_hint < pr.match_index \
                    and msg.index <= pr.match_index:
                if (msg.from_, core.term) in self._warned:
                    return
                self._warned.add((msg.from_, core.term))
                node.logger.warning(
                    "a follower rejected entries it had acknowledged: its data was probably "
                    "lost (wiped data directory); it will refuse to serve. To bring it back run "
                    f"`dengine member remove {msg.from_}`, empty its data directory and start "
                    "it with --join", peer=msg.from_, acknowledged=pr.match_index,
                    its_last_index=msg.reject_hint)


def _refuse(node: Node, acknowledged: int, held: int) -> None:
    err = DataLost(node.node_id, acknowledged, held)
    node.logger.critical(str(err), acknowledged=acknowledged, last_index=held)
    data_dir = node.config.cluster.data_dir
    try:
        os.makedirs(data_dir, exist_ok=True)
        with open(os.path.join(data_dir, MARKER_FILE), "w") as f:
            f.write(f"{node.node_id} {acknowledged} {held}\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        node.logger.error("cannot write the lost-data marker", error=repr(e))
    raise err
