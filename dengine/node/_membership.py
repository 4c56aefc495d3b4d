"""Membership, as the node handles it: proposing changes, learning addresses, peer links.

Functions over a :class:`~dengine.node.node.Node` (its private half). A change is proposed
through the core (which allows one pending change at a time and refuses what would break the
quorum) and its caller's future resolves when the entry is applied. Addresses ride in the
change's context: every node learns them when the entry reaches its log (before it commits, as
the config itself takes effect then) and keeps them in its member book; the transport's peers
follow the config in force.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from dengine.errors import (
    ConfChangeError,
    DengineError,
    InvalidArgument,
    NotLeader,
    ProposalDropped,
)
from dengine.node.members import decode_addresses, encode_addresses
from dengine.raft.confchange import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    decode_conf_change,
)
from dengine.raft.types import ConfState, Entry, EntryKind

if TYPE_CHECKING:
    from dengine.node.node import Node

CONF = int(EntryKind.CONF_CHANGE)
#: A learner further behind the commit index than this is not promoted yet.
PROMOTE_MAX_LAG_ENTRIES = 1000


async def conf_change(node: Node, cc: ConfChange) -> None:
    node._check_accepting()
    fut = asyncio.get_running_loop().create_future()

    def op() -> None:
        from dengine.node.node import settle

        try:
            index = node.core.propose_conf_change(cc)
        except NotLeader:
            settle(fut, error=node.not_leader())
        except (ConfChangeError, ProposalDropped) as e:
            settle(fut, error=e)
        else:
            node._pending[index] = (node.core.term, fut)
            node.log.info("membership change proposed", index=index,
                          changes=[(c.type.name, c.node_id) for c in cc.changes])

    node._submit(op)
    await fut


async def add_learner(node: Node, node_id: int, address: str) -> None:
    """Add a new node as a learner (it replicates but does not vote)."""
    check_member_id(node_id)
    host, _, port = (address or "").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"address {address!r} is not host:port (port 1..65535)")
    cs = node.core.conf_state
    if node_id in cs.learners and node.book.addresses.get(node_id) == address:
        await settled(node)  # already done (a retried join): success once it is committed
        return
    if node_id in cs.voters | cs.voters_outgoing:
        raise ConfChangeError(f"node {node_id} is already a voter; remove it first to "
                              "re-add it as a learner")
    cc = ConfChange((ConfChangeSingle(ConfChangeType.ADD_LEARNER, node_id),),
                    context=encode_addresses({node_id: address}))
    await conf_change(node, cc)


async def promote(node: Node, node_id: int) -> None:
    """Make a learner a voter, once it has caught up (a voter far behind would weaken
    the quorum: it could not help commit until it caught up)."""
    check_member_id(node_id)
    if node_id not in node.core.conf_state.learners:
        if node_id in node.core.conf_state.voters:
            await settled(node)  # a retried promotion that was applied
            return
        raise ConfChangeError(f"node {node_id} is not a learner; add it as a learner first")
    if node.is_leader:
        pr = node.core.tracker.progress.get(node_id)
        match = pr.match_index if pr is not None else 0
        slack = max(PROMOTE_MAX_LAG_ENTRIES, node.config.raft.compaction_tail_entries)
        if match == 0 or match + slack < node.core.commit_index:
            raise ConfChangeError(
                f"learner {node_id} is still catching up (it holds up to index {match}, "
                f"the commit index is {node.core.commit_index}); retry once it has")
    await conf_change(node, ConfChange((ConfChangeSingle(ConfChangeType.ADD_VOTER, node_id),)))


async def remove_member(node: Node, node_id: int) -> None:
    """Remove a voter or learner from the cluster. A leader asked to remove itself hands
    leadership over first and answers NOT_LEADER naming the new leader, which proposes the
    removal when the client retries there (see :func:`hand_over_before_removal`)."""
    check_member_id(node_id)
    cs = node.core.conf_state
    if not is_member(node_id, cs):
        if node_id in node.book.addresses:  # it was a member: a retried removal that applied
            await settled(node)
            return
        raise ConfChangeError(f"node {node_id} is not a member")
    if node_id == node.node_id and node.is_leader:
        await hand_over_before_removal(node)
    await conf_change(node, ConfChange((ConfChangeSingle(ConfChangeType.REMOVE_NODE,
                                                         node_id),)))


async def hand_over_before_removal(node: Node) -> None:
    """Transfer leadership to the most caught-up voter, then raise NotLeader (nothing was
    proposed; the client follows the hint and the new leader removes this node as it would
    any follower).

    Why not propose the removal here, commit it and step down (Raft thesis 4.2.2)? That works,
    but the step-down leaves the cluster with no leader for an election timeout, the entries
    this leader still has in flight lose their answers, and for the time the change is
    pending a leader commits without counting itself, a path taken by no other change. A
    transfer first keeps the cluster led throughout. When no voter takes over in time (none
    caught up, a partition), the removal goes ahead here as before: safe, only slower.
    """
    from dengine.node.drain import successor

    target = successor(node)
    if target is None:
        return
    try:
        await node.transfer_leader(target)
    except (DengineError, TimeoutError) as e:
        node.log.warning("leadership transfer before removing this node failed; the removal "
                         "goes ahead here", to=target, error=str(e))
        if not node.is_leader:
            raise node.not_leader() from e
        return
    node.log.info("leadership handed over before removing this node", to=target)
    raise node.not_leader()


def is_member(node_id: int, cs: ConfState) -> bool:
    return node_id in (cs.voters | cs.learners | cs.voters_outgoing | cs.learners_next)


async def settled(node: Node) -> None:
    """Return once the config in force is committed, on the leader: a retried change that
    already took effect then answers success exactly as the first attempt would have."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3 * node.config.raft.election_ms / 1000
    while True:
        if not node.is_leader:
            raise node.not_leader()
        if node.core.commit_index >= node.core.membership.pending_index:
            return
        if loop.time() > deadline:
            raise ProposalDropped("the membership change in force has not committed yet; retry")
        await asyncio.sleep(node.config.raft.tick_ms / 1000)


