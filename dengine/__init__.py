"""dengine: a strongly consistent Raft consensus engine for Python.

The protocol is a sans-IO core (:mod:`dengine.raft`) with its hot paths compiled by Cython
(:mod:`dengine._core`), driven by an asyncio node that speaks gRPC.
"""

from dengine._version import __version__
from dengine.errors import DengineError

__all__ = ["__version__", "DengineError", "core_info"]


def core_info() -> str:
    """One line saying whether the compiled kernels or the pure-Python references are in use."""
    from dengine import _core

    if _core.COMPILED:
        return "compiled core (Cython kernels: " + ", ".join(_core.KERNELS) + ")"
    return f"pure-Python reference core ({_core.PURE_PYTHON_ENV}=1); slow, for debugging only"
