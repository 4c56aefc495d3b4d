"""The session table's size, kept results per client and lifetime come from the node's
config."""

from __future__ import annotations


def test_the_session_table_size_comes_from_config(tmp_path):
    from dengine.config import build_config
    from dengine.node.builder import NodeBuilder

    cfg = build_config({
        "cluster": {"cluster_id": "t", "node_id": 1, "initial_members": {1: "127.0.0.1:1"},
                    "data_dir": str(tmp_path / "d")},
        "statemachine": {"max_sessions": 7, "session_results": 3,
                         "session_lifetime_entries": 50},
    })
    node = NodeBuilder(cfg).serve_clients(False).build()
    try:
        t = node.state_machine.sessions
        assert (t.max_sessions, t.session_results, t.lifetime_entries) == (7, 3, 50)
    finally:
        node.log_store.close()
        node.state_machine.close()
