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


@kernel(inline=True)
def _beats(v, m):
    """Whether v replaces the running maximum m: strictly greater (so the first maximum in row-major
    window order is kept), or the first NaN (a NaN beats any number, as in the reference).  Written
    as "m is a number and v is not <= m", which is the same test in three vector operations instead
    of five (max-pool forward measured 1.13-1.38x faster)."""
    return (m == m) & (not (v <= m))


@kernel(inline=True)
def _fold_pixel(values, index, first, best, where):
    """Fold one pixel's channel vector into the running maximum (or start it, for the first)."""
    for q in range(best.size):
        v, m = values[q], best[q]
        take = first or _beats(v, m)
        best[q] = v if take else m
        where[q] = index if take else where[q]


@kernel(inline=True)
def _fold_three(a0, a1, a2, index, first, best, where):
    """Fold three neighbouring pixels of a window row in one pass: the running maximum stays in
    registers across them, one load and store of it instead of three (GoogLeNet pools 3x3: ~1.4x)."""
    for q in range(best.size):
        m, i = (a0[q], index) if first else (best[q], where[q])      # a0 then beats itself: no change
        v = a0[q]
        t = _beats(v, m)
        m, i = (v, index) if t else (m, i)
        v = a1[q]
        t = _beats(v, m)
        m, i = (v, index + 1) if t else (m, i)
        v = a2[q]
        t = _beats(v, m)
        m, i = (v, index + 2) if t else (m, i)
        best[q], where[q] = m, i


@kernel(inline=True)
def _fold_nine(x, pixel, w, c, index, best, where):
    """A whole 3x3 window (top-left pixel `pixel`, image width w) in one pass, row-major, as GoogLeNet's
    pools have inside the image: the running maximum stays in registers across all nine pixels instead
    of being stored and reloaded between three _fold_three passes (measured 1.05-1.34x)."""
    r0, r1, r2 = pixel * c, (pixel + w) * c, (pixel + 2 * w) * c
    a0, a1, a2 = x[r0:r0 + c], x[r0 + c:r0 + 2 * c], x[r0 + 2 * c:r0 + 3 * c]
    b0, b1, b2 = x[r1:r1 + c], x[r1 + c:r1 + 2 * c], x[r1 + 2 * c:r1 + 3 * c]
    d0, d1, d2 = x[r2:r2 + c], x[r2 + c:r2 + 2 * c], x[r2 + 2 * c:r2 + 3 * c]
    for q in range(best.size):
        m, i = a0[q], index
        v = a1[q]
        m, i = (v, index + 1) if _beats(v, m) else (m, i)
        v = a2[q]
        m, i = (v, index + 2) if _beats(v, m) else (m, i)
        v = b0[q]
        m, i = (v, index + w) if _beats(v, m) else (m, i)
        v = b1[q]
        m, i = (v, index + w + 1) if _beats(v, m) else (m, i)
        v = b2[q]
        m, i = (v, index + w + 2) if _beats(v, m) else (m, i)
        v = d0[q]
        m, i = (v, index + 2 * w) if _beats(v, m) else (m, i)
        v = d1[q]
        m, i = (v, index + 2 * w + 1) if _beats(v, m) else (m, i)
        v = d2[q]
        m, i = (v, index + 2 * w + 2) if _beats(v, m) else (m, i)
        best[q], where[q] = m, i


@kernel(parallel=True)
def _max_pool_forward(x, n, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, y, argmax):
    """y and argmax (flat index r*W + col of the winner in its plane) for every output and channel,
    folding the window's pixels in row-major order; the compare-and-select runs over channel vectors."""
    for u in prange(n * oh):
        b, oy = u // oh, u % oh
        r0, r1 = _clipped_window(oy, sh, ph, kh, h)
        for ox in range(ow):
            c0, c1 = _clipped_window(ox, sw, pw, kw, w)
            out = ((b * oh + oy) * ow + ox) * c
            best, where = y[out:out + c], argmax[out:out + c]
            if r1 - r0 == 3 and c1 - c0 == 3:
                _fold_nine(x, (b * h + r0) * w + c0, w, c, np.int32(r0 * w + c0), best, where)
                continue
            for r in range(r0, r1):
                pixel, index = (b * h + r) * w + c0, np.int32(r * w + c0)
                if c1 - c0 == 3:
                    _fold_three(x[pixel * c:(pixel + 1) * c], x[(pixel + 1) * c:(pixel + 2) * c],
                                x[(pixel + 2) * c:(pixel + 3) * c], index, r == r0, best, where)
                else:
                    for col in range(c1 - c0):
                        _fold_pixel(x[(pixel + col) * c:(pixel + col + 1) * c], index + col,
                                    r == r0 and col == 0, best, where)


@kernel(inline=True)
def _picked(g, a, q, index, zero):
    """Window's gradient for channel q if the window picked this pixel, else 0."""
    return g[q] if a[q] == index else zero


@kernel(inline=True)
def _gather_window(g, a, index, first, out, zero):
    """Add a window's gradient to the pixels it picked; the first window writes instead of adding
    (which spares a pass zeroing grad_x)."""
    for q in range(out.size):
        v = _picked(g, a, q, index, zero)
        out[q] = v if first else out[q] + v


