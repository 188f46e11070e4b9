"""Testing helpers: hypothesis strategies for convolution and pooling geometries, inputs without max-pool
ties, odd memory layouts, one table of tolerances and assert_close.  The project's own tests use them.

    from hypothesis import given
    from minigrad.testing import conv_geometry, seeds, normal
    import minigrad, minigrad.functional as F

    @given(conv_geometry(), seeds)
    def test_my_conv(geometry, seed):
        x_shape, w_shape, stride, padding = geometry
        x, w = (minigrad.tensor(normal(s, seed + i, np.float64), requires_grad=True)
                for i, s in enumerate((x_shape, w_shape)))
        assert minigrad.gradcheck(lambda x, w: my_conv(x, w, stride, padding), [x, w])

Every comparison of two computations in the project's tests uses a row of TOLERANCES: what is compared
decides how far two correct results may drift apart in each dtype.  The strategies need hypothesis
(pip install hypothesis); the rest does not.
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


# ---- inputs -----------------------------------------------------------------------------------------------

def normal(shape, seed, dtype=np.float64):
    """Standard normal values of `shape`, seeded."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def distinct_values(shape, seed, dtype=np.float64, spacing=0.01):
    """Values with no two equal (gaps of `spacing`, in random order): max-pool windows have no ties, so a
    finite-difference step never changes which element wins."""
    rng = np.random.default_rng(seed)
    count = int(np.prod(shape))
    return ((rng.permutation(count) - count / 2) * spacing).reshape(shape).astype(dtype)


def away_from_zero(shape, seed, dtype=np.float64, margin=0.05):
    """Normal values pushed at least `margin` away from 0 (ReLU's kink: a finite difference never crosses it)."""
    values = np.random.default_rng(seed).standard_normal(shape)
    return (values + np.sign(values) * margin).astype(dtype)


LAYOUTS = ("contiguous", "channels_last", "transposed", "strided", "reversed")


def in_layout(array, layout):
    """The same values in another memory layout: "contiguous" (C order), "channels_last" (a 4-D array's
    channels side by side in memory), "transposed" (the last two axes swapped in memory), "strided" (every
    other element of a larger array), "reversed" (a negative last stride)."""
    a = np.asarray(array)
    if layout == "contiguous":
        return np.ascontiguousarray(a)
    if layout == "channels_last" and a.ndim == 4:
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    if layout == "transposed" and a.ndim >= 2:
        return np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    if layout == "strided" and a.ndim >= 1:
        big = np.zeros(tuple(2 * n for n in a.shape), a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "reversed" and a.ndim >= 1:
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if layout not in LAYOUTS:
        raise ValueError(f"in_layout: layout must be one of {LAYOUTS}, got {layout!r}")
    return a.copy()


# ---- hypothesis strategies: geometries valid by construction ---------------------------------------------

try:
    from hypothesis import strategies as _st
except ImportError:                                   # the strategies below need it; the rest does not
    _st = None


def _strategies():
    if _st is None:
        raise ImportError("minigrad.testing's strategies need hypothesis: pip install hypothesis")
    return _st


def conv_geometry(max_channels=6, max_batch=3, max_size=13, max_kernel=5, max_stride=3, max_padding=2):
    """(x_shape, w_shape, stride, padding) of a valid convolution: kernels that fit the padded input."""
    st = _strategies()

    @st.composite
    def draw_geometry(draw):
        n, c, o = (draw(st.integers(1, m)) for m in (max_batch, max_channels, max_channels))
        kernel = tuple(draw(st.integers(1, max_kernel)) for _ in range(2))
        padding = tuple(draw(st.integers(0, max_padding)) for _ in range(2))
        size = tuple(draw(st.integers(max(1, k - 2 * p), max(max_size, k - 2 * p))) for k, p in zip(kernel, padding))
        stride = tuple(draw(st.integers(1, max_stride)) for _ in range(2))
        return (n, c, *size), (o, c, *kernel), stride, padding
    return draw_geometry()


def pool_geometry(max_channels=6, max_batch=3, max_size=13, max_kernel=5, max_stride=3, ceil_mode=None):
    """(x_shape, kernel, stride, padding, ceil_mode) valid for max and average pooling: padding at most half the
    kernel, a kernel that fits the padded input; ceil_mode drawn unless given."""
    st = _strategies()

    @st.composite
    def draw_geometry(draw):
        n, c = draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels))
        kernel = tuple(draw(st.integers(1, max_kernel)) for _ in range(2))
        padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
        size = tuple(draw(st.integers(max(1, k - 2 * p), max(max_size, k - 2 * p))) for k, p in zip(kernel, padding))
        stride = tuple(draw(st.integers(1, max_stride)) for _ in range(2))
        ceil = draw(st.booleans()) if ceil_mode is None else bool(ceil_mode)
        return (n, c, *size), kernel, stride, padding, ceil
    return draw_geometry()


def layouts():
    """One of LAYOUTS (use with in_layout)."""
    return _strategies().sampled_from(LAYOUTS)


def __getattr__(name):
    if name == "seeds":                               # a strategy, made on first use (hypothesis is optional)
        return _strategies().integers(0, 2**31 - 1)
    raise AttributeError(f"module 'minigrad.testing' has no attribute {name!r}")
