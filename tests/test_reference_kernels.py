"""The NumPy reference kernels against definitions written as plain loops, and im2col/col2im adjointness."""

import numpy as np
from hypothesis import given, settings

from kernels import reference as ref
from kernels.geometry import pool_out_size
from minigrad.explain import direct_conv2d
from minigrad.testing import conv_geometry, distinct_values, pool_geometry, seeds

from conftest import examples


def direct_max_pool2d(x, kernel, stride, padding, ceil_mode):
    n, c, h, w = x.shape
    oh = pool_out_size(h, kernel[0], stride[0], padding[0], ceil_mode)
    ow = pool_out_size(w, kernel[1], stride[1], padding[1], ceil_mode)
    y = np.full((n, c, oh, ow), -np.inf)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * stride[0] - padding[0], j * stride[1] - padding[1]
            rows = slice(max(r0, 0), min(r0 + kernel[0], h))
            cols = slice(max(c0, 0), min(c0 + kernel[1], w))
            y[:, :, i, j] = x[:, :, rows, cols].max(axis=(2, 3))
    return y


@settings(max_examples=examples(40))
@given(conv_geometry(), seeds)
def test_conv2d_forward_matches_the_direct_definition(geometry, seed):
    x_shape, w_shape, stride, padding = geometry
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    np.testing.assert_allclose(ref.conv2d_forward(x, w, b, stride, padding), direct_conv2d(x, w, stride, padding, b),
                               rtol=1e-10, atol=1e-10)


@settings(max_examples=examples(40))
@given(pool_geometry(), seeds)
def test_max_pool2d_forward_matches_the_direct_definition(geometry, seed):
    x_shape, kernel, stride, padding, ceil_mode = geometry
    x = distinct_values(x_shape, seed)
    y, argmax = ref.max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    np.testing.assert_array_equal(y, direct_max_pool2d(x, kernel, stride, padding, ceil_mode))
    flat = x.reshape(x_shape[0], x_shape[1], -1)
    np.testing.assert_array_equal(np.take_along_axis(flat, argmax.reshape(*x_shape[:2], -1), 2).reshape(y.shape), y)


@settings(max_examples=examples(40))
@given(pool_geometry(), seeds)
def test_col2im_is_the_adjoint_of_im2col(geometry, seed):
    """<im2col(x), c> == <x, col2im(c)> for all x, c: col2im is exactly im2col's transpose."""
    x_shape, kernel, stride, padding, ceil_mode = geometry
    out = tuple(pool_out_size(x_shape[2 + d], kernel[d], stride[d], padding[d], ceil_mode) for d in range(2))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    cols = rng.standard_normal((*x_shape[:2], *kernel, *out))
    lhs = (ref.im2col(x, kernel, stride, padding, out) * cols).sum()
    rhs = (x * ref.col2im(cols, x_shape, stride, padding)).sum()
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10)


def test_split_inverts_concat():
    parts = [np.full((2, c, 3, 3), c, np.float32) for c in (1, 4, 2)]
    merged = ref.concat(parts, 1)
    assert merged.shape == (2, 7, 3, 3)
    for a, b in zip(ref.split(merged, [1, 4, 2], 1), parts):
        np.testing.assert_array_equal(a, b)
