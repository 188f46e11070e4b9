"""Channels-last: how the CPU kernels keep images in memory.

The engine and every kernel's signature speak NCHW (batch, channels, height, width).  The CPU kernels
store images NHWC in memory, each pixel's channels side by side, and hand back NCHW-shaped views of
that memory (what PyTorch calls the channels_last memory format).  Then a 1x1 convolution is one GEMM
over every pixel of the batch, im2col copies runs of contiguous channels, and pooling, LRN and the
Inception merge work on whole channel vectors, which the compiler vectorises.  NumPy sees ordinary
arrays with other strides, so anything else (the reference kernels, reshapes, arithmetic) still works.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def nhwc(x):
    """x (N, C, H, W) as a C-contiguous (N, H, W, C) array: a view when its memory is already
    channels-last, else a copy."""
    v = x.transpose(0, 2, 3, 1)
    return v if v.flags.c_contiguous else np.ascontiguousarray(v)


def nchw(v):
    """The NCHW-shaped view of channels-last data (N, H, W, C): what a kernel returns."""
    return v.transpose(0, 3, 1, 2)


def pixel_rows(x):
    """x's pixels as rows of channels: (flat, stride), where pixel p's channels are
    flat[p*stride : p*stride + C].  No copy when x is channels-last, or a channel slice of a
    channels-last array (an Inception branch's part of the merged gradient); else a compact copy."""
    v = x.transpose(0, 2, 3, 1)
    n, h, w, c = v.shape
    if v.flags.c_contiguous and v.size:          # the common case, without as_strided's cost (~10 us a call)
        flat = v.reshape(-1)
        flat.flags.writeable = False
        return flat, c
    item = v.itemsize
    step, span = None, None
    for size, stride in ((w, v.strides[2]), (h, v.strides[1]), (n, v.strides[0])):   # innermost first
        if size == 1:
            continue
        if step is None:
            step, span = stride, size * stride
        elif stride != span:
            step = -1
            break
        else:
            span = size * stride
    step = c * item if step is None else step
    if (c > 1 and v.strides[3] != item) or step < c * item or step % item or n * h * w == 0:
        v, step = np.ascontiguousarray(v), c * item
    pixels = n * h * w
    length = (pixels - 1) * (step // item) + c if pixels else 0
    return as_strided(v, shape=(length,), strides=(item,), writeable=False), step // item


def dense(a):
    """a itself when its elements fill one block of memory with positive strides (C order, channels-last,
    any transpose of a contiguous array); else a C-contiguous copy.  Elementwise kernels run over such
    memory in its own order, and np.empty_like gives their output the same layout."""
    if a.flags.c_contiguous:
        return a
    expected = a.itemsize
    for d in sorted(range(a.ndim), key=lambda d: a.strides[d]):
        if a.shape[d] == 1:
            continue
        if a.strides[d] != expected:
            return np.ascontiguousarray(a)
        expected *= a.shape[d]
    return a


def like(a, model):
    """a laid out in memory like `model` (same shape), copied only if it is not already."""
    return a if a.strides == model.strides else _copy_like(a, model)


def _copy_like(a, model):
    out = np.empty_like(model, dtype=a.dtype)          # empty_like keeps model's memory order
    np.copyto(out, a)
    return out
