"""The hot paths of dengine, compiled with Cython, and the switch to their references.

Each kernel (``log_index``, ``quorum``, ``batch``, ``codec``, ``text``) is a compiled module in this
package with a pure-Python twin in :mod:`dengine._core.ref` that has the same API. The rest of
dengine imports the kernels from here and gets the compiled ones. Setting the environment
variable ``DENGINE_PURE_PYTHON=1`` selects the references instead, for debugging; without it a
compiled module that fails to import is a loud :class:`~dengine.errors.KernelUnavailable`, never a
silent slow path.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from dengine.errors import KernelUnavailable

KERNELS = ("log_index", "quorum", "batch", "codec", "text")
PURE_PYTHON_ENV = "DENGINE_PURE_PYTHON"

#: True when the references were asked for through the environment.
PURE_PYTHON = os.environ.get(PURE_PYTHON_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def load(name: str, compiled: bool) -> ModuleType:
    """Import one kernel: the compiled module, or its pure-Python reference."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; the kernels are {', '.join(KERNELS)}")
    if not compiled:
        return importlib.import_module(f"dengine._core.ref.{name}")
    try:
        module = importlib.import_module(f"dengine._core.{name}")
    except ImportError as e:
        raise KernelUnavailable(f"dengine._core.{name}", str(e)) from e
    if not is_compiled_module(module):
        raise KernelUnavailable(f"dengine._core.{name}", "the module found is not compiled")
    return module


def is_compiled_module(module: ModuleType) -> bool:
    """True when ``module`` was loaded from a compiled extension, not from Python source."""
    origin = getattr(module, "__file__", "") or ""
    return origin.endswith((".so", ".pyd"))


log_index = load("log_index", compiled=not PURE_PYTHON)
quorum = load("quorum", compiled=not PURE_PYTHON)
batch = load("batch", compiled=not PURE_PYTHON)
codec = load("codec", compiled=not PURE_PYTHON)
text = load("text", compiled=not PURE_PYTHON)

#: True when the compiled kernels are in use.
COMPILED = not PURE_PYTHON

LogIndex = log_index.LogIndex
BatchBuffer = batch.BatchBuffer

__all__ = [
    "COMPILED",
    "KERNELS",
    "PURE_PYTHON",
    "PURE_PYTHON_ENV",
    "BatchBuffer",
    "LogIndex",
    "batch",
    "codec",
    "is_compiled_module",
    "load",
    "log_index",
    "quorum",
    "text",
]
