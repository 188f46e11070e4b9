"""Every Numba CPU kernel against the NumPy reference, forward and backward, float32 and float64.

Tolerances per dtype: float64 agrees to rounding (1e-12 relative); float32 sums in a
different order than the reference, so 1e-5 relative (scaled by the magnitude of the
values summed).
"""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import kernels
from kernels import reference as ref

from strategies import conv_geometry, distinct_values, pool_geometry, seeds

cpu = pytest.importorskip("kernels.cpu", reason="numba is not installed")

TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
dtypes = st.sampled_from([np.float32, np.float64])


def close(actual, expected, dtype, scale=1.0):
    tol = TOLERANCE[dtype]
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * scale)


def normal(shape, seed, dtype):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@settings(max_examples=60)
@given(conv_geometry(max_channels=64), st.booleans(), st.booleans(), dtypes, seeds)
@example(((1, 1, 1, 1), (3, 1, 1, 1), (1, 1), (0, 0)), True, True, np.float32, 0)       # a 1-pixel image
@example(((2, 64, 7, 7), (16, 64, 1, 1), (1, 1), (0, 0)), True, True, np.float64, 1)    # the 1x1 GEMM-only path
def test_conv2d(geometry, with_bias, need_input_grad, dtype, seed):
    x_shape, w_shape, stride, padding = geometry
    x, w = normal(x_shape, seed, dtype), normal(w_shape, seed + 1, dtype)
    b = normal(w_shape[0], seed + 2, dtype) if with_bias else None
    y = cpu.conv2d_forward(x, w, b, stride, padding)
    scale = np.sqrt(np.prod(w_shape[1:]))          # float32 error grows with the length of each dot product
    close(y, ref.conv2d_forward(x, w, b, stride, padding), dtype, scale)
    g = normal(y.shape, seed + 3, dtype)
    got = cpu.conv2d_backward(x, w, g, stride, padding, need_input_grad)
    want = ref.conv2d_backward(x, w, g, stride, padding, need_input_grad)
    if need_input_grad:
        close(got[0], want[0], dtype, scale)
    else:
        assert got[0] is None
    close(got[1], want[1], dtype, np.sqrt(y.size))
    close(got[2], want[2], dtype, np.sqrt(y.size))


pool_examples = [((2, 3, 7, 7), (3, 3), (1, 1), (1, 1), False),      # GoogLeNet's branch pool: overlapping, stride 1
                 ((2, 3, 9, 9), (3, 3), (2, 2), (0, 0), True),       # stage pool: overlapping, stride 2, ceil mode
                 ((1, 2, 8, 6), (3, 3), (2, 2), (1, 1), True),       # ceil mode with padding
                 ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0), False),      # a 1-pixel image
                 ((1, 2, 1, 1), (3, 3), (2, 2), (1, 1), True)]       # 1 pixel, padded


def with_pool_examples(*other_arguments):
    """Always test the geometries above too, besides the drawn ones."""
    def decorate(test):
        for geometry in pool_examples:
            test = example(geometry, *other_arguments)(test)
        return test
    return decorate


@settings(max_examples=60)
@given(pool_geometry(max_channels=64), dtypes, seeds)
@with_pool_examples(np.float32, 0)
def test_max_pool2d(geometry, dtype, seed):
    x_shape, kernel, stride, padding, ceil_mode = geometry
    x = distinct_values(x_shape, seed, dtype, spacing=1.0)
    y, argmax = cpu.max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    y_ref, argmax_ref = ref.max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    g = normal(y.shape, seed, dtype)
    close(cpu.max_pool2d_backward(g, argmax, x_shape), ref.max_pool2d_backward(g, argmax_ref, x_shape), dtype)


@settings(max_examples=30)
@given(pool_geometry(), st.sampled_from([-np.inf, np.nan, 0.0]), seeds)
@with_pool_examples(-np.inf, 0)
def test_max_pool2d_ties_infinities_and_nan_pick_the_same_real_pixel(geometry, special, seed):
    """Ties: the first maximum wins.  All-(-inf) or NaN windows: never a padding cell (which would be
    an out-of-bounds index for the backward kernel)."""
    x_shape, kernel, stride, padding, ceil_mode = geometry
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, x_shape).astype(np.float64)
    x[rng.random(x_shape) < 0.3] = special
    y, argmax = cpu.max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    y_ref, argmax_ref = ref.max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    assert argmax.min() >= 0 and argmax.max() < x_shape[2] * x_shape[3]


