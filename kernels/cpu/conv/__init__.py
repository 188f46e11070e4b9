"""Convolution on the CPU, channels-last: the public kernels, each running its layer's plan.

    plan.py         which algorithm runs each pass of a layer (from tuning.py's table): print it
    columns.py      im2col and col2im: a window per row of the column matrix
    tiles.py        12 column rows at a time, built in cache and multiplied there (minigrad's GEMM, gemm.py)
    winograd.py     F(m x m, r x r) minimal filtering for 3x3 and 5x5 layers at stride 1
    weight_grad.py  weight gradients from column rows built a block at a time, in cache
    work.py         the work planner: which pixels and which columns each task of the tiles takes
    rows.py         pixel rows: bias and ReLU, the output gradient's mask and bias sums, the filters' matrix

Images are channels-last in memory (kernels/cpu/layout.py) and the filters (O, C, KH, KW) are read as their
product's matrix (KH*KW*C, O) (rows.filter_matrix): nn.Conv2d stores them so, and the weight gradient comes
back in the same layout.  conv2d_forward and conv2d_backward have the signature and meaning of every
backend's (kernels/contract.py); `saved` is where a forward leaves its columns for the backward, when its
plan says so (plan.ConvPlan.keep_columns), and `weight_cache`, given with a weight that cannot change, is
where Winograd's transformed filters are kept once made.
"""

from __future__ import annotations

import numpy as np

from .. import gemm, tuning
from ..layout import nchw, nhwc, pixel_rows
from . import columns, tiles, weight_grad, winograd
from .plan import ConvPlan, Step, is_pointwise, plan_for, winograd_enabled
from .rows import filter_matrix, filters_of, finish, gradient_rows


def _product(a, b, out=None, own=False):
    """a @ b, into out if given: in minigrad's GEMM where the plan says so and the shapes let it (a chunk of
    fewer than 12 rows does not), else in OpenBLAS's."""
    return gemm.matmul(a, b, out) if own and gemm.handles(a, b) else np.matmul(a, b, out=out)


def _zero_padded(a, axis, size):
    """a with zeros after it along axis, to `size`: np.pad's result at a seventh of its cost (37 against 6 us for
    a 512x24 filters' matrix; it runs at every call of a layer whose channels are padded to whole vectors)."""
    shape = list(a.shape)
    shape[axis] = size
    padded = np.zeros(shape, a.dtype)
    padded[(slice(None),) * axis + (slice(0, a.shape[axis]),)] = a
    return padded


def _weight_grad_matrix(grad_rows, cols, swap_max_o):
    """cols^T @ grad_rows, (width, O), in OpenBLAS: the weight gradient as its filters' matrix; with at most
    swap_max_o outputs computed as such, so that OpenBLAS's threads split the width, else as
    (grad_rows^T @ cols)^T (Fortran-ordered: the caller copies it anyway)."""
    if grad_rows.shape[1] <= swap_max_o:
        return cols.T @ grad_rows
    return (grad_rows.T @ cols).T


def _chunks_of_rows(t, n, oh, ow, width, itemsize):
    """Chunks of output rows (image, oy) whose column rows take about t.chunk_bytes."""
    return columns.chunks(n * oh, ow * width * itemsize, t.chunk_bytes, t.min_rows, ow)


def _transformed_filters(weight_cache, size, filters, c, o, flip):
    """Winograd's F(size) transform of the filters' matrix for a convolution of c channels into o (the input
    gradient's, turned and transposed, with flip), as winograd.convolve makes it, kept in weight_cache from
    the first call on; None without a cache (the convolution then transforms them as it goes)."""
    if weight_cache is None:
        return None
    key = ("winograd", size, flip)
    if key not in weight_cache:
        weight_cache[key] = winograd.convolution_filters(size, filters, c, o, flip)
    return weight_cache[key]


