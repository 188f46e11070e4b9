"""Benchmarks of minigrad: run `python -m benchmarks`."""

import kernels  # noqa: E402,F401  (before NumPy: see kernels/__init__.py on thread pools)
