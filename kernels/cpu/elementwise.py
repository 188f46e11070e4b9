"""ReLU, local response normalisation, concatenation and split on the CPU (memory-bound kernels)."""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import contiguous, kernel

# `zero` arrives typed as the array's dtype: a literal 0 would make Numba widen every
# element to float64 and the loops would no longer vectorise (measured: 3x slower).

@kernel(parallel=True)
def _relu_forward(x, y, zero):
    for i in prange(x.size):
        v = x[i]
        y[i] = zero if v < zero else v        # NaN passes through, as np.maximum(x, 0) does


@kernel(parallel=True)
def _relu_backward(grad_y, y, grad_x, zero):
    for i in prange(y.size):
        grad_x[i] = grad_y[i] if y[i] > zero else zero


def relu_forward(x):
    x = contiguous(x)
    y = np.empty_like(x)
    _relu_forward(x.reshape(-1), y.reshape(-1), x.dtype.type(0))
    return y


def relu_backward(grad_y, y):
    grad_x = np.empty(y.shape, dtype=grad_y.dtype)
    _relu_backward(contiguous(grad_y).reshape(-1), contiguous(y).reshape(-1),
                   grad_x.reshape(-1), grad_y.dtype.type(0))
    return grad_x


# In the LRN loops every inner loop runs over a slice view indexed from 0 (indexing x[b, j, q]
# with q starting at a block offset did not vectorise), the sums stay in the array's dtype (a
# float64 accumulator added conversions), and the helper below is inlined.  Together: LRN
# forward 24 ms -> ~5 ms at GoogLeNet's norm2 size.

@kernel(inline=True)
def _scale_by_inverse_power(a, s, beta, out):
    """out = a * s ** -beta.  For GoogLeNet's beta = 0.75 two square roots replace pow
    (several times cheaper); the test sits outside the loops so both loops vectorise."""
    if beta == 0.75:
        for q in range(a.size):
            root = np.sqrt(s[q])
            out[q] = a[q] / (root * np.sqrt(root))
    else:
        for q in range(a.size):
            out[q] = a[q] * s[q] ** -beta


_LRN_BLOCK = 512     # pixels per LRN task: its scratch rows (channels x block) stay in cache


@kernel(parallel=True)
def _lrn_forward(x, size, alpha, beta, k, y, scale):
    """x, y, scale: (N, C, P).  Tasks are (image, block of pixels); channels are walked inside."""
    n, c, p = x.shape
    before, after = size // 2, (size - 1) // 2
    coefficient, base = x.dtype.type(alpha / size), x.dtype.type(k)
    blocks = (p + _LRN_BLOCK - 1) // _LRN_BLOCK
    for task in prange(n * blocks):
        b, p0 = task // blocks, (task % blocks) * _LRN_BLOCK
        p1 = min(p, p0 + _LRN_BLOCK)
        total = np.empty(p1 - p0, dtype=x.dtype)
        for ch in range(c):
            total[:] = 0
            for j in range(max(0, ch - before), min(c, ch + after + 1)):
                row = x[b, j, p0:p1]
                for q in range(total.size):
                    total[q] += row[q] * row[q]
            s = scale[b, ch, p0:p1]
            for q in range(total.size):
                s[q] = base + coefficient * total[q]
            _scale_by_inverse_power(x[b, ch, p0:p1], s, beta, y[b, ch, p0:p1])


@kernel(parallel=True)
def _lrn_backward(x, y, scale, grad_y, size, alpha, beta, k, grad_x):
    n, c, p = x.shape
    before, after = (size - 1) // 2, size // 2     # the mirrored window: every j whose window holds ch
    factor = x.dtype.type(2.0 * alpha * beta / size)
    blocks = (p + _LRN_BLOCK - 1) // _LRN_BLOCK
    for task in prange(n * blocks):
        b, p0 = task // blocks, (task % blocks) * _LRN_BLOCK
        p1 = min(p, p0 + _LRN_BLOCK)
        m = p1 - p0
        ratio = np.empty((c, m), dtype=x.dtype)          # grad_y * y / scale, once per element
        for j in range(c):
            gj, yj, sj, rj = grad_y[b, j, p0:p1], y[b, j, p0:p1], scale[b, j, p0:p1], ratio[j]
            for q in range(m):
                rj[q] = gj[q] * yj[q] / sj[q]
        spread = np.empty(m, dtype=x.dtype)
        for ch in range(c):
            spread[:] = 0
            for j in range(max(0, ch - before), min(c, ch + after + 1)):
                rj = ratio[j]
                for q in range(m):
                    spread[q] += rj[q]
            out, xs = grad_x[b, ch, p0:p1], x[b, ch, p0:p1]
            _scale_by_inverse_power(grad_y[b, ch, p0:p1], scale[b, ch, p0:p1], beta, out)
            for q in range(m):
                out[q] -= factor * xs[q] * spread[q]


def _as_3d(a):
    """(N, C, everything else flattened); explicit sizes, since reshape(-1) fails on empty arrays."""
    return contiguous(a).reshape(a.shape[0], a.shape[1], int(np.prod(a.shape[2:], dtype=np.int64)))


def lrn_forward(x, size, alpha, beta, k):
    x3 = _as_3d(x)
    y, scale = np.empty_like(x3), np.empty_like(x3)
    _lrn_forward(x3, size, alpha, beta, k, y, scale)
    return y.reshape(x.shape), scale.reshape(x.shape)


def lrn_backward(x, y, scale, grad_y, size, alpha, beta, k):
    grad_x = np.empty(_as_3d(x).shape, dtype=grad_y.dtype)
    _lrn_backward(_as_3d(x), _as_3d(y), _as_3d(scale), _as_3d(grad_y), size, alpha, beta, k, grad_x)
    return grad_x.reshape(x.shape)


@kernel(parallel=True)
def _copy_channels(src, dst, src_offset, dst_offset, channels):
    """dst[b, dst_offset + i] = src[b, src_offset + i] for i < channels; arrays (N, C, P)."""
    n = src.shape[0]
    for task in prange(n * channels):
        b, i = task // channels, task % channels
        dst[b, dst_offset + i] = src[b, src_offset + i]


def concat(arrays, axis=1):
    """Concatenate along channels in parallel (other axes: NumPy)."""
    if axis != 1 or arrays[0].ndim < 2:
        return np.concatenate(arrays, axis=axis)
    sources = [_as_3d(a) for a in arrays]
    out = np.empty((arrays[0].shape[0], sum(a.shape[1] for a in arrays), sources[0].shape[2]), arrays[0].dtype)
    offset = 0
    for src in sources:
        _copy_channels(src, out, 0, offset, src.shape[1])
        offset += src.shape[1]
    return out.reshape(arrays[0].shape[0], offset, *arrays[0].shape[2:])


def split(array, sizes, axis=1):
    """Cut into consecutive pieces along channels; each piece is a contiguous copy, ready for the kernels."""
    if axis != 1 or array.ndim < 2:
        return np.split(array, np.cumsum(sizes)[:-1], axis=axis)
    source = _as_3d(array)
    pieces, offset = [], 0
    for size in sizes:
        piece = np.empty((source.shape[0], size, source.shape[2]), array.dtype)
        _copy_channels(source, piece, offset, 0, size)
        pieces.append(piece.reshape(array.shape[0], size, *array.shape[2:]))
        offset += size
    return pieces
