"""A member's NOSPACE alarm through the log, so the whole cluster refuses writes (as etcd).

Theory of operation. Each member measures its own disk (:mod:`dengine.node.quota`) and keeps
its *local* alarm. After every measurement :meth:`ClusterAlarm.sync` makes the replicated alarm
table (:mod:`dengine.statemachine.alarms`) agree with it: a member whose local alarm is raised
but not in the table proposes an ALARM activate entry for its id; one whose local alarm was
disarmed proposes the deactivation. The leader proposes it itself; a follower asks the leader
(``Cluster.AlarmUpdate``, the way etcd's followers forward their alarm proposals), and tries
again at the next measurement if that failed. Writes are refused on the leader while its local
alarm or any alarm in the table is raised, so one member over its quota stops writes
everywhere; reads and deletes go on.

The leader clears the alarm of a member removed from the cluster. Durable: the table is in
the state machine, so after a restart the alarm is still raised and
the member takes its local alarm back from the table (:meth:`restore`); only ``dengine alarm
disarm`` clears it (each member measures, clears its local alarm if under its quota and then
proposes the deactivation). A member still over its quota keeps its alarm.
"""

from __future__ import annotations

from typing import Any

from dengine.errors import InvalidArgument, Unavailable
from dengine.statemachine.alarms import encode_alarm

__all__ = ["ClusterAlarm", "NoAlarms"]


class NoAlarms:
    """The table of a state machine that keeps none (a user machine): nothing is raised."""

    raised = False

    def active(self) -> dict[int, str]:
        return {}


class ClusterAlarm:
    """Keeps the replicated alarm table in step with this member's local alarm."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.table = getattr(node.state_machine, "alarms", None) or NoAlarms()
        self._last_error = ""

    def restore(self) -> None:
        """At start: an alarm the log holds for this member is raised here again."""
        if self.node.node_id in self.table.active():
            self.node.quota.raise_alarm(restored=True)

    async def sync(self) -> None:
        """Propose what makes the table agree with the local alarm, if they differ; the
        leader also clears the alarms of members no longer in the cluster (nobody else
        could, and they would stop writes for ever)."""
        node = self.node
        local = node.quota.alarm
        gone = []
        if node.is_leader and self.table.raised:
            members = {m[0] for m in node.members()}
            gone = [m for m in self.table.active() if m not in members]
        if local == (node.node_id in self.table.active()) and not gone:
            return
        try:
            for m in gone:
                node.logger.warning("clearing the alarm of a member no longer in the cluster",
                                 member=m)
                await self.update(m, False)
            if local != (node.node_id in self.table.active()):
                await self.update(node.node_id, local)
            self._last_error = ""
        except Exception as e:  # noqa: BLE001 - tried again at the next measurement
            msg = f"{type(e).__name__}: {e}"
            if msg != self._last_error:  # once per distinct failure, not every second
                self.node.logger.warning("cannot record the alarm in the log yet; retrying",
                                      activate=local, error=msg)
                self._last_error = msg

    async def update(self, member_id: int, activate: bool, used_bytes: int | None = None,
                     quota_bytes: int | None = None) -> None:
        """Raise or clear ``member_id``'s alarm through the log (via the leader); the usage
        is this node's unless given."""
        node = self.node
        used = node.quota.used_bytes if used_bytes is None else used_bytes
        quota = node.quota.quota_bytes if quota_bytes is None else quota_bytes
        cmd = encode_alarm(activate, member_id, used_bytes=used, quota_bytes=quota)
        if node.is_leader:
            await node.propose(cmd)
            return
        leader = node.address_of(node.leader_id)
        if not leader:
            raise Unavailable("no leader known to record the alarm")
        from dengine.node.serve import _channel
        from dengine.transport.status import from_proto
        from dengine.v1 import client_pb2, client_pb2_grpc

        req = client_pb2.AlarmUpdateRequest(member_id=member_id, activate=activate,
                                            used_bytes=used, quota_bytes=quota)
        async with _channel(node, leader) as ch:
            resp = await client_pb2_grpc.ClusterStub(ch).AlarmUpdate(req, timeout=5)
        err = from_proto(resp.error) if resp.HasField("error") else None
        if err is not None:
            raise err

    def caller_refusal(self, context: Any, member_id: int) -> str | None:
        """Why the caller of ``Cluster.AlarmUpdate`` may not record ``member_id``'s alarm, or
        None. With TLS it must present that member's certificate; with auth on and no TLS no
        caller can prove it is a member, so none may (a forged alarm would stop all writes).
        With neither, any client may write anyway."""
        cfg = self.node.config
        if cfg.tls.enabled:
            from dengine.security.tls import peer_identity, peer_san

            caller = peer_identity(context)
            if caller != peer_san(member_id):
                return (f"only member {member_id} records its own alarm (its certificate "
                        f"{peer_san(member_id)}, not {caller or 'none'})")
            return None
        auth = getattr(cfg, "auth", None)
        if auth is not None and auth.enabled:
            return "with auth on, alarms are recorded only between members speaking TLS"
        return None

    async def handle_request(self, req: Any) -> None:
        """``Cluster.AlarmUpdate`` on the leader: propose it (a follower answers NotLeader)."""
        if not self.node.is_leader:
            raise self.node.not_leader()
        if req.member_id == 0:
            raise InvalidArgument("an alarm belongs to a member: member_id 0 given")
        await self.update(req.member_id, req.activate, req.used_bytes, req.quota_bytes)
