"""The node's parts own their state: none reaches into the Node's private fields."""

from __future__ import annotations

import ast
import pathlib

import dengine.node
from dengine.node.node import Node

NODE_DIR = pathlib.Path(dengine.node.__file__).parent
#: How the parts name the node they belong to.
NODE_NAMES = {"node", "self.node", "self._node"}


def _private_uses(path: pathlib.Path) -> list[str]:
    found = []
    for n in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(n, ast.Attribute) and n.attr.startswith("_")
                and not n.attr.startswith("__") and ast.unparse(n.value) in NODE_NAMES):
            found.append(f"{path.name}:{n.lineno} {ast.unparse(n)}")
    return found


def test_no_part_of_the_node_uses_its_private_fields():
    places = []
    for f in sorted(NODE_DIR.glob("*.py")):
        if f.name != "node.py":
            places += _private_uses(f)
    assert places == []


def test_the_private_use_check_can_fail(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def g(node):\n    node._pending[1] = 2\n    return node.core, node.__class__\n")
    assert _private_uses(f) == ["x.py:2 node._pending"]


def test_the_node_keeps_references_to_the_owners_of_its_state():
    """Snapshot, read, membership, proposal and log-write state live in their own objects."""
    init = ast.parse((NODE_DIR / "node.py").read_text())
    fields = {t.attr for n in ast.walk(init) if isinstance(n, ast.Assign | ast.AnnAssign)
              for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
              if isinstance(t, ast.Attribute) and ast.unparse(t.value) == "self"}
    assert {"snapshot_worker", "reads", "membership", "proposals", "writer"} <= fields
    gone = {"_incoming", "_snap_waiters", "_transfers", "_snap_index", "_snapshotting",
            "_snap_policy", "_pending", "_reads", "_batch", "_deferred_hs", "_leader_event"}
    assert fields & gone == set()
    assert "log" not in fields and "logger" in fields  # the Raft log is the core's
    typed = {ast.unparse(n.target): ast.unparse(n.annotation) for n in ast.walk(init)
             if isinstance(n, ast.AnnAssign)}
    assert typed["self.transport"] == "Transport"
    assert Node.__init__.__annotations__["transport_factory"] == "Callable[[Node], Transport]"
