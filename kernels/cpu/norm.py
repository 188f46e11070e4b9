"""Batch normalisation on the CPU, channels-last: each pixel's channels are a vector, so a channel's statistics
are sums down the pixel rows (N*H*W, C), vector by vector.

Forward: one pass for the statistics (each block of rows, small enough to stay in cache, summed twice: its
mean, then its squared deviations from that mean; the blocks combined in a fixed order, Chan et al.'s
formula), one pass to normalise (y = x * scale + shift, the ReLU that follows in the same pass).  Backward:
one pass for the two sums (g and g * (x - mean)), one for the input's gradient.  Every reduction adds its
blocks' partial sums in a fixed order, in float64: the same input gives the same bits.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .. import reference
from ._jit import kernel
from .layout import nchw, pixel_rows

_BLOCK_VALUES = 2**15          # values a statistics block holds (128 KB of float32): it stays in cache for its second sum


def _block_rows(c):
    return max(8, _BLOCK_VALUES // max(c, 1))


@kernel(parallel=True)
def _block_statistics(x, stride, rows, c, block, means, deviations):
    """Per block of `block` pixel rows (x flat, row r's channels at r*stride): each channel's mean, then the
    sum of squared deviations from it (float64)."""
    blocks = means.shape[0]
    for b in prange(blocks):
        first, last = b * block, min(rows, (b + 1) * block)
        mean, deviation = means[b], deviations[b]
        for r in range(first, last):
            row = x[r * stride:r * stride + c]
            for q in range(c):
                mean[q] += row[q]
        for q in range(c):
            mean[q] /= last - first
        for r in range(first, last):
            row = x[r * stride:r * stride + c]
            for q in range(c):
                d = row[q] - mean[q]
                deviation[q] += d * d


@kernel(parallel=True)
def _normalise(x, stride, rows, c, mean, scale, bias, relu, y, zero):
    """y[r] = (x[r] - mean) * scale + bias, clamped at 0 with relu (NaN passes, as in ReLU); y C-ordered (rows, c).
    Centring first keeps y exact where the variance is tiny and scale huge (x * scale + shift would cancel)."""
    for r in prange(rows):
        src, dst = x[r * stride:r * stride + c], y[r * c:(r + 1) * c]
        for q in range(c):
            v = (src[q] - mean[q]) * scale[q] + bias[q]
            dst[q] = zero if relu and v < zero else v


@kernel(parallel=True)
def _gradient_sums(g, g_stride, mask, mask_stride, use_mask, x, x_stride, mean, rows, c, block, sums, products, shifts,
                   zero):
    """Per block of pixel rows: the sums of g (masked where a fused ReLU's output was not positive), of
    g * (x - mean) and of x - mean, per channel, in float64."""
    for b in prange(sums.shape[0]):
        total, product, shift = sums[b], products[b], shifts[b]
        for r in range(b * block, min(rows, (b + 1) * block)):
            gr, mr, xr = g[r * g_stride:r * g_stride + c], mask[r * mask_stride:r * mask_stride + c], \
                x[r * x_stride:r * x_stride + c]
            for q in range(c):
                v = gr[q] if not use_mask or mr[q] > zero else zero
                total[q] += v
                product[q] += v * (xr[q] - mean[q])
                shift[q] += xr[q] - mean[q]


@kernel(parallel=True)
def _input_gradient(g, g_stride, mask, mask_stride, use_mask, x, x_stride, mean, g_mean, rows, c, k1, k2, depends,
                    out, zero):
    """out[r] = (g[r] - g_mean) * k1 + (x[r] - mean) * k2 per channel (g masked as in _gradient_sums); out
    C-ordered.  Without `depends` (running statistics: constants) only g * k1, so that x, even NaN, plays no
    part.  Both differences come first, so a constant g or x gives exact zeros however large k1 and k2."""
    for r in prange(rows):
        gr, mr, xr = g[r * g_stride:r * g_stride + c], mask[r * mask_stride:r * mask_stride + c], \
            x[r * x_stride:r * x_stride + c]
        dst = out[r * c:(r + 1) * c]
        for q in range(c):
            v = gr[q] if not use_mask or mr[q] > zero else zero
            dst[q] = (v - g_mean[q]) * k1[q] + (xr[q] - mean[q]) * k2[q] if depends else v * k1[q]


def _statistics(x_rows, stride, rows, c):
    """(mean, biased variance) per channel, float64: the blocks' means and deviations combined in order."""
    block = _block_rows(c)
    blocks = -(-rows // block)
    means, deviations = np.zeros((blocks, c)), np.zeros((blocks, c))
    _block_statistics(x_rows, stride, rows, c, block, means, deviations)
    counts = np.minimum(block, rows - np.arange(blocks) * block)[:, None].astype(np.float64)
    mean = (means * counts).sum(axis=0) / rows
    deviation = deviations.sum(axis=0) + (counts * np.square(means - mean)).sum(axis=0)
    return mean, deviation / rows


def batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps, relu=False):
    n, c, h, w = x.shape
    rows = n * h * w
    x_rows, stride = pixel_rows(x)
    if training or running_mean is None:
        mean, var = _statistics(x_rows, stride, rows, c)
        if training and running_mean is not None:
            reference.update_running_statistics(running_mean, running_var, mean, var, rows, momentum)
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    invstd = 1.0 / np.sqrt(var + eps)
    scale = invstd * (1.0 if weight is None else weight)
    bias = np.zeros(c, x.dtype) if bias is None else bias
    y = np.empty((n, h, w, c), x.dtype)
    _normalise(x_rows, stride, rows, c, mean.astype(x.dtype), scale.astype(x.dtype), bias.astype(x.dtype), relu,
               y.reshape(-1), x.dtype.type(0))
    return nchw(y), mean.astype(x.dtype), invstd.astype(x.dtype)


def batch_norm_backward(grad_y, x, weight, mean, invstd, training, relu_output=None):
    n, c, h, w = x.shape
    rows = n * h * w
    g, g_stride = pixel_rows(grad_y)
    x_rows, x_stride = pixel_rows(x)
    mask, mask_stride = (g, g_stride) if relu_output is None else pixel_rows(relu_output)
    use_mask, zero = relu_output is not None, x.dtype.type(0)
    block = _block_rows(c)
    blocks = -(-rows // block)
    sums, products, shifts = np.zeros((blocks, c)), np.zeros((blocks, c)), np.zeros((blocks, c))
    _gradient_sums(g, g_stride, mask, mask_stride, use_mask, x_rows, x_stride, mean.astype(np.float64), rows, c, block,
                   sums, products, shifts, zero)
    grad_bias, centred = sums.sum(axis=0), products.sum(axis=0)         # sum(g), sum(g * (x - mean))
    # sum((g - mean g) * (x - mean)): the same with an exact mean, and free of the error of the mean's rounding
    # (to x's dtype in the forward), which a large weight over a small variance would magnify
    covariance = centred - grad_bias / rows * shifts.sum(axis=0)
    istd = invstd.astype(np.float64)
    k1 = istd * (1.0 if weight is None else weight.astype(np.float64))   # grad_x = (g - mean g)*k1 + (x - mean)*k2
    k2 = -k1 * istd * istd * covariance / rows if training else np.zeros(c)
    grad_x = np.empty((n, h, w, c), x.dtype)
    _input_gradient(g, g_stride, mask, mask_stride, use_mask, x_rows, x_stride, mean.astype(x.dtype),
                    (grad_bias / rows).astype(x.dtype), rows, c, k1.astype(x.dtype), k2.astype(x.dtype), bool(training),
                    grad_x.reshape(-1), zero)
    return nchw(grad_x), (centred * istd).astype(x.dtype), grad_bias.astype(x.dtype)