@settings(max_examples=60)
@given(pool_geometry(max_channels=64), st.booleans(), dtypes, seeds)
@with_pool_examples(True, np.float32, 0)
def test_avg_pool2d(geometry, count_include_pad, dtype, seed):
    x_shape, kernel, stride, padding, ceil_mode = geometry
    x = normal(x_shape, seed, dtype)
    args = kernel, stride, padding, ceil_mode, count_include_pad
    y = cpu.avg_pool2d_forward(x, *args)
    close(y, ref.avg_pool2d_forward(x, *args), dtype)
    g = normal(y.shape, seed + 1, dtype)
    close(cpu.avg_pool2d_backward(g, x_shape, *args), ref.avg_pool2d_backward(g, x_shape, *args), dtype)


shapes = st.tuples(st.integers(1, 3), st.integers(1, 64), st.integers(1, 13), st.integers(1, 13))


@settings(max_examples=30)
@given(shapes, dtypes, seeds)
def test_relu(shape, dtype, seed):
    x = normal(shape, seed, dtype)
    x.flat[::7] = 0.0                                # exact zeros: no gradient, as in the reference
    y = cpu.relu_forward(x)
    np.testing.assert_array_equal(y, ref.relu_forward(x))
    g = normal(shape, seed + 1, dtype)
    np.testing.assert_array_equal(cpu.relu_backward(g, y), ref.relu_backward(g, y))


@settings(max_examples=40)
@given(shapes, st.integers(1, 7), st.floats(1e-4, 1.0), st.sampled_from([0.75, 0.5, 1.3]), st.floats(0.5, 2.0),
       dtypes, seeds)
def test_lrn(shape, size, alpha, beta, k, dtype, seed):
    x = normal(shape, seed, dtype) * 3
    y, scale = cpu.lrn_forward(x, size, alpha, beta, k)
    y_ref, scale_ref = ref.lrn_forward(x, size, alpha, beta, k)
    close(y, y_ref, dtype)
    close(scale, scale_ref, dtype, 10)
    g = normal(shape, seed + 1, dtype)
    close(cpu.lrn_backward(x, y, scale, g, size, alpha, beta, k),
          ref.lrn_backward(x, y_ref, scale_ref, g, size, alpha, beta, k), dtype, 10)


@settings(max_examples=30)
@given(st.lists(st.integers(1, 64), min_size=1, max_size=5), st.integers(1, 3), st.integers(1, 9), dtypes, seeds)
def test_concat_and_split(channel_counts, batch, side, dtype, seed):
    parts = [normal((batch, c, side, side + 1), seed + i, dtype) for i, c in enumerate(channel_counts)]
    merged = cpu.concat(parts, 1)
    np.testing.assert_array_equal(merged, ref.concat(parts, 1))
    for got, want in zip(cpu.split(merged, channel_counts, 1), parts):
        np.testing.assert_array_equal(got, want)
        assert got.flags.c_contiguous


def test_non_contiguous_inputs_give_the_same_results():
    x = normal((2, 4, 9, 9), 0, np.float32)[:, ::-1, ::2, 1:]        # negative and non-unit strides
    w = normal((4, 3, 3, 3), 1, np.float32).transpose(0, 1, 3, 2)[:, :, ::-1]
    view = x[:, :3]
    close(cpu.conv2d_forward(view, w, None, (1, 1), (1, 1)), ref.conv2d_forward(view, w, None, (1, 1), (1, 1)),
          np.float32, 6)
    np.testing.assert_array_equal(cpu.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1), True)[0],
                                  ref.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1), True)[0])
    np.testing.assert_array_equal(cpu.relu_forward(x), ref.relu_forward(x))


def test_dispatch_follows_minigrad_kernels(monkeypatch):
    monkeypatch.setenv("MINIGRAD_KERNELS", "reference")
    assert kernels.for_array(np.zeros(1)) is ref
    monkeypatch.setenv("MINIGRAD_KERNELS", "numba")
    assert kernels.for_array(np.zeros(1)) is cpu
    monkeypatch.setenv("MINIGRAD_KERNELS", "fortran")
    with pytest.raises(ValueError, match="MINIGRAD_KERNELS='fortran': expected one of"):
        kernels.for_array(np.zeros(1))


def test_every_backend_has_every_kernel():
    for name in kernels.KERNEL_FUNCTIONS:
        assert callable(getattr(cpu, name)) and callable(getattr(ref, name)), name