def learn_from_entries(node: Node, entries: list[Entry]) -> None:
    for e in entries:
        if e.kind == CONF:
            try:
                cc = decode_conf_change(e.data)
            except DengineError:
                continue
            node.book.learn(decode_addresses(cc.context))


def on_conf_committed(node: Node, e: Entry) -> None:
    try:
        cc = decode_conf_change(e.data)
    except DengineError:
        return
    after = node.core.conf_state_at(e.index)
    node.log.info(
        "membership change committed", index=e.index,
        changes=[(c.type.name, c.node_id) for c in cc.changes] or "leave joint",
        voters=sorted(after.voters), learners=sorted(after.learners))
    me = node.node_id
    if not is_member(me, after) and is_member(me, node.core.conf_state_at(e.index - 1)):
        on_removed(node, e.index)


def removal_committed(node: Node, peer: int) -> bool:
    """True when ``peer`` was a member and the committed config no longer holds it: a
    removal that can never be undone, so the peer may safely be told to stop."""
    core = node.core_if_built
    if core is None or peer not in node.book.addresses:
        return False
    try:
        return not is_member(peer, core.conf_state_at(core.commit_index))
    except Exception:  # noqa: BLE001 - unsure (the index is compacted, say): say no
        return False


def on_removed(node: Node, index: int | None) -> None:
    """This node's removal committed: it stops (no more campaigns, nothing for peers to
    dial) once its last answers and the commit index had a moment to reach the others."""
    if node.removed:
        return
    node.removed = True
    node.log.info("this node was removed from the cluster; it stops now", index=index,
                  learned_from="the log" if index else "a peer that committed it")

    async def stop_soon() -> None:
        await asyncio.sleep(2 * node.config.raft.heartbeat_ms / 1000)
        await node.stop("removed from the cluster")

    node._spawn_detached(stop_soon())


def sync_peers(node: Node, cs: ConfState) -> None:
    members = cs.voters | cs.learners | cs.voters_outgoing | cs.learners_next
    t = node.transport
    for node_id in members:
        addr = node.book.addresses.get(node_id)
        if node_id != node.node_id and addr:
            t.set_peer(node_id, addr)
    for node_id in list(getattr(t, "peers", {})):
        if node_id not in members:
            t.remove_peer(node_id)
    if hasattr(t, "accept_unknown_senders"):
        t.accept_unknown_senders = node.node_id not in members


def check_member_id(node_id: int) -> None:
    if not isinstance(node_id, int) or not 0 < node_id < 1 << 63:
        raise InvalidArgument(f"node id {node_id!r} is not a positive integer")