def conv2d_forward(x, weight, bias, stride, padding, relu=False, saved=None, weight_cache=None):
    """saved: a dict for the backward pass, or None (no backward will follow).  Where the plan keeps the
    columns (its weight gradient runs on them in OpenBLAS, and they are small), they are built for the whole
    batch and left in saved["columns"]: the backward skips its im2col.  weight_cache: see
    _transformed_filters."""
    xs = nhwc(x)
    n, h, w, c = xs.shape
    o, _, kh, kw = weight.shape
    plan = plan_for(x.dtype, x.shape, weight.shape, stride, padding)
    step, t = plan.forward, tuning.current()
    oh, ow = plan.out_size
    if step.algorithm == "winograd":
        filters = filter_matrix(weight)
        return nchw(winograd.convolve(step.winograd, xs, filters, o, padding, bias, relu, one_pass=step.one_pass,
                                      transformed=_transformed_filters(weight_cache, step.winograd, filters, c, o,
                                                                       False)))
    if step.algorithm == "tiles":
        return nchw(tiles.convolve_in_tiles(xs, weight, bias, stride, padding, relu, plan.threads, t.build_cost))
    filters = filter_matrix(weight)
    y = np.empty((n, oh, ow, o), x.dtype)
    y_rows = y.reshape(-1, o)
    own = step.gemm == "minigrad"
    if step.algorithm == "pointwise":
        x_rows, out_rows = xs.reshape(-1, c), y_rows
        if step.channels:                              # zero filters (and biases) make up whole vectors
            filters = _zero_padded(filters, 1, step.channels)
            bias = None if bias is None else _zero_padded(bias, 0, step.channels)
            out_rows = np.empty((n * h * w, step.channels), x.dtype)
        for start, stop in columns.chunks(n * h * w, out_rows.shape[1] * x.dtype.itemsize, t.chunk_bytes, t.min_rows):
            _product(x_rows[start:stop], filters, out_rows[start:stop], own)
            finish(out_rows[start:stop], bias, relu)
        if step.channels:
            y_rows[...] = out_rows[:, :o]
        return nchw(y)
    width = kh * kw * c
    keep = saved is not None and plan.keep_columns
    # columns that are kept leave the cache anyway: then one chunk, one GEMM (measured 1.06-1.11x faster)
    chunks = [(0, n * oh)] if keep else _chunks_of_rows(t, n, oh, ow, width, x.dtype.itemsize)
    cols = None
    for u0, u1 in chunks:
        rows = (u1 - u0) * ow
        if cols is None:
            cols = np.empty(rows * width, x.dtype)
        columns.im2col_rows(xs.reshape(-1), h, w, c, kh, kw, *stride, *padding, oh, ow, u0, u1, cols)
        _product(cols[:rows * width].reshape(rows, width), filters, y_rows[u0 * ow:u1 * ow], own)
        finish(y_rows[u0 * ow:u1 * ow], bias, relu)
    if keep:
        saved["columns"] = cols.reshape(-1, width)
    return nchw(y)


def conv2d_backward(x, weight, grad_y, stride, padding, need_input_grad=True, relu_output=None, saved=None,
                    weight_cache=None):
    """(grad_x or None, grad_weight, grad_bias), each pass by its plan.  relu_output: the output of a
    conv2d_forward with relu=True; its mask is applied in the pass that also sums the bias gradient."""
    xs = nhwc(x)
    n, h, w, c = xs.shape
    o, _, kh, kw = weight.shape
    oh, ow = grad_y.shape[2:]
    plan = plan_for(x.dtype, x.shape, weight.shape, stride, padding)
    t = tuning.current()
    g, g_stride = pixel_rows(grad_y)
    mask, mask_stride = (g, g_stride) if relu_output is None else pixel_rows(relu_output)
    grad_rows, grad_bias = gradient_rows(g, g_stride, mask, mask_stride, relu_output is not None, n * oh * ow, o,
                                         x.dtype)
    grad_x = _input_grad(plan, xs, weight, grad_rows, stride, padding, t, weight_cache) if need_input_grad else None
    grad_weight = _weight_grad(plan, xs, weight, grad_rows, stride, padding, saved, t)
    return grad_x, grad_weight, grad_bias


def _input_grad(plan, xs, weight, grad_rows, stride, padding, t, weight_cache):
    n, h, w, c = xs.shape
    o, _, kh, kw = weight.shape
    oh, ow = plan.out_size
    step = plan.input_grad
    own = step.gemm == "minigrad"
    if step.algorithm == "pointwise":
        return nchw(_product(grad_rows, filter_matrix(weight).T, own=own).reshape(n, h, w, c))
    # At stride 1 the input gradient is itself a convolution: of the output gradient with the filters
    # flipped and their two channel axes swapped, padded by KH-1-PH (and KW-1-PW).  So it runs like a
    # forward (Winograd, or in tiles), with no gradient columns and no col2im.
    flipped_padding = (kh - 1 - padding[0], kw - 1 - padding[1])
    if step.algorithm == "winograd":
        filters = filter_matrix(weight)
        return nchw(winograd.convolve(step.winograd, grad_rows.reshape(n, oh, ow, o), filters, c, flipped_padding,
                                      flip=True, one_pass=step.one_pass,
                                      transformed=_transformed_filters(weight_cache, step.winograd, filters, o, c, True)))
    if step.algorithm == "tiles":
        wide = step.channels or c
        filters = weight if wide == c else _zero_padded(weight, 1, wide)
        grad_x = tiles.convolve_in_tiles(grad_rows.reshape(n, oh, ow, o), filters, None, (1, 1), flipped_padding, False,
                                         plan.threads, t.build_cost, flip=True)
        return nchw(grad_x if wide == c else np.ascontiguousarray(grad_x[..., :c]))
    width = kh * kw * c                                # col2im: grad_rows @ weight, then col2im, chunk by chunk
    dx = np.zeros((n, h, w, c), xs.dtype)
    weight_rows = filter_matrix(weight).T
    grad_cols = None
    for u0, u1 in _chunks_of_rows(t, n, oh, ow, width, xs.dtype.itemsize):
        rows = (u1 - u0) * ow
        grad_cols = np.empty(rows * width, xs.dtype) if grad_cols is None else grad_cols
        _product(grad_rows[u0 * ow:u1 * ow], weight_rows, grad_cols[:rows * width].reshape(rows, width), own)
        columns.col2im_rows(grad_cols, h, w, c, kh, kw, *stride, *padding, oh, ow, u0, u1, dx.reshape(-1))
    return nchw(dx)


