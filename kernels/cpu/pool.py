"""Pooling on the CPU: one pass over each window, no im2col.

Every task owns one (image, channel) plane, in forward and in backward, so the
backward's scatter-add never races.  Windows are clipped to the input: padding
is never read, never picked by max, and receives no gradient.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..geometry import avg_pool_divisor, pool_out_size
from ._jit import contiguous, kernel


@kernel(inline=True)
def _clipped_window(index, stride, pad, kernel_size, size):
    """[start, stop) of the input rows (or columns) under window `index`: the padding is cut off,
    since it is never read, never picked by max and receives no gradient."""
    start = index * stride - pad
    return max(start, 0), min(start + kernel_size, size)


@kernel(inline=True)
def _has_nan(plane):
    count = 0
    for r in range(plane.shape[0]):
        for col in range(plane.shape[1]):
            count += plane[r, col] != plane[r, col]      # a sum, not a branch: it vectorises
    return count > 0


@kernel(inline=True)
def _window_max_nan(plane, r0, r1, c0, c1):
    """(max, flat index) of plane[r0:r1, c0:c1] for a plane holding a NaN: strictly greater,
    so the first maximum wins, and the first NaN wins as in NumPy's argmax.  (The NaN test
    stops the compare becoming a branch-free select, so this is kept off the common path.)"""
    w = plane.shape[1]
    best, where = plane[r0, c0], r0 * w + c0
    for r in range(r0, r1):
        for col in range(c0, c1):
            v = plane[r, col]
            if v > best or (v != v and best == best):
                best, where = v, r * w + col
    return best, where


@kernel(inline=True)
def _max_pool_plane_separable(plane, kh, kw, sh, sw, ph, pw, y, argmax):
    """Max-pool one NaN-free plane in two passes: the max of every row's window span
    (row_max, with its column), then, per output row, the max of those over the window's
    rows.  The second pass runs along output columns, so it vectorises; together about
    2.5x faster than scanning each window.  Strict '>' in row-major order keeps the
    first maximum, exactly like scanning the window."""
    h, w = plane.shape
    oh, ow = y.shape
    row_max = np.empty((h, ow), plane.dtype)
    row_col = np.empty((h, ow), np.int64)
    for r in range(h):
        for ox in range(ow):
            c0, c1 = _clipped_window(ox, sw, pw, kw, w)
            best, where = plane[r, c0], c0
            for col in range(c0 + 1, c1):
                if plane[r, col] > best:
                    best, where = plane[r, col], col
            row_max[r, ox], row_col[r, ox] = best, where
    for oy in range(oh):
        r0, r1 = _clipped_window(oy, sh, ph, kh, h)
        y_row, arg_row = y[oy], argmax[oy]
        for ox in range(ow):
            y_row[ox], arg_row[ox] = row_max[r0, ox], r0 * w + row_col[r0, ox]
        for r in range(r0 + 1, r1):
            for ox in range(ow):
                take = row_max[r, ox] > y_row[ox]
                y_row[ox] = row_max[r, ox] if take else y_row[ox]
                arg_row[ox] = r * w + row_col[r, ox] if take else arg_row[ox]


@kernel(parallel=True)
def _max_pool_forward(x, kh, kw, sh, sw, ph, pw, y, argmax):
    n, c, h, w = x.shape
    _, _, oh, ow = y.shape
    for task in prange(n * c):
        b, ch = task // c, task % c
        plane = x[b, ch]
        if not _has_nan(plane):
            _max_pool_plane_separable(plane, kh, kw, sh, sw, ph, pw, y[b, ch], argmax[b, ch])
            continue
        for oy in range(oh):
            r0, r1 = _clipped_window(oy, sh, ph, kh, h)
            for ox in range(ow):
                c0, c1 = _clipped_window(ox, sw, pw, kw, w)
                y[b, ch, oy, ox], argmax[b, ch, oy, ox] = _window_max_nan(plane, r0, r1, c0, c1)


@kernel(parallel=True)
def _max_pool_backward(grad_y, argmax, grad_x):
    """grad_x: (N, C, H*W), zeroed here; each output's gradient goes to its winner."""
    n, c, p = grad_y.shape
    for task in prange(n * c):
        b, ch = task // c, task % c
        grad_x[b, ch, :] = 0
        for k in range(p):
            grad_x[b, ch, argmax[b, ch, k]] += grad_y[b, ch, k]


