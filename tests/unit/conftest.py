"""Fixtures for the kernel tests: every kernel runs as its reference and as compiled code.

``flavour`` parametrizes a test over ``["reference", "compiled"]``; each kernel test module
turns it into an ``impl`` fixture with :func:`dengine._core.load`. Loading the compiled flavour
raises (KernelUnavailable) when the extension is missing, so a missing build fails the tests
instead of silently testing the reference twice.
"""

from __future__ import annotations

import pytest

FLAVOURS = ("reference", "compiled")


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    """``"reference"`` or ``"compiled"``: which implementation of a kernel a test runs on."""
    return request.param
