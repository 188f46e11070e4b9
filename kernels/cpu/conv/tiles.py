"""Convolutions in tiles: 12 output pixels at a time, their column rows built in cache and multiplied there.

A float32 layer whose output channels are whole vectors runs whole in `_conv_tiles`: its column rows are
built 12 at a time into a buffer that stays in the core's cache and go straight into minigrad's GEMM
(gemm.tile_product), so the column matrix never goes through memory.  Tiles skip the kernel taps that lie
in the padding for every pixel of the tile (the pixels ordered by which taps their windows take:
work.tile_plan), and a tile of 12 whole windows side by side in one output row builds no column rows at
all: it reads them from the image itself, rows SW*C apart (direct tiles).  At stride 1 the input gradient
is the same kind of convolution, of the output gradient with the filters flipped and their channel axes
swapped (`flip`).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...geometry import conv_out_size
from .. import gemm
from .._jit import kernel
from . import work
from .columns import column_row
from .rows import filter_matrix, finish_row


@kernel(inline=True)
def _pack_flipped(filters, o, c, kh, kw, panels):
    """panels = the filters of a forward's input gradient (a convolution with O outputs and C inputs),
    packed as gemm.pack_panels packs B, from that forward's filters as their product's matrix
    (rows.filter_matrix: (KH, KW, O, C) flat, C that forward's outputs): this convolution's filter
    (q, ci, i, j) is their (KH-1-i, KW-1-j, q, ci), so each tap's rows of B are the transpose of the
    forward's block for the flipped tap."""
    for i in range(kh):
        for j in range(kw):
            flipped = ((kh - 1 - i) * kw + kw - 1 - j) * o * c
            gemm.pack_transposed(filters, flipped, c, o, kh * kw * c, (i * kw + j) * c, c, panels)


@kernel(parallel=True)
def _conv_tiles(x, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, filters, flip, packed, o, bias, has_bias, relu, y, plan):
    """The whole forward of a float32 convolution in minigrad's GEMM, 12 output pixels (one tile) at a
    time: the tile's column rows into a small buffer (in cache), their product with the filters
    (gemm.tile_product) over the tile's runs of columns, then each row into y with the bias and ReLU.
    The product never reads the column matrix from memory (nor does the backward: it builds its own, in
    cache, for the weight gradient).  `plan` (work.WorkPlan, from work.tile_plan): the pixels' order, tile t its
    pixels order[12t:12t + 12]; the runs of columns that are not padding for every one of them; task s
    the tiles shares[s] to shares[s + 1], one buffer each.  A last tile of fewer than 12 pixels
    multiplies stale rows too, and leaves their products unused (a row of a product depends on its own
    row of columns only).  The filters: `filters`, their product's matrix (rows.filter_matrix, flat), read
    where they lie; or with flip, those of a forward of which this is the input gradient, each task
    packing the flipped filters into packed[task] (_pack_flipped: then they are in its core's cache)."""
    order, starts, group_box, box_runs, runs, shares, direct = plan
    width = kh * kw * c
    zero = y.dtype.type(0)
    for task in prange(shares.size - 1):
        panels = packed[task] if flip else filters
        if flip:
            _pack_flipped(filters, o, c, kh, kw, panels)
        buffer = np.zeros(gemm.TILE_ROWS * width, y.dtype)
        out = np.empty(gemm.TILE_ROWS * o, y.dtype)
        for t in range(shares[task], shares[task + 1]):
            first, rows = starts[t], starts[t + 1] - starts[t]
            if t < direct:
                # 12 consecutive pixels of one output row, whole windows: for kernel row i, pixel r's
                # column row is the input row's run of KW*C values at r*SW*C, so the tile reads A from x
                # itself (rows SW*C apart, overlapping) and builds nothing; its rows go straight into y.
                b, pixel = order[first] // (oh * ow), order[first] % (oh * ow)
                oy, ox = pixel // ow, pixel % ow
                for i in range(kh):
                    k0 = i * kw * c
                    a0 = ((b * h + oy * sh - ph + i) * w + ox * sw - pw) * c
                    gemm.tile_product(x, a0 - k0, sw * c, panels, flip, y, order[first] * o, o, width, k0, k0 + kw * c,
                                      i > 0)
                for r in range(rows):
                    finish_row(y[(order[first] + r) * o:(order[first] + r + 1) * o], bias, has_bias, relu, zero)
                continue
            for r in range(rows):
                b, pixel = order[first + r] // (oh * ow), order[first + r] % (oh * ow)
                column_row(x, h, w, c, kh, kw, sh, sw, ph, pw, b, pixel // ow, pixel % ow, buffer, r * width)
            box = group_box[t]
            if box_runs[box] == box_runs[box + 1]:            # every window of the tile lies in the padding
                out[:] = 0
            for q in range(box_runs[box], box_runs[box + 1]):
                gemm.tile_product(buffer, 0, width, panels, flip, out, 0, o, width, runs[q, 0], runs[q, 1],
                                  q > box_runs[box])
            for r in range(rows):
                row = y[order[first + r] * o:(order[first + r] + 1) * o]
                row[:] = out[r * o:(r + 1) * o]
                finish_row(row, bias, has_bias, relu, zero)


def convolve_in_tiles(xs, weight, bias, stride, padding, relu, threads, build_cost, flip=False):
    """The convolution of channels-last xs (N, H, W, C) as a channels-last (N, OH, OW, O) array, by
    _conv_tiles, its work split between `threads` tasks (work.tile_plan), with the filters `weight`
    (O, C, KH, KW); with flip, with the input gradient's filters of a forward whose filters are `weight`
    (C, O, KH, KW): flipped, their two channel axes swapped."""
    n, h, w, c = xs.shape
    o, kh, kw = weight.shape[1 if flip else 0], *weight.shape[2:]
    oh, ow = conv_out_size(h, kh, stride[0], padding[0]), conv_out_size(w, kw, stride[1], padding[1])
    y = np.empty((n, oh, ow, o), xs.dtype)
    has_bias = bias is not None
    plan = work.tile_plan(n, h, w, c, o, kh, kw, *stride, *padding, oh, ow, threads, build_cost)
    # The forward reads its filters where they lie (stored as their product's matrix): against packing
    # them into panels first, 0.73-0.81x the time on the 7x7 layers' forwards, 0.94-1.0x on larger images.
    # The input gradient's flipped filters must be packed: each task packs its own copy, in its core's
    # cache.  Paired against one NumPy copy read by both: backward 0.87x the time on 5b's 3x3, 0.96-0.97x
    # on 5a's and 4e's, 1.00x on larger images.
    filters = filter_matrix(weight).reshape(-1)
    packed = np.empty((plan.shares.size - 1, kh * kw * c * o) if flip else (1, 1), xs.dtype)
    _conv_tiles(xs.reshape(-1), h, w, c, kh, kw, *stride, *padding, oh, ow, filters, flip, packed, o,
                np.ascontiguousarray(bias) if has_bias else y.reshape(-1)[:1], has_bias, relu, y.reshape(-1), tuple(plan))
    return y

