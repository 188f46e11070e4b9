"""ReLU, local response normalisation, concatenation and split on the CPU (memory-bound kernels).

ReLU works on any dense array in its own memory order.  LRN and concat work channels-last: each
pixel's channels are a contiguous vector, so LRN's window over neighbouring channels is a few shifted
vector adds, and concat copies each branch's channel vector into its place in the merged one.
"""

from __future__ import annotations

import functools
import operator

import numpy as np
from numba import prange

from .. import reference
from ._jit import kernel
from .layout import dense, like, nchw, nhwc, pixel_rows

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
    x = dense(x)
    y = np.empty_like(x)                      # the same memory order as x
    _relu_forward(x.ravel(order="K"), y.ravel(order="K"), x.dtype.type(0))
    return y


def relu_backward(grad_y, y):
    y = dense(y)
    grad_x = np.empty_like(y, dtype=grad_y.dtype)
    _relu_backward(like(grad_y, y).ravel(order="K"), y.ravel(order="K"), grad_x.ravel(order="K"),
                   grad_y.dtype.type(0))
    return grad_x


# Gradients that meet at one tensor (an Inception module's input feeds four branches) are summed in
# one pass: each block of the output stays in L1 while every part is added into it, so memory sees
# k reads and one write, where pairwise a + b + c + d would make 3k - 3 passes and 2 fresh arrays.
_SUM_BLOCK = 4096


