"""asv benchmarks of dengine: each parametrized over implementations and sizes, so that one
run yields ratios (compiled vs reference, and so on). No test ever asserts a timing.

asv drops PYTHONPATH from the benchmark processes (it honours ASV_PYTHONPATH instead). When
dengine is not installed in the environment, as with ``asv run --python=same`` on a source
checkout, the checkout that holds this suite is put on sys.path: its in-place build
(``python setup.py build_ext --inplace``) is what gets measured.
"""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("dengine") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
