"""Which array library holds the data: NumPy on the CPU, CuPy (optional) on the GPU."""

from __future__ import annotations

import numpy as np

try:                                   # CuPy is optional: minigrad imports without it
    import cupy
except Exception:                      # ImportError, or a CUDA library that fails to load
    cupy = None


def array_module(a):
    """numpy or cupy, whichever owns `a` (the one line every op uses to pick its library)."""
    return cupy.get_array_module(a) if cupy is not None else np


def device_of(a) -> str:
    return "cpu" if isinstance(a, np.ndarray | np.generic) else "cuda"