@kernel(parallel=True)
def _add_n(parts, out):
    """out = parts[0] + parts[1] + ..., added in that order; parts: a tuple of flat arrays."""
    n = out.size
    for block in prange((n + _SUM_BLOCK - 1) // _SUM_BLOCK):
        lo, hi = block * _SUM_BLOCK, min(n, (block + 1) * _SUM_BLOCK)
        dst, first, second = out[lo:hi], parts[0][lo:hi], parts[1][lo:hi]
        for q in range(hi - lo):
            dst[q] = first[q] + second[q]
        for k in range(2, len(parts)):
            src = parts[k][lo:hi]
            for q in range(hi - lo):
                dst[q] += src[q]


def add_n(arrays):
    """arrays[0] + arrays[1] + ..., in the first one's memory order.  Small arrays, other dtypes and
    mixed shapes or dtypes go to NumPy (its broadcasting and type promotion; a launch costs more)."""
    first = arrays[0]
    if (first.size < _SUM_BLOCK or first.dtype.char not in "fd"      # float32, float64 (dtype.name: ~5 us)
            or any(a.dtype != first.dtype or a.shape != first.shape for a in arrays)):
        return functools.reduce(operator.add, arrays)
    first = dense(first)
    out = np.empty_like(first)
    _add_n(tuple(like(a, first).ravel(order="K") for a in arrays), out.ravel(order="K"))
    return out


# The optimizer's step in one pass over each parameter: reads param, grad and the momentum buffer once
# and writes param and buffer once, where NumPy's expression makes six passes and two temporaries.

@kernel(inline=True)
def _sgd_block(p, g, b, lr, momentum, weight_decay, use_momentum, nesterov, first_step):
    """kernels.reference.sgd_update on flat arrays, with its roundings (no fused multiply-adds).  Each
    case is its own loop, the tests outside it, so that every loop vectorises (with the tests inside:
    scalar code, slower than NumPy's six passes up to ~256K elements, measured)."""
    if not use_momentum:
        if weight_decay != 0:
            for q in range(p.size):
                p[q] = p[q] - (p[q] * weight_decay + g[q]) * lr
        else:
            for q in range(p.size):
                p[q] = p[q] - g[q] * lr
        return
    if first_step and weight_decay != 0:                 # buffer = d
        for q in range(p.size):
            b[q] = p[q] * weight_decay + g[q]
    elif first_step:
        for q in range(p.size):
            b[q] = g[q]
    elif weight_decay != 0:                              # buffer = momentum * buffer + d
        for q in range(p.size):
            b[q] = b[q] * momentum + (p[q] * weight_decay + g[q])
    else:
        for q in range(p.size):
            b[q] = b[q] * momentum + g[q]
    if nesterov and weight_decay != 0:                   # param -= lr * (d + momentum * buffer)
        for q in range(p.size):
            p[q] = p[q] - ((p[q] * weight_decay + g[q]) + momentum * b[q]) * lr
    elif nesterov:
        for q in range(p.size):
            p[q] = p[q] - (g[q] + momentum * b[q]) * lr
    else:                                                # param -= lr * buffer
        for q in range(p.size):
            p[q] = p[q] - b[q] * lr


@kernel(parallel=True)
def _sgd_update(param, grad, buffer, lr, momentum, weight_decay, use_momentum, nesterov, first_step):
    """_sgd_block over blocks that stay in L1 (a block is read twice with momentum), spread over the cores."""
    n = param.size
    for block in prange((n + _SUM_BLOCK - 1) // _SUM_BLOCK):
        lo, hi = block * _SUM_BLOCK, min(n, (block + 1) * _SUM_BLOCK)
        _sgd_block(param[lo:hi], grad[lo:hi], buffer[lo:hi], lr, momentum, weight_decay, use_momentum, nesterov,
                   first_step)


@kernel()
def _sgd_update_serial(param, grad, buffer, lr, momentum, weight_decay, use_momentum, nesterov, first_step):
    """The same on one core, block by block: for mid-sized parameters, where waking the other core's
    thread costs more than it saves (7K- and 14K-element updates took 40-50 us in parallel inside an
    optimizer step; alone, 5-9 us)."""
    n = param.size
    for lo in range(0, n, _SUM_BLOCK):
        hi = min(n, lo + _SUM_BLOCK)
        _sgd_block(param[lo:hi], grad[lo:hi], buffer[lo:hi], lr, momentum, weight_decay, use_momentum, nesterov,
                   first_step)


_PARALLEL_SGD = 2**17     # elements from which both cores pay (measured crossover: 64K-256K)


def sgd_update(param, grad, buffer, lr, momentum, weight_decay, nesterov):
    """kernels.reference.sgd_update, in one pass when param (and the buffer) are dense float arrays of one
    dtype, shape and layout; else, and for small arrays (a launch costs more), the reference's NumPy.
    The arrays are seen in param's memory order: a convolution's filters, stored as (KH, KW, C, O) behind
    their (O, C, KH, KW) shape (minigrad.nn.Conv2d), are then contiguous (the buffer is made like param,
    and their gradient comes in their layout)."""
    order = sorted(range(param.ndim), key=lambda axis: -param.strides[axis])
    flat_param, flat_grad, flat_buffer = (None if a is None else a.transpose(order) for a in (param, grad, buffer))
    if param.size < _SUM_BLOCK or not reference.fits_one_pass(flat_param, flat_grad, flat_buffer):
        return reference.sgd_update(param, grad, buffer, lr, momentum, weight_decay, nesterov)
    first_step = momentum != 0 and buffer is None
    if first_step:
        buffer = np.empty_like(param)                  # param's layout
        flat_buffer = buffer.transpose(order)
    real = param.dtype.type
    update = _sgd_update if param.size >= _PARALLEL_SGD else _sgd_update_serial
    update(flat_param.reshape(-1), np.ascontiguousarray(flat_grad).reshape(-1),
           (flat_buffer if momentum else flat_param).reshape(-1), real(lr), real(momentum), real(weight_decay),
           momentum != 0, bool(nesterov), first_step)
    return param, (buffer if momentum else None)


# In the LRN loops every inner loop runs over one pixel's channel vector, indexed from 0 (so it
# vectorises), the sums stay in the array's dtype (a float64 accumulator added conversions), and the
# helpers below are inlined.

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


@kernel(inline=True)
def _window_sums(padded, c, span, offset, factor, out):
    """out[q] = offset + factor * (padded[q] + padded[q + 1] + ... + padded[q + span - 1]), the terms
    added in that order, for q < c.
    `padded` holds a pixel's channel values with zeros around them, so no window needs a bounds test.
    For GoogLeNet's (and AlexNet's) window of 5 the five terms are added in one pass: measured, LRN's
    forward and backward ran 1.4-1.6x faster than with a pass over `out` per term, bit for bit the same."""
    if span == 5:
        t0, t1, t2, t3, t4 = padded[0:c], padded[1:c + 1], padded[2:c + 2], padded[3:c + 3], padded[4:c + 4]
        for q in range(c):
            out[q] = offset + factor * ((((t0[q] + t1[q]) + t2[q]) + t3[q]) + t4[q])
    else:
        first = padded[0:c]
        for q in range(c):
            out[q] = first[q]
        for d in range(1, span):
            terms = padded[d:d + c]
            for q in range(c):                    # over views indexed from 0: this form vectorises (5x here)
                out[q] += terms[q]
        for q in range(c):
            out[q] = offset + factor * out[q]


@kernel(inline=True)
def _window(c, before, after):
    """A window of channels q - before .. q + after, clipped to +-(C - 1): beyond that it reads only
    zeros (adding them first changes no sum), and a huge window must not mean a huge buffer or loop.
    Returns (zeros in front of channel 0, number of terms)."""
    before, after = min(before, c - 1), min(after, c - 1)
    return before, before + after + 1


_PIXEL_BLOCK = 64     # pixels per LRN task


@kernel(parallel=True)
def _lrn_forward(x, pixels, c, size, alpha, beta, k, y, scale):
    """x, y, scale: flat channels-last.  scale = k + alpha/size * (sum of x^2 over channels
    q - size//2 .. q + (size-1)//2), y = x * scale^-beta; offsets added in the reference's order."""
    coefficient, base = x.dtype.type(alpha / size), x.dtype.type(k)
    front, span = _window(c, size // 2, (size - 1) // 2)
    for block in prange((pixels + _PIXEL_BLOCK - 1) // _PIXEL_BLOCK):
        padded = np.zeros(c + span - 1, x.dtype)
        squares = padded[front:front + c]
        for p in range(block * _PIXEL_BLOCK, min(pixels, (block + 1) * _PIXEL_BLOCK)):
            xs, s = x[p * c:(p + 1) * c], scale[p * c:(p + 1) * c]
            for q in range(c):
                squares[q] = xs[q] * xs[q]
            _window_sums(padded, c, span, base, coefficient, s)
            _scale_by_inverse_power(xs, s, beta, y[p * c:(p + 1) * c])


@kernel(parallel=True)
def _lrn_backward(x, y, scale, grad_y, pixels, c, size, alpha, beta, k, grad_x):
    """grad_x = grad_y * scale^-beta - 2*alpha*beta/size * x * (sum of grad_y*y/scale over the channels
    whose window holds this one: offsets -(size-1)//2 .. size//2)."""
    factor, zero, one = x.dtype.type(2.0 * alpha * beta / size), x.dtype.type(0), x.dtype.type(1)
    front, span = _window(c, (size - 1) // 2, size // 2)
    for block in prange((pixels + _PIXEL_BLOCK - 1) // _PIXEL_BLOCK):
        padded, spread = np.zeros(c + span - 1, x.dtype), np.empty(c, x.dtype)
        ratio = padded[front:front + c]
        for p in range(block * _PIXEL_BLOCK, min(pixels, (block + 1) * _PIXEL_BLOCK)):
            g, ys, s = grad_y[p * c:(p + 1) * c], y[p * c:(p + 1) * c], scale[p * c:(p + 1) * c]
            for q in range(c):
                ratio[q] = g[q] * ys[q] / s[q]
            _window_sums(padded, c, span, zero, one, spread)
            out, xs = grad_x[p * c:(p + 1) * c], x[p * c:(p + 1) * c]
            _scale_by_inverse_power(g, s, beta, out)
            for q in range(c):
                out[q] -= factor * xs[q] * spread[q]


def _flat(a):
    return nhwc(a).reshape(-1)


def lrn_forward(x, size, alpha, beta, k):
    n, c, h, w = x.shape
    y, scale = np.empty((n, h, w, c), x.dtype), np.empty((n, h, w, c), x.dtype)
    _lrn_forward(_flat(x), n * h * w, c, size, alpha, beta, k, y.reshape(-1), scale.reshape(-1))
    return nchw(y), nchw(scale)


def lrn_backward(x, y, scale, grad_y, size, alpha, beta, k):
    n, c, h, w = x.shape
    grad_x = np.empty((n, h, w, c), grad_y.dtype)
    _lrn_backward(_flat(x), _flat(y), _flat(scale), _flat(grad_y), n * h * w, c, size, alpha, beta, k,
                  grad_x.reshape(-1))
    return nchw(grad_x)


@kernel(parallel=True)
def _copy_channels(src, src_stride, pixels, c, dst, dst_stride, dst_offset):
    """dst[p, dst_offset:dst_offset + c] = src[p, :c] for every pixel p (flat rows with strides)."""
    for p in prange(pixels):
        out, inp = dst[p * dst_stride + dst_offset:p * dst_stride + dst_offset + c], src[p * src_stride:p * src_stride + c]
        for q in range(c):
            out[q] = inp[q]


def concat(arrays, axis=1):
    """Concatenate along channels into a channels-last result (other axes, ranks and dtypes: NumPy)."""
    first = arrays[0]
    if axis != 1 or first.ndim != 4 or first.dtype.kind != "f":
        return np.concatenate(arrays, axis=axis)
    n, _, h, w = first.shape
    total = sum(a.shape[1] for a in arrays)
    out = np.empty((n, h, w, total), first.dtype)
    offset = 0
    for a in arrays:
        src, stride = pixel_rows(a)
        _copy_channels(src, stride, n * h * w, a.shape[1], out.reshape(-1), total, offset)
        offset += a.shape[1]
    return nchw(out)


def split(array, sizes, axis=1):
    """Consecutive pieces along `axis`, as views of `array` (no copy: the kernels that consume a
    channel slice of a channels-last array read it in place)."""
    return np.split(array, np.cumsum(sizes)[:-1], axis=axis)
