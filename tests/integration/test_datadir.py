"""A data directory belongs to one cluster and one node: a node started on another's refuses to
start, exits non-zero and says why."""

from __future__ import annotations


def test_a_node_on_another_clusters_data_dir_refuses_to_start(cluster_factory, run):
    alpha = cluster_factory(1, cluster_id="alpha")

    async def bootstrap():
        async with alpha.client() as c:
            await alpha.wait_leader(c)
            await c.put(b"alpha", b"data")

    run(bootstrap)
    alpha.kill_all()
    alpha_dir = str(alpha.root / "node-1" / "data")

    beta = cluster_factory(1, cluster_id="beta", start=False)
    node = beta.nodes[1]
    node.start("--cluster.data-dir", alpha_dir)
    code = node.wait_exit(30)
    out = node.log_tail(80)
    assert code != 0, out
    assert "alpha" in out and "beta" in out, out
    assert "Traceback" not in out, out

    # the same cluster but another node id: refused too
    other = cluster_factory(2, cluster_id="alpha", start=False)
    node2 = other.nodes[2]
    node2.start("--cluster.data-dir", alpha_dir)
    code = node2.wait_exit(30)
    out = node2.log_tail(80)
    assert code != 0, out
    assert "node" in out.lower() and "Traceback" not in out, out

    # and the rightful owner still starts on it, data intact
    alpha.nodes[1].start()

    async def check():
        async with alpha.client() as c:
            await alpha.wait_leader(c)
            assert (await c.get(b"alpha")).value == b"data"

    run(check)
