"""Prometheus metrics of one node, in the node's own registry.

Theory of operation
-------------------
Each :class:`NodeMetrics` owns a ``CollectorRegistry``: several nodes in one process (tests,
embedded clusters) never share a series, and nothing is registered globally. The state a
scrape wants to see at that moment (term, role, leader, commit and applied index, last log
index) is read from the node when Prometheus asks, by a collector, so it costs the drive loop
nothing. Events are counted where they happen, with labelled children looked up once and kept
in dicts, so a hot-path increment is one dict lookup and one lock.

Latency histograms are observed once per batch, not per entry: proposal-to-commit is the time
from a proposal batch entering the core to the Ready that hands its last entry out as
committed; commit-to-apply is the time the state machine took to apply a Ready's committed
entries. ``serve(port)`` exposes ``/metrics`` over HTTP in a daemon thread.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

__all__ = ["NodeMetrics", "LATENCY_BUCKETS", "SIZE_BUCKETS"]

LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
                   2.0, 5.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
ROLES = ("follower", "pre_candidate", "candidate", "leader", "learner")


class _StateCollector:
    """Reads the node's state at scrape time (no cost between scrapes)."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def describe(self) -> list:
        return []

    def collect(self) -> Any:
        node = self.node
        core = getattr(node, "core_if_built", None)
        nid = str(node.node_id)
        if core is None:
            return
        gauges = [
            ("dengine_term", "current Raft term", core.term),
            ("dengine_leader_id", "id of the leader this node knows (0: none)",
             core.leader_id or 0),
            ("dengine_commit_index", "highest log index known committed", core.commit_index),
            ("dengine_applied_index", "highest log index applied to the state machine",
             node.state_machine.applied_index()),
            ("dengine_last_log_index", "last index in the local log",
             node.log_store.last_index()),
            ("dengine_pending_proposals", "proposals waiting for their entry to apply",
             node.proposals.pending_count),
        ]
        for name, doc, value in gauges:
            g = GaugeMetricFamily(name, doc, labels=["node_id"])
            g.add_metric([nid], float(value))
            yield g
        role = GaugeMetricFamily("dengine_role", "1 for the role this node plays now",
                                 labels=["node_id", "role"])
        current = int(core.role)
        for i, r in enumerate(ROLES):
            role.add_metric([nid, r], 1.0 if i == current else 0.0)
        yield role


