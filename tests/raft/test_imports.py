"""dengine.raft does no I/O: it never imports asyncio, grpc, storage engines, clocks or sockets."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import dengine.raft

FORBIDDEN = {"asyncio", "grpc", "rocksdict", "time", "os", "socket", "threading", "select",
             "selectors", "uvloop", "dengine.v1", "dengine.storage", "dengine.node",
             "dengine.transport", "datetime"}
RAFT_DIR = pathlib.Path(dengine.raft.__file__).parent


def _imports(path: pathlib.Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_raft_modules_never_import_io_modules():
    files = sorted(RAFT_DIR.rglob("*.py"))
    assert len(files) >= 8
    bad = {str(f.relative_to(RAFT_DIR)): sorted(n for n in _imports(f) if _forbidden(n))
           for f in files}
    assert {k: v for k, v in bad.items() if v} == {}


def test_raft_imports_only_errors_kernels_and_itself_from_dengine():
    allowed = ("dengine.raft", "dengine.errors", "dengine._core")
    for f in RAFT_DIR.rglob("*.py"):
        for name in _imports(f):
            if name.startswith("dengine"):
                assert name.startswith(allowed), f"{f.name} imports {name}"


def test_importing_raft_loads_no_io_package():
    # os and time are loaded by the interpreter itself; these are not.
    code = (
        "import sys, dengine.raft, dengine.raft.describe, dengine.testing.raft_network\n"
        "bad = [m for m in ('asyncio', 'grpc', 'rocksdict', 'socket', 'dengine.v1', "
        "'uvloop', 'dengine.storage') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_the_forbidden_check_can_fail(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("import time\nfrom asyncio import sleep\n")
    assert sorted(n for n in _imports(f) if _forbidden(n)) == ["asyncio", "time"]


# -- one-way import graph ------------------------------------------------------------------
def _runtime_raft_imports(path: pathlib.Path) -> set[str]:
    """The dengine.raft modules ``path`` imports when it runs (function-level imports
    included; ``if TYPE_CHECKING:`` blocks, which never run, left out)."""
    tree = ast.parse(path.read_text(), str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["dengine", "raft"] and len(parts) > 2:
                if (RAFT_DIR / f"{parts[2]}.py").exists():
                    found.add(parts[2])
    return found - {path.stem}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (module -> modules it imports), or []."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        state[m] = 2
        stack.pop()
        return []

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return []


def test_raft_modules_import_each_other_one_way():
    graph = {f.stem: _runtime_raft_imports(f) for f in RAFT_DIR.glob("*.py")
             if f.stem != "__init__"}
    assert graph["core"] >= {"_roles", "_leader", "_membership"}
    assert _cycle(graph) == []


def test_the_cycle_check_can_fail(tmp_path):
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []
    f = tmp_path / "x.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                 "    from dengine.raft.core import RaftCore\n"
                 "def g():\n    from dengine.raft import _leader\n")
    assert _runtime_raft_imports(f) == {"_leader"}


def test_the_role_changes_only_in_become_methods():
    places = []
    for f in RAFT_DIR.glob("*.py"):
        tree = ast.parse(f.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for node in ast.walk(fn):
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else [])
                for t in targets:
                    if isinstance(t, ast.Attribute) and t.attr == "role":
                        places.append((f.stem, fn.name))
    assert places
    # RaftCore.__init__ declares the field; after that only become_* changes it.
    assert all(mod == "core" and (name.startswith("become_") or name == "__init__")
               for mod, name in places), places


def test_no_handler_assigns_a_field_of_the_core_or_its_components():
    """Handlers (``_roles``, ``_leader``...) call the core's and its components' methods;
    only ``core.py`` assigns the core's fields."""
    places = []
    for f in RAFT_DIR.glob("*.py"):
        if f.stem == "core":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else [])
            for t in targets:
                base = t
                while isinstance(base, ast.Attribute | ast.Subscript):
                    base = base.value
                if isinstance(base, ast.Name) and base.id == "core" and t is not base:
                    places.append(f"{f.name}:{node.lineno} {ast.unparse(t)}")
    assert places == []


def test_the_handler_modules_assign_no_attribute_at_all():
    """``_roles`` and ``_leader`` change state only by calling methods of the core and its
    components (Progress, Reads, Membership, the log, the outbox)."""
    places = []
    for name in ("_roles.py", "_leader.py"):
        for node in ast.walk(ast.parse((RAFT_DIR / name).read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else [])
            places += [f"{name}:{node.lineno} {ast.unparse(t)}" for t in targets
                       if isinstance(t, ast.Attribute)]
    assert places == []


# -- one owner for each field ----------------------------------------------------------------
TESTING_DIR = RAFT_DIR.parent / "testing"
#: Fields of the core and of its components (log, tracker, progress, reads, membership, outbox).
_COMPONENT_NAMES = {"core", "log", "lg", "tracker", "progress", "pr", "reads", "membership",
                    "out", "outbox"}


def _foreign_assignments(path: pathlib.Path, *, any_object: bool) -> list[str]:
    """Assignments to an attribute of something other than ``self`` (``any_object``), or of
    the core or one of its components reached from outside (``x.core.term = ...``)."""
    places = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else [])
        flat = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
        for t in flat:
            if not isinstance(t, ast.Attribute):
                continue
            base = t.value
            if isinstance(base, ast.Name) and base.id == "self":
                continue  # an object assigning its own field
            if isinstance(base, ast.Name) and base.id == "rd":
                continue  # the Ready being built: an output record, no component
            chain = []
            while isinstance(base, ast.Attribute | ast.Subscript):
                if isinstance(base, ast.Attribute):
                    chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name):
                chain.append(base.id)
            if any_object or _COMPONENT_NAMES & set(chain):
                places.append(f"{path.name}:{node.lineno} {ast.unparse(t)}")
    return places


def test_no_code_outside_a_component_assigns_its_fields():
    """In ``raft/`` only an object assigns its own fields (the core calls its log's and
    tracker's methods, the tracker its Progress's); the simulator, the test network and the
    other testing tools change a core only through its methods."""
    places = []
    for f in sorted(RAFT_DIR.glob("*.py")):
        places += _foreign_assignments(f, any_object=True)
    for f in sorted(TESTING_DIR.glob("*.py")):
        places += _foreign_assignments(f, any_object=False)
    assert places == []


def test_the_field_owner_check_can_fail(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def g(net, core, rd, lg):\n    net.peers[1].core.term = 2\n"
                 "    core.vote, x = 0, 1\n    lg.handed_to = 3\n    rd.entries = []\n"
                 "    net.queue = []\n")
    assert _foreign_assignments(f, any_object=False) == [
        "x.py:2 net.peers[1].core.term", "x.py:3 core.vote", "x.py:4 lg.handed_to"]
    assert _foreign_assignments(f, any_object=True)[-1] == "x.py:6 net.queue"


def test_no_code_outside_the_core_calls_its_private_methods():
    places = []
    for f in sorted([*RAFT_DIR.glob("*.py"), *TESTING_DIR.glob("*.py")]):
        if f.name == "core.py":
            continue
        for n in ast.walk(ast.parse(f.read_text())):
            if (isinstance(n, ast.Attribute) and n.attr.startswith("_")
                    and not n.attr.startswith("__")
                    and ast.unparse(n.value).split(".")[-1] == "core"):
                places.append(f"{f.name}:{n.lineno} {ast.unparse(n)}")
    assert places == []
