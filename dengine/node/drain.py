"""Graceful stop (SIGTERM): hand over, stop taking requests, answer what is in flight, stop.

Theory of operation. A leader first transfers leadership to its most caught-up voter, so new
writes meet NOT_LEADER (not applied; the client follows the hint) instead of a dead node, and
the entries it already proposed still commit under the new leader and are applied here. Then
the node stops taking requests (UNAVAILABLE, not applied: it answers before proposing
anything) and waits, up to ``network.drain_timeout_ms`` in all, for every proposal and read in
flight to be answered. Whatever is still open at the deadline is answered by :meth:`Node.stop`
with UNAVAILABLE stating that its outcome is unknown (retry only with its session).
"""

from __future__ import annotations

import asyncio
from typing import Any

from dengine.errors import DengineError

__all__ = ["drain", "successor"]


def successor(node: Any) -> int | None:
    """The voter to hand leadership to: the most caught-up one other than this node."""
    core = node.core
    voters = [v for v in core.conf_state.voters if v != node.node_id]
    progress = core.tracker.progress
    ranked = sorted(voters, key=lambda v: getattr(progress.get(v), "match_index", 0), reverse=True)
    return ranked[0] if ranked else None


def _in_flight(node: Any) -> int:
    return len(node.proposals) + len(node.reads)


async def drain(node: Any, timeout_s: float) -> None:
    """Run the graceful part of a stop within ``timeout_s``; :meth:`Node.stop` comes after."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    if node.running and node.is_leader:
        target = successor(node)
        if target is not None:
            try:
                await node.transfer_leader(target, timeout_s=max(0.1, timeout_s / 2))
                node.logger.info("leadership handed over before stopping", to=target)
            except (DengineError, TimeoutError) as e:
                node.logger.warning("leadership transfer before stopping failed", to=target,
                                 error=str(e))
    node.accepting = False
    node.logger.info("draining: no new requests", in_flight=_in_flight(node))
    while node.running and _in_flight(node) and loop.time() < deadline:
        await asyncio.sleep(0.01)
    left = _in_flight(node)
    if left:
        node.logger.warning("drain deadline passed; failing what is left", in_flight=left)
    else:
        node.logger.info("drained: every request in flight was answered")