class NodeMetrics:
    """The metrics of one node; ``registry`` is this node's alone."""

    def __init__(self, node_id: int, registry: CollectorRegistry | None = None) -> None:
        self.node_id = node_id
        r = self.registry = registry or CollectorRegistry(auto_describe=False)
        self.proposals = Counter("dengine_proposals", "proposals by outcome (proposed, "
                                 "committed, dropped, not_leader)", ["outcome"], registry=r)
        self._proposed = self.proposals.labels("proposed")
        self._committed = self.proposals.labels("committed")
        self.proposal_batch = Histogram("dengine_proposal_batch_entries",
                                        "proposals per batch handed to the core",
                                        buckets=SIZE_BUCKETS, registry=r)
        self.propose_commit = Histogram("dengine_proposal_commit_seconds",
                                        "proposal batch into the core -> its last entry "
                                        "committed (leader)", buckets=LATENCY_BUCKETS,
                                        registry=r)
        self.commit_apply = Histogram("dengine_commit_apply_seconds",
                                      "time to apply one Ready's committed entries",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.fsync = Histogram("dengine_fsync_seconds", "log store sync latency",
                               buckets=LATENCY_BUCKETS, registry=r)
        self.persist_batch = Histogram("dengine_persist_batch_entries",
                                       "log entries written per persisted batch (one sync)",
                                       buckets=SIZE_BUCKETS, registry=r)
        self.sent = Counter("dengine_messages_sent", "Raft messages sent", ["type", "peer"],
                            registry=r)
        self.received = Counter("dengine_messages_received", "Raft messages received",
                                ["type", "peer"], registry=r)
        self.read_index_requests = Counter("dengine_read_index_requests",
                                           "linearizable and lease reads asked of the core",
                                           registry=r)
        self.read_index_rounds = Counter("dengine_read_index_rounds",
                                         "Readys that released a batch of reads", registry=r)
        self.snapshots_sent = Counter("dengine_snapshots_sent", "snapshot transfers started",
                                      registry=r)
        self.snapshots_received = Counter("dengine_snapshots_received",
                                          "snapshot files received", registry=r)
        self.leader_changes = Counter("dengine_leader_changes",
                                      "times this node saw a new leader", registry=r)
        self.elections = Counter("dengine_elections", "elections this node started",
                                 registry=r)
        self.client_requests = Counter("dengine_client_requests",
                                       "client requests by method and status",
                                       ["method", "status"], registry=r)
        self._sent: dict[tuple[int, int], Any] = {}
        self._recv: dict[tuple[int, int], Any] = {}
        self._requests: dict[tuple[str, int], Any] = {}
        self._inflight: deque[tuple[int, int, float]] = deque()
        self._leader = 0
        self._election_term = 0
        self._server: Any = None

    # -- wiring ------------------------------------------------------------------------------
    def watch(self, node: Any) -> None:
        """Expose ``node``'s state (term, role, indexes) at scrape time."""
        self.registry.register(_StateCollector(node))

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``addr:port`` (0: a free port) in a daemon thread."""
        from prometheus_client import start_http_server

        self._server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return self._server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def text(self) -> str:
        """The exposition text, as a scrape would see it."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()

    # -- events --------------------------------------------------------------------------------
    def on_proposed(self, last_index: int, count: int) -> None:
        self._proposed.inc(count)
        self.proposal_batch.observe(count)
        self._inflight.append((last_index, count, time.perf_counter()))

    def on_proposals_failed(self, outcome: str, count: int) -> None:
        self.proposals.labels(outcome).inc(count)

    def on_committed(self, last_index: int) -> None:
        """Entries up to ``last_index`` were handed out committed (leader's proposals)."""
        q = self._inflight
        if not q or q[0][0] > last_index:
            return
        now = time.perf_counter()
        n = 0
        while q and q[0][0] <= last_index:
            _, count, t0 = q.popleft()
            n += count
            self.propose_commit.observe(now - t0)
        self._committed.inc(n)

    def on_role(self, role: int, leader_id: int, term: int = 0) -> None:
        # A candidate or a new leader campaigned in this term (one Ready may skip candidate).
        if role in (2, 3) and term > self._election_term:  # Role.CANDIDATE, Role.LEADER
            self._election_term = term
            self.elections.inc()
        if role != 3:
            self._inflight.clear()
        if leader_id and leader_id != self._leader:
            self.leader_changes.inc()
        self._leader = leader_id or self._leader

    def on_sent(self, messages: Any) -> None:
        cache = self._sent
        for m in messages:
            k = (m.type, m.to)
            c = cache.get(k)
            if c is None:
                c = cache[k] = self.sent.labels(_type_name(m.type), str(m.to))
            c.inc()

    def on_received(self, m: Any) -> None:
        k = (m.type, m.from_)
        c = self._recv.get(k)
        if c is None:
            c = self._recv[k] = self.received.labels(_type_name(m.type), str(m.from_))
        c.inc()

    def on_client_request(self, method: str, response: Any) -> None:
        code = response.error.code if response.HasField("error") else 0
        k = (method, code)
        c = self._requests.get(k)
        if c is None:
            c = self._requests[k] = self.client_requests.labels(method, _code_name(code))
        c.inc()


def _type_name(t: Any) -> str:
    return getattr(t, "name", str(t)).lower()


def _code_name(code: int) -> str:
    try:
        from dengine.v1 import client_pb2

        return client_pb2.ErrorCode.Name(code)
    except (ImportError, ValueError):
        return str(code)
