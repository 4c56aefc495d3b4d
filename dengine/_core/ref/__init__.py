"""Pure-Python references of the compiled kernels: same API, written to be obviously right.

They are deliberately independent of the Cython code (simpler algorithms, Python containers) so
that the property tests comparing the two catch a mistake in either. Set DENGINE_PURE_PYTHON=1 to
run dengine on them, for debugging.
"""
