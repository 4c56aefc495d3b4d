"""dengine._core uses the compiled kernels unless DENGINE_PURE_PYTHON asks for the references."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import dengine._core as core
from dengine.errors import KernelUnavailable

PROBE = (
    "import json, dengine._core as c; "
    "print(json.dumps({'compiled': c.COMPILED, "
    "'modules': {n: c.is_compiled_module(getattr(c, n)) for n in c.KERNELS}, "
    "'log_index': type(c.LogIndex()).__module__, 'batch': c.BatchBuffer.__module__}))"
)


def probe(**env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k != core.PURE_PYTHON_ENV}
    full.update(env)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(core.__file__))))
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [root, full.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=full, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_compiled_modules_are_used_by_default():
    got = probe()
    assert got["compiled"] is True
    assert got["modules"] == {name: True for name in core.KERNELS}
    assert got["log_index"] == "dengine._core.log_index"
    assert got["batch"] == "dengine._core.batch"


def test_pure_python_switch_selects_the_references():
    got = probe(DENGINE_PURE_PYTHON="1")
    assert got["compiled"] is False
    assert got["modules"] == {name: False for name in core.KERNELS}
    assert got["log_index"] == "dengine._core.ref.log_index"


@pytest.mark.parametrize("name", core.KERNELS)
def test_each_kernel_loads_in_both_flavours(name, flavour):
    module = core.load(name, compiled=flavour == "compiled")
    assert core.is_compiled_module(module) == (flavour == "compiled")
    assert module.__name__.endswith(("ref." if flavour == "reference" else "_core.") + name)


@pytest.mark.parametrize("name", core.KERNELS)
def test_compiled_and_reference_expose_the_same_public_names(name):
    def public(module):
        return {n for n in vars(module) if not n.startswith("_") and n not in IGNORED}

    IGNORED = {"annotations", "Sequence", "Mapping", "struct", "zlib", "deque"}
    ref, fast = core.load(name, compiled=False), core.load(name, compiled=True)
    ref_names = {n for n in public(ref) if not isinstance(getattr(ref, n), type(json))}
    missing = {n for n in ref_names if not hasattr(fast, n)}
    assert not missing, f"compiled {name} lacks {sorted(missing)}"


def test_unknown_kernel_is_refused():
    with pytest.raises(ValueError):
        core.load("nope", compiled=True)
    assert issubclass(KernelUnavailable, ImportError)