@kernel(inline=True)
def _gather_two(grad_y, argmax, s0, s1, c, index, out, zero):
    """The two windows at flat offsets s0, s1 (a pixel two windows cover), in one pass."""
    g0, a0, g1, a1 = grad_y[s0:s0 + c], argmax[s0:s0 + c], grad_y[s1:s1 + c], argmax[s1:s1 + c]
    for q in range(out.size):
        out[q] = _picked(g0, a0, q, index, zero) + _picked(g1, a1, q, index, zero)


@kernel(inline=True)
def _gather_four(grad_y, argmax, s, row, c, index, out, zero):
    """The 2x2 block of windows at s, s + c, s + row, s + row + c, in one pass (a 3x3/2 pool covers
    a quarter of its pixels so).  Added in row-major window order, as _gather_window would."""
    g0, a0, g1, a1 = grad_y[s:s + c], argmax[s:s + c], grad_y[s + c:s + 2 * c], argmax[s + c:s + 2 * c]
    s += row
    g2, a2, g3, a3 = grad_y[s:s + c], argmax[s:s + c], grad_y[s + c:s + 2 * c], argmax[s + c:s + 2 * c]
    for q in range(out.size):
        v = _picked(g0, a0, q, index, zero) + _picked(g1, a1, q, index, zero)
        v += _picked(g2, a2, q, index, zero)
        out[q] = v + _picked(g3, a3, q, index, zero)


@kernel(inline=True)
def _gather_three(grad_y, argmax, s, c, index, first, out, zero):
    """Three neighbouring windows of one window row (a 3x3/1 pool covers its inner pixels with three
    rows of three), in one pass; the first row writes."""
    g0, a0, g1, a1 = grad_y[s:s + c], argmax[s:s + c], grad_y[s + c:s + 2 * c], argmax[s + c:s + 2 * c]
    g2, a2 = grad_y[s + 2 * c:s + 3 * c], argmax[s + 2 * c:s + 3 * c]
    for q in range(out.size):
        v = _picked(g0, a0, q, index, zero)
        v = v if first else out[q] + v
        v += _picked(g1, a1, q, index, zero)
        out[q] = v + _picked(g2, a2, q, index, zero)


@kernel(parallel=True)
def _max_pool_backward(grad_y, argmax, n, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, grad_x, zero):
    """grad_x[pixel] = sum of grad_y over the windows covering the pixel that picked it.  (`zero` has
    the array's dtype: a literal 0 would widen the select to float64 and stop it vectorising.)
    GoogLeNet's pools (3x3, stride 1 or 2) gather up to four windows per pass over a pixel's channels,
    so the running sum stays in registers: 1.1-1.3x faster than one pass per window, measured.  Every
    path adds in row-major window order: the same bits as one window at a time."""
    columns = np.empty((w, 2), np.int64)          # each column's covering windows, once, not per pixel
    for col in range(w):
        columns[col, 0], columns[col, 1] = _covering_windows(col, kw, sw, pw, ow)
    for u in prange(n * h):
        b, r = u // h, u % h
        oy0, oy1 = _covering_windows(r, kh, sh, ph, oh)
        for col in range(w):
            ox0, ox1 = columns[col, 0], columns[col, 1]
            pixel = (b * h + r) * w + col
            out, index = grad_x[pixel * c:(pixel + 1) * c], np.int32(r * w + col)
            start = ((b * oh + oy0) * ow + ox0) * c           # the first covering window's offset
            rows, cols = oy1 - oy0, ox1 - ox0
            if rows <= 0 or cols <= 0:                            # no window covers it (a stride > kernel)
                out[:] = 0
            elif rows == 2 and cols == 2:
                _gather_four(grad_y, argmax, start, ow * c, c, index, out, zero)
            elif rows * cols == 2:
                _gather_two(grad_y, argmax, start, start + (c if cols == 2 else ow * c), c, index, out, zero)
            elif cols == 3:
                for oy in range(oy0, oy1):
                    _gather_three(grad_y, argmax, start + (oy - oy0) * ow * c, c, index, oy == oy0, out, zero)
            else:
                for oy in range(oy0, oy1):
                    for ox in range(ox0, ox1):
                        src = ((b * oh + oy) * ow + ox) * c
                        _gather_window(grad_y[src:src + c], argmax[src:src + c], index, oy == oy0 and ox == ox0,
                                       out, zero)


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
                threes = c0 + (c1 - c0) // 3 * 3
                for col in range(c0, threes, 3):       # three pixels a pass, the sum in registers: 1.06-1.27x
                    p0 = ((b * h + r) * w + col) * c
                    a0, a1, a2 = x[p0:p0 + c], x[p0 + c:p0 + 2 * c], x[p0 + 2 * c:p0 + 3 * c]
                    for q in range(c):
                        v = out[q] + a0[q]
                        v += a1[q]
                        out[q] = v + a2[q]
                for col in range(threes, c1):
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
