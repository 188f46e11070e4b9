"""Pooling on the CPU, channels-last: one pass over each window, whole channel vectors at a time.

Each task owns one output row (forward) or one input row (backward), so nothing races: the backward
passes gather, for each input pixel, from the windows that cover it.  Windows are clipped to the
input: padding is never read, never picked by max, and receives no gradient.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..geometry import avg_pool_divisor, pool_out_size
from ._jit import kernel
from .layout import nchw, nhwc


@kernel(inline=True)
def _clipped_window(index, stride, pad, kernel_size, size):
    """[start, stop) of the input rows (or columns) under window `index`, the padding cut off."""
    start = index * stride - pad
    return max(start, 0), min(start + kernel_size, size)


@kernel(inline=True)
def _covering_windows(position, kernel_size, stride, pad, out):
    """[lo, hi) of the windows that cover input `position`: start <= position < start + kernel_size."""
    lo = (position + pad - kernel_size) // stride + 1       # Python's floor division, also for negatives
    return max(lo, 0), min((position + pad) // stride + 1, out)


@kernel(parallel=True)
def _max_pool_forward(x, n, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, y, argmax):
    """y and argmax (flat index r*W + col of the winner in its plane) for every output and channel.
    Strict '>' in row-major window order keeps the first maximum; a NaN beats any number and the
    first NaN wins, as in the reference.  The compare-and-select runs over the channel vector."""
    for u in prange(n * oh):
        b, oy = u // oh, u % oh
        r0, r1 = _clipped_window(oy, sh, ph, kh, h)
        for ox in range(ow):
            c0, c1 = _clipped_window(ox, sw, pw, kw, w)
            out = ((b * oh + oy) * ow + ox) * c
            best, where = y[out:out + c], argmax[out:out + c]
            first = x[((b * h + r0) * w + c0) * c:((b * h + r0) * w + c0 + 1) * c]
            start = np.int32(r0 * w + c0)
            for q in range(c):
                best[q], where[q] = first[q], start
            for r in range(r0, r1):
                for col in range(c0, c1):
                    pixel = (b * h + r) * w + col
                    values, index = x[pixel * c:(pixel + 1) * c], np.int32(r * w + col)
                    for q in range(c):
                        v, m = values[q], best[q]
                        take = (v > m) | ((v != v) & (m == m))
                        best[q] = v if take else m
                        where[q] = index if take else where[q]


@kernel(parallel=True)
def _max_pool_backward(grad_y, argmax, n, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, grad_x, zero):
    """grad_x[pixel] = sum of grad_y over the windows covering the pixel that picked it.  (`zero` has
    the array's dtype: a literal 0 would widen the select to float64 and stop it vectorising.)"""
    for u in prange(n * h):
        b, r = u // h, u % h
        oy0, oy1 = _covering_windows(r, kh, sh, ph, oh)
        for col in range(w):
            ox0, ox1 = _covering_windows(col, kw, sw, pw, ow)
            pixel = (b * h + r) * w + col
            out, index = grad_x[pixel * c:(pixel + 1) * c], np.int32(r * w + col)
            out[:] = 0
            for oy in range(oy0, oy1):
                for ox in range(ox0, ox1):
                    src = ((b * oh + oy) * ow + ox) * c
                    g, a = grad_y[src:src + c], argmax[src:src + c]
                    for q in range(c):
                        out[q] += g[q] if a[q] == index else zero


@kernel(parallel=True)
def _avg_pool_forward(x, n, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, divisor, y):
    for u in prange(n * oh):
        b, oy = u // oh, u % oh
        r0, r1 = _clipped_window(oy, sh, ph, kh, h)
        for ox in range(ow):
            c0, c1 = _clipped_window(ox, sw, pw, kw, w)
            out = y[((b * oh + oy) * ow + ox) * c:((b * oh + oy) * ow + ox + 1) * c]
            out[:] = 0
            for r in range(r0, r1):
                for col in range(c0, c1):
                    pixel = (b * h + r) * w + col
                    values = x[pixel * c:(pixel + 1) * c]
                    for q in range(c):
                        out[q] += values[q]
            scale = 1.0 / divisor[oy, ox]
            for q in range(c):
                out[q] = out[q] * scale


@kernel(parallel=True)
def _avg_pool_backward(grad_y, n, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, divisor, grad_x):
    """grad_x[pixel] = sum over the windows covering it of grad_y / the window's divisor."""
    for u in prange(n * h):
        b, r = u // h, u % h
        oy0, oy1 = _covering_windows(r, kh, sh, ph, oh)
        for col in range(w):
            ox0, ox1 = _covering_windows(col, kw, sw, pw, ow)
            pixel = (b * h + r) * w + col
            out = grad_x[pixel * c:(pixel + 1) * c]
            out[:] = 0
            for oy in range(oy0, oy1):
                for ox in range(ox0, ox1):
                    src = ((b * oh + oy) * ow + ox) * c
                    g, scale = grad_y[src:src + c], 1.0 / divisor[oy, ox]
                    for q in range(c):
                        out[q] += g[q] * scale


def _out_size(shape, kernel_size, stride, padding, ceil_mode):
    return tuple(pool_out_size(shape[2 + d], kernel_size[d], stride[d], padding[d], ceil_mode) for d in range(2))


def max_pool2d_forward(x, kernel_size, stride, padding, ceil_mode):
    xs = nhwc(x)
    n, h, w, c = xs.shape
    oh, ow = _out_size(x.shape, kernel_size, stride, padding, ceil_mode)
    y = np.empty((n, oh, ow, c), x.dtype)
    argmax = np.empty((n, oh, ow, c), np.int32)         # an index within one plane (at most 2^28 pixels)
    _max_pool_forward(xs.reshape(-1), n, h, w, c, *kernel_size, *stride, *padding, oh, ow, y.reshape(-1),
                      argmax.reshape(-1))
    return nchw(y), nchw(argmax)


def max_pool2d_backward(grad_y, argmax, x_shape, kernel_size, stride, padding, ceil_mode):
    n, c, h, w = x_shape
    oh, ow = grad_y.shape[2:]
    grad_x = np.empty((n, h, w, c), grad_y.dtype)
    _max_pool_backward(nhwc(grad_y).reshape(-1), nhwc(argmax).reshape(-1), n, h, w, c, *kernel_size, *stride,
                       *padding, oh, ow, grad_x.reshape(-1), grad_y.dtype.type(0))
    return nchw(grad_x)


def avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad):
    xs = nhwc(x)
    n, h, w, c = xs.shape
    oh, ow = _out_size(x.shape, kernel_size, stride, padding, ceil_mode)
    divisor = avg_pool_divisor((h, w), kernel_size, stride, padding, (oh, ow), count_include_pad)
    y = np.empty((n, oh, ow, c), x.dtype)
    _avg_pool_forward(xs.reshape(-1), n, h, w, c, *kernel_size, *stride, *padding, oh, ow, divisor, y.reshape(-1))
    return nchw(y)


def avg_pool2d_backward(grad_y, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    n, c, h, w = x_shape
    oh, ow = grad_y.shape[2:]
    divisor = avg_pool_divisor((h, w), kernel_size, stride, padding, (oh, ow), count_include_pad)
    grad_x = np.empty((n, h, w, c), grad_y.dtype)
    _avg_pool_backward(nhwc(grad_y).reshape(-1), n, h, w, c, *kernel_size, *stride, *padding, oh, ow, divisor,
                       grad_x.reshape(-1))
    return nchw(grad_x)
