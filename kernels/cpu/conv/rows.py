"""Pixel rows: the output's bias and ReLU, the output gradient's ReLU mask and bias sums, and the filters
as their product's matrix.

Channels-last, an image is a matrix of pixel rows (N*H*W, C).  A convolution's output is cols @ B, B the
filters as a (KH*KW*C, O) matrix (`filter_matrix`): nn.Conv2d stores its weight that way, so B is read
where it lies, and the weight gradient comes back in the same layout (`filters_of`).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import kernel


@kernel(inline=True)
def finish_row(out, bias, has_bias, relu, zero):
    """out += bias, then max(., 0) if relu: one output pixel's channels."""
    if has_bias:
        for q in range(out.size):
            out[q] += bias[q]
    if relu:
        for q in range(out.size):
            v = out[q]
            out[q] = zero if v < zero else v              # NaN passes, as in ReLU


@kernel(parallel=True)
def _finish_rows(y, o, rows, bias, has_bias, relu, zero):
    """finish_row on each of a chunk of output rows (flat), in one pass."""
    for r in prange(rows):
        finish_row(y[r * o:(r + 1) * o], bias, has_bias, relu, zero)


def finish(y_rows, bias, relu):
    """y_rows (rows, O), C-ordered, += bias, then ReLU if relu: in place, in one parallel pass."""
    rows, o = y_rows.shape
    has_bias = bias is not None
    _finish_rows(y_rows.reshape(-1), o, rows, np.ascontiguousarray(bias) if has_bias else y_rows[0, :1], has_bias, relu,
                 y_rows.dtype.type(0))


BLOCK_ROWS = 256     # pixel rows per task of the gradient pass: its partial bias sums are one row of `partials`


@kernel(parallel=True)
def _gradient_rows(g, g_stride, mask, mask_stride, relu, rows, o, out, partials, zero):
    """out[r] = g[r] (zeroed where a fused ReLU's output was not positive), and per block of rows the
    sums of out per channel (the bias gradient, added up afterwards in a fixed order: deterministic)."""
    blocks = (rows + BLOCK_ROWS - 1) // BLOCK_ROWS
    for block in prange(blocks):
        total = partials[block]
        for r in range(block * BLOCK_ROWS, min(rows, (block + 1) * BLOCK_ROWS)):
            src, m, dst = g[r * g_stride:r * g_stride + o], mask[r * mask_stride:r * mask_stride + o], out[r * o:(r + 1) * o]
            if relu:
                for q in range(o):
                    dst[q] = src[q] if m[q] > zero else zero
            else:
                for q in range(o):
                    dst[q] = src[q]
            for q in range(o):
                total[q] += dst[q]


def gradient_rows(g, g_stride, mask, mask_stride, relu, pixels, o, dtype):
    """(grad_rows, grad_bias): the output gradient as C-ordered pixel rows (pixels, O), masked by a fused
    ReLU's output where relu, and its sum per channel (partial sums per block, added in a fixed order)."""
    grad_rows = np.empty((pixels, o), dtype)
    partials = np.zeros(((pixels + BLOCK_ROWS - 1) // BLOCK_ROWS, o), dtype)
    _gradient_rows(g, g_stride, mask, mask_stride, relu, pixels, o, grad_rows.reshape(-1), partials, dtype.type(0))
    return grad_rows, partials.sum(axis=0, dtype=np.float64).astype(dtype)


def filter_matrix(weight):
    """The filters (O, C, KH, KW) as their product's matrix B, (KH*KW*C, O): y = columns @ B, rows in a
    column row's order (i, j, c).  A view when they are stored that way, as minigrad.nn.Conv2d stores
    them (then read in place, no copy), else a copy."""
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0)).reshape(-1, weight.shape[0])


def filters_of(matrix, c, kh, kw):
    """The inverse of filter_matrix: the (O, C, KH, KW) view of a (KH*KW*C, O) matrix."""
    return matrix.reshape(kh, kw, c, -1).transpose(3, 2, 0, 1)
