"""Sphinx configuration: the guides and the API reference built from the docstrings.

Build (warnings are errors): ``sphinx-build -W --keep-going -b html docs docs/_build/html``
after ``python setup.py build_ext --inplace`` (autodoc imports the package, compiled kernels and
generated stubs included).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dengine._version import __version__  # noqa: E402

project = "dengine"
author = "dengine contributors"
copyright = "dengine contributors"  # noqa: A001
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_preserve_defaults = True
napoleon_google_docstring = False
napoleon_numpy_docstring = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = f"dengine {version}"
