"""Convolution on the CPU: Numba im2col/col2im around one BLAS GEMM per image.

Columns are laid out per image as (N, C*KH*KW, OH*OW), so `weight (O, C*KH*KW) @
cols[n]` lands directly in the NCHW output (no transpose pass).  A 1x1 convolution
with stride 1 and no padding needs no im2col at all: the image itself, viewed as
(C, H*W), is its column matrix.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..geometry import conv_out_size
from ._jit import contiguous, kernel
from .elementwise import _relu_forward, relu_backward


@kernel(inline=True)
def _valid_range(out, stride, pad, offset, size):
    """Output positions o in [lo, hi) whose input o*stride - pad + offset lies in [0, size)."""
    first = pad - offset                      # o*stride >= pad - offset
    lo = 0 if first <= 0 else (first + stride - 1) // stride
    last = size - 1 + pad - offset            # o*stride <= size - 1 + pad - offset
    hi = 0 if last < 0 else last // stride + 1
    return min(lo, out), min(max(hi, lo), out)


@kernel(parallel=True)
def _im2col(x, kh, kw, sh, sw, ph, pw, oh, ow, cols):
    """cols[b, (c*KH + i)*KW + j, y*OW + x] = x_padded[b, c, y*SH + i, x*SW + j]; one task per (image, channel)."""
    n, c, h, w = x.shape
    for task in prange(n * c):
        b, ch = task // c, task % c
        for i in range(kh):
            y0, y1 = _valid_range(oh, sh, ph, i, h)
            for j in range(kw):
                x0, x1 = _valid_range(ow, sw, pw, j, w)
                row = cols[b, (ch * kh + i) * kw + j]
                row[:y0 * ow] = 0
                row[y1 * ow:] = 0
                for y in range(y0, y1):
                    base, src = y * ow, y * sh - ph + i
                    row[base:base + x0] = 0
                    row[base + x1:base + ow] = 0
                    for xo in range(x0, x1):      # contiguous for stride 1, so it vectorises
                        row[base + xo] = x[b, ch, src, xo * sw - pw + j]


@kernel(parallel=True)
def _col2im(cols, kh, kw, sh, sw, ph, pw, oh, ow, out):
    """The transpose of _im2col, race-free: each task owns one (image, channel) plane of `out`
    and adds into it alone, so no two threads ever write the same pixel."""
    n, c, h, w = out.shape
    for task in prange(n * c):
        b, ch = task // c, task % c
        plane = out[b, ch]
        plane[:, :] = 0
        for i in range(kh):
            y0, y1 = _valid_range(oh, sh, ph, i, h)
            for j in range(kw):
                x0, x1 = _valid_range(ow, sw, pw, j, w)
                row = cols[b, (ch * kh + i) * kw + j]
                for y in range(y0, y1):
                    dst, base = y * sh - ph + i, y * ow
                    for xo in range(x0, x1):
                        plane[dst, xo * sw - pw + j] += row[base + xo]


@kernel(parallel=True)
def _add_bias(y, bias):
    """y[b, o, :] += bias[o], in place."""
    n, o, _ = y.shape
    for task in prange(n * o):
        y[task // o, task % o] += bias[task % o]


@kernel(parallel=True)
def _channel_sums(g, out):
    """out[o] = sum of g[:, o, :] (the bias gradient), accumulated in float64."""
    n, o, p = g.shape
    for ch in prange(o):
        total = 0.0
        for b in range(n):
            for k in range(p):
                total += g[b, ch, k]
        out[ch] = total


def im2col(x, kernel_size, stride, padding, out_size, out=None):
    """(N, C, H, W) -> (N, C*KH*KW, OH*OW) columns (zero padding), into `out` if given."""
    n, c = x.shape[:2]
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel_size, stride, padding, out_size
    cols = np.empty((n, c * kh * kw, oh * ow), dtype=x.dtype) if out is None else out
    _im2col(contiguous(x), kh, kw, sh, sw, ph, pw, oh, ow, cols)
    return cols


def col2im(cols, x_shape, kernel_size, stride, padding, out_size, out=None):
    """(N, C*KH*KW, OH*OW) columns -> (N, C, H, W), summing overlaps; into `out` (contiguous) if given."""
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel_size, stride, padding, out_size
    result = np.empty(x_shape, dtype=cols.dtype) if out is None else out
    _col2im(contiguous(cols), kh, kw, sh, sw, ph, pw, oh, ow, result)
    return result


def _is_pointwise(kernel_size, stride, padding):
    return kernel_size == (1, 1) and stride == (1, 1) and padding == (0, 0)


# Columns are built a chunk of images at a time, in a buffer of about this size: it stays in
# cache for the GEMM that reads it, and it is small enough for malloc to reuse.  (Measured:
# a 58 MB column matrix, above glibc's 32 MB mmap threshold, came as fresh pages every call,
# and faulting them in made im2col 10x slower than copying the same bytes.)
_COLUMN_CHUNK_BYTES = 4 * 2**20


def _chunks(x, kernel_size, out_size):
    n, c = x.shape[:2]
    per_image = c * kernel_size[0] * kernel_size[1] * out_size[0] * out_size[1] * x.dtype.itemsize
    step = max(1, min(n, _COLUMN_CHUNK_BYTES // max(per_image, 1)))
    return [(start, min(n, start + step)) for start in range(0, n, step)]


def conv2d_forward(x, weight, bias, stride, padding, relu=False):
    x = contiguous(x)
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    oh, ow = conv_out_size(h, kh, stride[0], padding[0]), conv_out_size(w, kw, stride[1], padding[1])
    weight_matrix = weight.reshape(o, -1)
    y = np.empty((n, o, oh * ow), dtype=x.dtype)
    if _is_pointwise((kh, kw), stride, padding):
        np.matmul(weight_matrix, x.reshape(n, c, h * w), out=y)     # a 1x1 convolution is a GEMM over channels
    else:
        buffer = None
        for start, stop in _chunks(x, (kh, kw), (oh, ow)):
            buffer = im2col(x[start:stop], (kh, kw), stride, padding, (oh, ow),
                            buffer if buffer is not None and len(buffer) == stop - start else None)
            np.matmul(weight_matrix, buffer, out=y[start:stop])     # (O, CKK) @ (k, CKK, P): one GEMM per image
    if bias is not None:
        _add_bias(y, bias)
    if relu:
        _relu_forward(y.reshape(-1), y.reshape(-1), y.dtype.type(0))      # in place
    return y.reshape(n, o, oh, ow)


def conv2d_backward(x, weight, grad_y, stride, padding, need_input_grad=True, relu_output=None):
    """grad_weight = sum over images of grad_y[n] @ cols[n]^T; grad_cols = weight^T @ grad_y[n], then
    col2im.  The columns are recomputed chunk by chunk rather than kept from the forward pass.
    relu_output: the output of a conv2d_forward with relu=True, whose mask applies first."""
    if relu_output is not None:
        grad_y = relu_backward(grad_y, relu_output)
    x = contiguous(x)
    o, c, kh, kw = weight.shape
    n, _, oh, ow = grad_y.shape
    grad_y = contiguous(grad_y).reshape(n, o, oh * ow)
    weight_t = weight.reshape(o, -1).T
    grad_bias = np.empty(o, dtype=np.float64)
    _channel_sums(grad_y, grad_bias)
    grad_x = np.empty(x.shape, dtype=x.dtype) if need_input_grad else None
    if _is_pointwise((kh, kw), stride, padding):
        grad_weight = np.tensordot(grad_y, x.reshape(n, c, -1), axes=([0, 2], [0, 2]))
        if need_input_grad:
            np.matmul(weight_t, grad_y, out=grad_x.reshape(n, c, -1))
        return grad_x, grad_weight.reshape(weight.shape), grad_bias.astype(weight.dtype)
    grad_weight = np.zeros((o, c * kh * kw), dtype=x.dtype)
    cols = grad_cols = None
    for start, stop in _chunks(x, (kh, kw), (oh, ow)):
        reuse = cols is not None and len(cols) == stop - start
        cols = im2col(x[start:stop], (kh, kw), stride, padding, (oh, ow), cols if reuse else None)
        # one GEMM over the chunk's images and pixels together (K = images x pixels): per-image
        # GEMMs with K = OH*OW were 7x slower than the forward pass on 7x7 grids
        grad_weight += np.tensordot(grad_y[start:stop], cols, axes=([0, 2], [0, 2]))
        if need_input_grad:
            grad_cols = np.matmul(weight_t, grad_y[start:stop], out=grad_cols if reuse else None)
            col2im(grad_cols, (stop - start, *x.shape[1:]), (kh, kw), stride, padding, (oh, ow), grad_x[start:stop])
    return grad_x, grad_weight.reshape(weight.shape), grad_bias.astype(weight.dtype)
