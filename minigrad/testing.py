"""Testing helpers: one table of tolerances, and assert_close.

    from minigrad.testing import assert_close
    assert_close(mine, expected, "library")          # e.g. against PyTorch, in the arrays' dtype

Every comparison of two computations in the project's tests uses a row of TOLERANCES: what is compared
decides how far two correct results may drift apart in each dtype.
"""

from __future__ import annotations

import numpy as np

from .autograd import Tensor
from .backend import to_numpy

# (rtol, atol) by what is compared and the dtype.  atol is for values of magnitude about 1; callers scale it
# by the magnitude that a result's rounding error grows with (the length of its sums, its largest value).
TOLERANCES = {
    # a fast kernel against the NumPy reference: the same arithmetic, its sums in another order
    "kernel": {np.float32: (1e-5, 1e-5), np.float64: (1e-12, 1e-12)},
    # a whole op through the engine on two paths (Numba, the CUDA emulation, a GPU) against the reference path
    "path": {np.float32: (1e-4, 1e-4), np.float64: (1e-9, 1e-9)},
    # another library's op (PyTorch, onnxruntime) on the same inputs: other algorithms, other roundings
    "library": {np.float32: (2e-4, 2e-5), np.float64: (1e-9, 1e-11)},
}


def tolerance(kind, dtype):
    """(rtol, atol) of TOLERANCES for comparing results of `dtype` of this kind."""
    if kind not in TOLERANCES:
        raise ValueError(f"tolerance: kind must be one of {sorted(TOLERANCES)}, got {kind!r}")
    table = TOLERANCES[kind]
    if np.dtype(dtype).kind in "iub":
        return 0.0, 0.0                          # integers and booleans: exactly equal
    dtype = np.dtype(dtype).type
    if dtype not in table:
        raise TypeError(f"tolerance: no tolerance for dtype {np.dtype(dtype)}; expected float32 or float64 "
                        "(integers and booleans compare exactly)")
    return table[dtype]


def assert_close(actual, expected, kind="kernel", scale=1.0, dtype=None, err_msg=""):
    """Raise AssertionError unless |actual - expected| <= atol * scale + rtol * |expected| elementwise, with
    (rtol, atol) the row of TOLERANCES for `kind` and the arrays' dtype (or `dtype`).  Shapes must match;
    so must dtypes, unless dtype is given.  Tensors and CuPy arrays are compared on the host."""
    actual, expected = _host(actual), _host(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"assert_close: shapes differ: {actual.shape} and {expected.shape} {err_msg}".rstrip())
    if dtype is None and actual.dtype != expected.dtype:
        raise AssertionError(f"assert_close: dtypes differ: {actual.dtype} and {expected.dtype} {err_msg}".rstrip())
    rtol, atol = tolerance(kind, dtype or actual.dtype)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=err_msg)


def _host(a):
    return to_numpy(a.data if isinstance(a, Tensor) else a)
