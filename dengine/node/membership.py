"""Membership and leadership, as the node handles them: changes, addresses, peer links.

A :class:`NodeMembership` owns what a node knows about its cluster beyond the core: whether
this node's removal committed, and the event that wakes whoever waits for a leader. A change is
proposed through the core (which allows one pending change at a time, so a second waits for the
first to commit, and refuses what would break the quorum) and its caller's future resolves when
the entry is applied. Addresses ride in the change's context: every node learns them when the
entry reaches its log (before it commits, as the config itself takes effect then) and keeps
them in its member book; the transport's peers follow the config in force.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from dengine.errors import (
    ConfChangeError,
    DengineError,
    InvalidArgument,
    NotLeader,
    OperationTimeout,
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

__all__ = ["NodeMembership", "is_member", "check_member_id", "settle"]

CONF = int(EntryKind.CONF_CHANGE)
#: A learner further behind the commit index than this is not promoted yet.
PROMOTE_MAX_LAG_ENTRIES = 1000
#: What a proposal's future holds when the core refused it for a change still pending.
_PENDING = object()


class NodeMembership:
    """Owns a node's membership and leadership state; see the module docstring.

    ``submit`` runs a closure on the drive loop; ``track`` registers a proposed entry's
    future (by index and term) to be answered when it applies; ``spawn_detached`` starts a
    task that ``stop()`` does not wait for.
    """

    def __init__(self, node: Node, logger: Any, *,
                 submit: Callable[[Callable[[], None]], None],
                 track: Callable[[int, int, asyncio.Future], None],
                 spawn_detached: Callable[[Coroutine[Any, Any, Any]], asyncio.Task]) -> None:
        self._node = node
        self._logger = logger
        self._submit = submit
        self._track = track
        self._spawn_detached = spawn_detached
        #: This node's removal from the cluster committed: it stops.
        self.removed = False
        #: Set whenever the role, term or leader changes (waiters clear it and wait again).
        self._leader_changed = asyncio.Event()

    def leader_changed(self) -> None:
        """The core reported a new role, term or leader: wake those waiting for one."""
        self._leader_changed.set()

    # -- changes ----------------------------------------------------------------------------
    async def conf_change(self, cc: ConfChange) -> None:
        """Propose ``cc`` and return once it applies. The core allows one pending change at a
        time; a change asked while another is pending (two operators at once, or a retry that
        reaches a new leader before its first commit) waits for that one, then goes ahead."""
        node = self._node
        node.check_accepting()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * node.config.raft.election_ms / 1000
        while True:
            await self.settled(deadline)
            fut = loop.create_future()

            def op(fut: asyncio.Future = fut) -> None:
                core = node.core
                try:
                    index = core.propose_conf_change(cc)
                except NotLeader:
                    settle(fut, error=node.not_leader())
                except ConfChangeError as e:
                    if core.membership.pending_index > core.commit_index:
                        settle(fut, _PENDING)  # another slipped in since settled(): wait
                    else:
                        settle(fut, error=e)
                except ProposalDropped as e:
                    settle(fut, error=e)
                else:
                    self._track(index, core.term, fut)
                    self._logger.info("membership change proposed", index=index,
                                      changes=[(c.type.name, c.node_id) for c in cc.changes])

            self._submit(op)
            if await fut is not _PENDING:
                return

    async def add_learner(self, node_id: int, address: str) -> None:
        """Add a new node as a learner (it replicates but does not vote)."""
        node = self._node
        check_member_id(node_id)
        host, _, port = (address or "").rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidArgument(f"address {address!r} is not host:port (port 1..65535)")
        cs = node.core.conf_state
        if node_id in cs.learners and node.book.addresses.get(node_id) == address:
            await self.settled()  # already done (a retried join): success once committed
            return
        if node_id in cs.voters | cs.voters_outgoing:
            raise ConfChangeError(f"node {node_id} is already a voter; remove it first to "
                                  "re-add it as a learner")
        cc = ConfChange((ConfChangeSingle(ConfChangeType.ADD_LEARNER, node_id),),
                        context=encode_addresses({node_id: address}))
        await self.conf_change(cc)

    async def promote(self, node_id: int) -> None:
        """Make a learner a voter, once it has caught up (a voter far behind would weaken
        the quorum: it could not help commit until it caught up)."""
        node = self._node
        check_member_id(node_id)
        if node_id not in node.core.conf_state.learners:
            if node_id in node.core.conf_state.voters:
                await self.settled()  # a retried promotion that was applied
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
        await self.conf_change(ConfChange((ConfChangeSingle(ConfChangeType.ADD_VOTER,
                                                            node_id),)))

    async def remove_member(self, node_id: int) -> None:
        """Remove a voter or learner from the cluster. A leader asked to remove itself hands
        leadership over first and answers NOT_LEADER naming the new leader, which proposes the
        removal when the client retries there (see :meth:`hand_over_before_removal`)."""
        node = self._node
        check_member_id(node_id)
        cs = node.core.conf_state
        if not is_member(node_id, cs):
            if node_id in node.book.addresses:  # it was a member: a retried removal that applied
                await self.settled()
                return
            raise ConfChangeError(f"node {node_id} is not a member")
        if node_id == node.node_id and node.is_leader:
            await self.hand_over_before_removal()
        await self.conf_change(ConfChange((ConfChangeSingle(ConfChangeType.REMOVE_NODE,
                                                            node_id),)))

    async def hand_over_before_removal(self) -> None:
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

        node = self._node
        target = successor(node)
        if target is None:
            return
        try:
            await node.transfer_leader(target)
        except (DengineError, TimeoutError) as e:
            self._logger.warning("leadership transfer before removing this node failed; the "
                                 "removal goes ahead here", to=target, error=str(e))
            if not node.is_leader:
                raise node.not_leader() from e
            return
        self._logger.info("leadership handed over before removing this node", to=target)
        raise node.not_leader()

    async def settled(self, deadline: float | None = None) -> None:
        """Return once the config in force is committed, on the leader: a retried change that
        already took effect then answers success exactly as the first attempt would have, and
        a new change may be proposed. Raises ProposalDropped (retryable) past ``deadline``."""
        node = self._node
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + 3 * node.config.raft.election_ms / 1000
        while True:
            if not node.is_leader:
                raise node.not_leader()
            if node.core.commit_index >= node.core.membership.pending_index:
                return
            if loop.time() > deadline:
                raise ProposalDropped("the membership change in force has not committed yet; "
                                      "retry")
            await asyncio.sleep(node.config.raft.tick_ms / 1000)

    # -- leadership -------------------------------------------------------------------------
    async def transfer_leader(self, target: int, timeout_s: float | None = None) -> None:
        """Hand leadership to ``target``; returns once it leads (or raises on timeout)."""
        node = self._node
        node.check_accepting()
        check_member_id(target)
        if target == node.leader_id:
            return
        if target not in node.core.conf_state.voters:
            raise InvalidArgument(f"node {target} is not a voter")
        fut = asyncio.get_running_loop().create_future()

        def op() -> None:
            try:
                node.core.transfer_leader(target)
                settle(fut)
            except NotLeader:
                settle(fut, error=node.not_leader())
            except ValueError as e:
                settle(fut, error=InvalidArgument(str(e)))

        self._submit(op)
        await fut
        limit = timeout_s or 3 * node.config.raft.election_ms / 1000
        try:
            async with asyncio.timeout(limit):
                while node.leader_id != target:
                    self._leader_changed.clear()
                    await self._leader_changed.wait()
        except TimeoutError:
            raise OperationTimeout(f"leadership transfer to node {target}", limit) from None

    async def wait_for_leader(self, timeout_s: float | None = None) -> int:
        """The leader's id once one is known (after start, an election takes a timeout)."""
        node = self._node
        limit = timeout_s or 5 * node.config.raft.election_ms / 1000
        try:
            async with asyncio.timeout(limit):
                while not node.leader_id:
                    self._leader_changed.clear()
                    await self._leader_changed.wait()
        except TimeoutError:
            raise OperationTimeout("waiting for a leader to be elected", limit) from None
        return node.leader_id

    # -- what the node knows of its members -------------------------------------------------
    def members(self) -> list[tuple[int, str, bool]]:
        """(id, address, is_voter) of every member of the config in force."""
        node = self._node
        cs = node.core.conf_state
        voters = cs.voters | cs.voters_outgoing
        out = [(i, node.address_of(i) or "", True) for i in sorted(voters)]
        out += [(i, node.address_of(i) or "", False)
                for i in sorted((cs.learners | cs.learners_next) - voters)]
        return out

    def learn_members(self, members: Iterable[tuple[int, str]]) -> None:
        """Addresses learned outside the log (a join answer): remember them, connect."""
        node = self._node
        found = {i: a for i, a in members if a}
        node.book.learn(found)
        for node_id, addr in found.items():
            if node_id != node.node_id:
                node.transport.set_peer(node_id, addr)

    def learn_from_entries(self, entries: list[Entry]) -> None:
        for e in entries:
            if e.kind == CONF:
                try:
                    cc = decode_conf_change(e.data)
                except DengineError:
                    continue
                self._node.book.learn(decode_addresses(cc.context))

    def on_conf_committed(self, e: Entry) -> None:
        node = self._node
        try:
            cc = decode_conf_change(e.data)
        except DengineError:
            return
        after = node.core.conf_state_at(e.index)
        self._logger.info(
            "membership change committed", index=e.index,
            changes=[(c.type.name, c.node_id) for c in cc.changes] or "leave joint",
            voters=sorted(after.voters), learners=sorted(after.learners))
        me = node.node_id
        if not is_member(me, after) and is_member(me, node.core.conf_state_at(e.index - 1)) \
                and not self._member_at_commit():
            self.on_removed(e.index)

    def _member_at_commit(self) -> bool:
        """True when the committed config holds this node: a member removed and added back
        later (a node rejoining under its old id replays both) is not removed."""
        node = self._node
        core = node.core_if_built
        if core is None:
            return False
        try:
            return is_member(node.node_id, core.conf_state_at(core.commit_index))
        except Exception:  # noqa: BLE001 - unsure (the index is compacted, say): say no
            return False

    def removal_committed(self, peer: int) -> bool:
        """True when ``peer`` was a member and the committed config no longer holds it: a
        removal that can never be undone, so the peer may safely be told to stop."""
        node = self._node
        core = node.core_if_built
        if core is None or peer not in node.book.addresses:
            return False
        try:
            return not is_member(peer, core.conf_state_at(core.commit_index))
        except Exception:  # noqa: BLE001 - unsure (the index is compacted, say): say no
            return False

    def on_removed(self, index: int | None) -> None:
        """This node's removal committed: it stops (no more campaigns, nothing for peers to
        dial) once its last answers and the commit index had a moment to reach the others."""
        node = self._node
        if self.removed:
            return
        self.removed = True
        self._logger.info("this node was removed from the cluster; it stops now", index=index,
                          learned_from="the log" if index else "a peer that committed it")

        async def stop_soon() -> None:
            await asyncio.sleep(2 * node.config.raft.heartbeat_ms / 1000)
            if index is not None and self._member_at_commit():  # added back since: caught up
                self.removed = False
                self._logger.info("this node was added back to the cluster; it goes on")
                return
            await node.stop("removed from the cluster")

        self._spawn_detached(stop_soon())

    def sync_peers(self, cs: ConfState) -> None:
        """Make the transport's peers the members of ``cs`` (the config in force)."""
        node = self._node
        members = cs.voters | cs.learners | cs.voters_outgoing | cs.learners_next
        t = node.transport
        for node_id in members:
            addr = node.book.addresses.get(node_id)
            if node_id != node.node_id and addr:
                t.set_peer(node_id, addr)
        for node_id in list(t.peers):
            if node_id not in members:
                t.remove_peer(node_id)
        t.accept_unknown_senders = node.node_id not in members


def is_member(node_id: int, cs: ConfState) -> bool:
    return node_id in (cs.voters | cs.learners | cs.voters_outgoing | cs.learners_next)


def check_member_id(node_id: int) -> None:
    if not isinstance(node_id, int) or not 0 < node_id < 1 << 63:
        raise InvalidArgument(f"node id {node_id!r} is not a positive integer")


def settle(fut: asyncio.Future, result: object = None, error: BaseException | None = None) -> None:
    """Resolve ``fut`` unless its caller already gave up on it (cancelled, timed out)."""
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
