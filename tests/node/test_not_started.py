"""A node before start(): its core is not there yet, and reading it says so with a typed error
while the observers that run early (health, metrics, leadership) see "no core"."""

from __future__ import annotations

import pytest

from dengine.errors import Unavailable
from dengine.node.health import kv_serving


def test_core_before_start_is_unavailable_and_observers_see_none(run, cluster_factory):
    async def main():
        c = cluster_factory(1)
        node = c.build(1)
        assert node.core_if_built is None
        with pytest.raises(Unavailable, match="has not started"):
            _ = node.core
        assert node.is_leader is False
        assert node.leader_id is None
        assert kv_serving(node) is False
        assert list(node.metrics.registry.collect())  # the gauges skip the missing core
        await node.start()
        try:
            assert node.core_if_built is node.core
        finally:
            await node.stop()

    run(main)