def _weight_grad(plan, xs, weight, grad_rows, stride, padding, saved, t):
    n, h, w, c = xs.shape
    o, _, kh, kw = weight.shape
    oh, ow = plan.out_size
    step = plan.weight_grad
    if step.algorithm == "winograd":
        return filters_of(winograd.weight_grad(step.winograd, xs, grad_rows, padding, (oh, ow), one_pass=step.one_pass),
                          c, kh, kw)
    if step.gemm == "minigrad":                      # in tiles (a 1x1 layer's from its pixel rows)
        return weight_grad.weight_grad_in_tiles(xs, (kh, kw), stride, padding, (oh, ow), grad_rows, step.split,
                                                plan.threads, t)
    if step.algorithm == "pointwise":                # the pixel rows are the columns
        matrix = _weight_grad_matrix(grad_rows, xs.reshape(-1, c), t.swap_weight_grad_max_o)
        return filters_of(np.ascontiguousarray(matrix), c, 1, 1)
    width = kh * kw * c
    kept = saved.get("columns") if saved else None
    if kept is not None:              # with the forward's columns, the weight gradient is one GEMM over the batch
        matrix = _weight_grad_matrix(grad_rows, kept, t.swap_weight_grad_max_o)
    else:                             # the columns rebuilt a chunk at a time, the chunks' products summed
        matrix, cols = None, None
        for u0, u1 in _chunks_of_rows(t, n, oh, ow, width, xs.dtype.itemsize):
            rows = (u1 - u0) * ow
            cols = np.empty(rows * width, xs.dtype) if cols is None else cols
            columns.im2col_rows(xs.reshape(-1), h, w, c, kh, kw, *stride, *padding, oh, ow, u0, u1, cols)
            part = _weight_grad_matrix(grad_rows[u0 * ow:u1 * ow], cols[:rows * width].reshape(rows, width),
                                       t.swap_weight_grad_max_o)
            if matrix is None:
                matrix = part
            else:
                matrix += part
    return filters_of(np.ascontiguousarray(matrix), c, kh, kw)


def im2col(x, kernel_size, stride, padding, out_size):
    """The columns of x (N, C, H, W), as every backend's im2col: an (N, C, KH, KW, OH, OW) array,
    cols[n, c, i, j, oh, ow] = x_padded[n, c, oh*SH + i, ow*SW + j] (kernels/contract.py).  Here a view of
    the channels-last column matrix (N*OH*OW, KH*KW*C) that the convolution multiplies."""
    xs = nhwc(x)
    n, h, w, c = xs.shape
    (kh, kw), (oh, ow) = kernel_size, out_size
    cols = np.empty((n, oh, ow, kh, kw, c), x.dtype)
    columns.im2col_rows(xs.reshape(-1), h, w, c, kh, kw, *stride, *padding, oh, ow, 0, n * oh, cols.reshape(-1))
    return cols.transpose(0, 5, 3, 4, 1, 2)


def col2im(cols, x_shape, stride, padding):
    """The transpose of im2col, as every backend's: cols (N, C, KH, KW, OH, OW) -> (N, C, H, W), each
    entry added onto the pixel it came from."""
    n, c, h, w = x_shape
    _, _, kh, kw, oh, ow = cols.shape
    dx = np.zeros((n, h, w, c), cols.dtype)
    rows = np.ascontiguousarray(cols.transpose(0, 4, 5, 2, 3, 1))   # no copy for im2col's own columns
    columns.col2im_rows(rows.reshape(-1), h, w, c, kh, kw, *stride, *padding, oh, ow, 0, n * oh, dx.reshape(-1))
    return nchw(dx)


__all__ = ["conv2d_forward", "conv2d_backward", "im2col", "col2im", "plan_for", "ConvPlan", "Step", "is_pointwise",
           "winograd_enabled"]
