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