@kernel(parallel=True)
def _avg_pool_forward(x, kh, kw, sh, sw, ph, pw, divisor, y):
    n, c, h, w = x.shape
    _, _, oh, ow = y.shape
    for task in prange(n * c):
        b, ch = task // c, task % c
        for oy in range(oh):
            r0, r1 = _clipped_window(oy, sh, ph, kh, h)
            for ox in range(ow):
                c0, c1 = _clipped_window(ox, sw, pw, kw, w)
                total = 0.0
                for r in range(r0, r1):
                    for col in range(c0, c1):
                        total += x[b, ch, r, col]
                y[b, ch, oy, ox] = total / divisor[oy, ox]


@kernel(parallel=True)
def _avg_pool_backward(grad_y, kh, kw, sh, sw, ph, pw, divisor, grad_x):
    n, c, h, w = grad_x.shape
    _, _, oh, ow = grad_y.shape
    for task in prange(n * c):
        b, ch = task // c, task % c
        plane = grad_x[b, ch]
        plane[:, :] = 0
        for oy in range(oh):
            r0, r1 = _clipped_window(oy, sh, ph, kh, h)
            for ox in range(ow):
                c0, c1 = _clipped_window(ox, sw, pw, kw, w)
                share = grad_y[b, ch, oy, ox] / divisor[oy, ox]
                for r in range(r0, r1):
                    for col in range(c0, c1):
                        plane[r, col] += share


def _out_size(shape, kernel_size, stride, padding, ceil_mode):
    return tuple(pool_out_size(shape[2 + d], kernel_size[d], stride[d], padding[d], ceil_mode) for d in range(2))


def max_pool2d_forward(x, kernel_size, stride, padding, ceil_mode):
    x = contiguous(x)
    oh, ow = _out_size(x.shape, kernel_size, stride, padding, ceil_mode)
    y = np.empty((*x.shape[:2], oh, ow), dtype=x.dtype)
    argmax = np.empty((*x.shape[:2], oh, ow), dtype=np.int64)
    _max_pool_forward(x, *kernel_size, *stride, *padding, y, argmax)
    return y, argmax


def max_pool2d_backward(grad_y, argmax, x_shape, kernel_size, stride, padding, ceil_mode):
    """Scatters by argmax, one task per plane (the geometry is for the GPU's gather)."""
    n, c, h, w = x_shape
    grad_x = np.empty((n, c, h * w), dtype=grad_y.dtype)
    _max_pool_backward(contiguous(grad_y).reshape(n, c, -1),
                       contiguous(argmax).reshape(n, c, -1), grad_x)
    return grad_x.reshape(x_shape)


def avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad):
    x = contiguous(x)
    out = _out_size(x.shape, kernel_size, stride, padding, ceil_mode)
    divisor = avg_pool_divisor(x.shape[2:], kernel_size, stride, padding, out, count_include_pad)
    y = np.empty((*x.shape[:2], *out), dtype=x.dtype)
    _avg_pool_forward(x, *kernel_size, *stride, *padding, divisor, y)
    return y


def avg_pool2d_backward(grad_y, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    divisor = avg_pool_divisor(x_shape[2:], kernel_size, stride, padding, grad_y.shape[2:], count_include_pad)
    grad_x = np.empty(x_shape, dtype=grad_y.dtype)
    _avg_pool_backward(contiguous(grad_y), *kernel_size, *stride, *padding, divisor, grad_x)
    return grad_x
