"""Convolution on the CPU, channels-last: im2col rows around BLAS GEMMs (numpy.matmul, OpenBLAS).

Every output pixel is one row of the column matrix, its columns ordered (kernel row i, kernel column j,
channel c):
    cols[(b, oy, ox), (i, j, c)] = x[b, oy*SH - PH + i, ox*SW - PW + j, c]        (0 in the padding)
so for one kernel row i, the valid kernel columns j read one contiguous run of the input: a single copy
of (j1 - j0) * C values.  With the filters as their product's matrix B (KH*KW*C, O), rows in the same
order (the weight (O, C, KH, KW) permuted to (KH, KW, C, O): _filter_matrix),
    y (N*OH*OW, O) = cols @ B
is exactly the channels-last output.  nn.Conv2d stores its weight so: B is read where it lies, and the
weight gradient comes back in that layout.  The columns are built a chunk of output rows at a time (a few MB,
still in cache for the GEMM that reads them), and the bias and ReLU are applied to each chunk's output
right after its GEMM.  When a backward pass will follow that needs them (see below) and the columns are
small, the forward builds them into one array and keeps them for it (`saved`).  A 1x1 convolution with stride 1 and no
padding needs no columns at all: the image's pixel rows are the column matrix, one GEMM for the whole
batch.


In float32, most layers skip the column matrix (runs_in_tiles): `_conv_tiles` builds 12 column rows
at a time into a buffer that stays in cache and multiplies them there in minigrad's own GEMM (gemm.py);
at stride 1 their input gradient is computed the same way, as a convolution of the output gradient
with the flipped filters.  Products with a thin side go to that GEMM too (runs_own_gemm).  Weight
gradients (float32, shapes its tiles take) never build the column matrix either: `_weight_grad_tiles`
builds a block of column rows in cache and adds its product with the output gradient into a sum per
thread; so the forward keeps no columns for them.  Both skip the kernel taps that lie in the padding
for every pixel of a tile or block (the pixels ordered by which taps their windows take: _tile_plan).
A tile of 12 whole windows side by side in one output row builds no column rows at all: it reads them
from the image itself, rows SW*C apart (direct tiles, _conv_tiles)."""

from __future__ import annotations

import collections
import functools
import math
import os

import numpy as np
from numba import get_num_threads, prange

from ..geometry import conv_out_size
from . import gemm, winograd
from ._jit import kernel
from .layout import nchw, nhwc, pixel_rows


@kernel(inline=True)
def _column_row(x, h, w, c, kh, kw, sh, sw, ph, pw, b, oy, ox, cols, row):
    """The column row of output pixel (b, oy, ox), into cols[row:row + KH*KW*C]; x flat channels-last."""
    span = kw * c                                  # one kernel row's columns
    x0 = ox * sw - pw
    j0, j1 = max(0, -x0), min(kw, w - x0)          # the kernel columns that land inside the image
    for i in range(kh):
        y, dst = oy * sh - ph + i, row + i * span
        if y < 0 or y >= h or j1 <= j0:
            cols[dst:dst + span] = 0
            continue
        # zero fills only where the window crosses an edge: an empty slice still costs its setup
        # (skipping them: the stem's 3-channel im2col 1.5-2x faster, the others 1.1-1.4x)
        if j0 > 0:
            cols[dst:dst + j0 * c] = 0
        src = ((b * h + y) * w + x0 + j0) * c
        run = (j1 - j0) * c
        out = cols[dst + j0 * c:dst + j0 * c + run]
        inp = x[src:src + run]
        for q in range(run):                       # contiguous on both sides: a vectorised copy
            out[q] = inp[q]
        if j1 < kw:
            cols[dst + j1 * c:dst + span] = 0


@kernel(inline=True)
def _column_range(x, h, w, c, kh, kw, sh, sw, ph, pw, b, oy, ox, lo, hi, cols, row):
    """Columns [lo, hi) of output pixel (b, oy, ox)'s column row, into cols[row:row + hi - lo]: the
    weight gradient's tasks split the columns (_weight_grad_columns).  _column_row's copy with the
    range's bounds; it stays on its own because those bounds cost the whole row 2-4% (paired: the stem's
    and 3a's 5x5 forwards and backwards)."""
    span = kw * c                                  # one kernel row's columns
    x0 = ox * sw - pw
    j0, j1 = max(0, -x0), min(kw, w - x0)          # the kernel columns that land inside the image
    for i in range(lo // span, min(kh, -(-hi // span))):
        y = oy * sh - ph + i
        s0, s1 = max(lo, i * span), min(hi, (i + 1) * span)           # this kernel row's part of the range
        v0, v1 = max(s0, i * span + j0 * c), min(s1, i * span + j1 * c)  # of it, the part inside the image
        if y < 0 or y >= h or v1 <= v0:
            cols[row + s0 - lo:row + s1 - lo] = 0
            continue
        if v0 > s0:
            cols[row + s0 - lo:row + v0 - lo] = 0
        src = ((b * h + y) * w + x0) * c + v0 - i * span
        out = cols[row + v0 - lo:row + v1 - lo]
        inp = x[src:src + v1 - v0]
        for q in range(v1 - v0):
            out[q] = inp[q]
        if v1 < s1:
            cols[row + v1 - lo:row + s1 - lo] = 0


@kernel(parallel=True)
def _im2col(x, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, u0, u1, cols):
    """cols rows for the output rows u = b*OH + oy in [u0, u1); x and cols flat.  One task per output row."""
    width = kh * kw * c
    for t in prange(u1 - u0):
        b, oy = (u0 + t) // oh, (u0 + t) % oh
        for ox in range(ow):
            _column_row(x, h, w, c, kh, kw, sh, sw, ph, pw, b, oy, ox, cols, (t * ow + ox) * width)


@kernel(parallel=True)
def _col2im_add(cols, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, u0, u1, dx):
    """The transpose of _im2col for output rows [u0, u1): adds each column entry onto the pixel it
    came from.  One task per input row (image, y), which it alone writes: no two threads race."""
    span = kw * c
    width = kh * span
    b0, b1 = u0 // oh, (u1 - 1) // oh
    for task in prange((b1 - b0 + 1) * h):
        b, y = b0 + task // h, task % h
        oy_lo, oy_hi = max(0, u0 - b * oh), min(oh, u1 - b * oh)     # this image's output rows in the chunk
        for i in range(kh):
            reach = y + ph - i                     # output row oy reads input row y through kernel row i
            if reach < 0 or reach % sh != 0:
                continue
            oy = reach // sh
            if oy < oy_lo or oy >= oy_hi:
                continue
            t = b * oh + oy - u0
            for ox in range(ow):
                x0 = ox * sw - pw
                j0, j1 = max(0, -x0), min(kw, w - x0)
                if j1 <= j0:
                    continue
                src = (t * ow + ox) * width + i * span + j0 * c
                dst = ((b * h + y) * w + x0 + j0) * c
                run = (j1 - j0) * c
                out = dx[dst:dst + run]
                inp = cols[src:src + run]
                for q in range(run):
                    out[q] += inp[q]


@kernel(inline=True)
def _finish_row(out, bias, has_bias, relu, zero):
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
    """_finish_row on each of a chunk of output rows (flat), in one pass."""
    for r in prange(rows):
        _finish_row(y[r * o:(r + 1) * o], bias, has_bias, relu, zero)


@kernel(inline=True)
def _pack_flipped(filters, o, c, kh, kw, panels):
    """panels = the filters of a forward's input gradient (a convolution with O outputs and C inputs),
    packed as gemm.pack_panels packs B, from that forward's filters as their product's matrix
    (_filter_matrix: (KH, KW, O, C) flat, C that forward's outputs): this convolution's filter
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
    cache, for the weight gradient).  `plan` (_Plan, from _tile_plan): the pixels' order, tile t its
    pixels order[12t:12t + 12]; the runs of columns that are not padding for every one of them; task s
    the tiles shares[s] to shares[s + 1], one buffer each.  A last tile of fewer than 12 pixels
    multiplies stale rows too, and leaves their products unused (a row of a product depends on its own
    row of columns only).  The filters: `filters`, their product's matrix (_filter_matrix, flat), read
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
                    _finish_row(y[(order[first] + r) * o:(order[first] + r + 1) * o], bias, has_bias, relu, zero)
                continue
            for r in range(rows):
                b, pixel = order[first + r] // (oh * ow), order[first + r] % (oh * ow)
                _column_row(x, h, w, c, kh, kw, sh, sw, ph, pw, b, pixel // ow, pixel % ow, buffer, r * width)
            box = group_box[t]
            if box_runs[box] == box_runs[box + 1]:            # every window of the tile lies in the padding
                out[:] = 0
            for q in range(box_runs[box], box_runs[box + 1]):
                gemm.tile_product(buffer, 0, width, panels, flip, out, 0, o, width, runs[q, 0], runs[q, 1],
                                  q > box_runs[box])
            for r in range(rows):
                row = y[order[first + r] * o:(order[first + r] + 1) * o]
                row[:] = out[r * o:(r + 1) * o]
                _finish_row(row, bias, has_bias, relu, zero)


@kernel(parallel=True)
def _weight_grad_tiles(x, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, g, o, partials, plan):
    """The weight gradient grad_rows^T @ columns, (O, KH*KW*C), in minigrad's GEMM, one block of pixel
    rows at a time, its product added into partials[task], one (O, padded width) matrix per task (summed
    by the caller in a fixed order: deterministic for a given number of tasks).  `plan` (_Plan, from
    _block_plan): block s is the pixels order[starts[s]:starts[s + 1]]; task s the blocks shares[s] to
    shares[s + 1].  A block's column rows and gradient rows are gathered into buffers that stay in
    cache, and only its runs of columns that are not padding for all of its pixels are multiplied
    (padded to 16 columns: the tiles' width; so a buffer's rows are the partials' width, the stem's 147
    as 160, their last columns zero)."""
    order, starts, group_box, box_runs, runs, shares, _ = plan
    padded = partials.shape[1] // o
    block_rows = np.max(starts[1:] - starts[:-1])
    for task in prange(shares.size - 1):
        total = partials[task]
        buffer = np.zeros(block_rows * padded, g.dtype)
        g_rows = np.empty(block_rows * o, g.dtype)
        for s in range(shares[task], shares[task + 1]):
            first, rows = starts[s], starts[s + 1] - starts[s]
            box = group_box[s]
            if box_runs[box] == box_runs[box + 1]:
                continue                                      # all padding: its columns are zeros
            for r in range(rows):
                b, pixel = order[first + r] // (oh * ow), order[first + r] % (oh * ow)
                _column_row(x, h, w, c, kh, kw, sh, sw, ph, pw, b, pixel // ow, pixel % ow, buffer, r * padded)
                g_rows[r * o:(r + 1) * o] = g[order[first + r] * o:(order[first + r] + 1) * o]
            for q in range(box_runs[box], box_runs[box + 1]):
                start, stop = runs[q, 0], runs[q, 1]
                gemm.add_transposed_product(g_rows, 0, o, o, buffer, start, padded, stop - start, total, start, padded, rows,
                                            True)


@kernel(parallel=True)
def _weight_grad_columns(x, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, g, o, column_shares, out, plan):
    """The weight gradient as its filters' matrix, columns^T @ grad_rows (padded width, O), added into out
    (zeros): the tasks split its rows, the columns (task t: columns column_shares[t] to [t + 1], multiples
    of 16), each going through every block of pixels (`plan`, _block_plan's for one task) and building
    only its columns of their column rows.  Against _weight_grad_tiles's split of the pixels: no sum of
    the tasks' parts and no transpose after, and each task's part of the product is half as large, so
    it stays in the core's cache across the blocks (see _splits_columns)."""
    order, starts, group_box, box_runs, runs, _, _ = plan
    block_rows = np.max(starts[1:] - starts[:-1])
    for task in prange(column_shares.size - 1):
        lo, hi = column_shares[task], column_shares[task + 1]
        buffer = np.zeros(block_rows * (hi - lo), g.dtype)    # the columns past the width stay zero
        g_rows = np.empty(block_rows * o, g.dtype)
        for s in range(starts.size - 1):
            first, rows = starts[s], starts[s + 1] - starts[s]
            box = group_box[s]
            mine = False                                  # does any of its runs of columns reach this task's?
            for q in range(box_runs[box], box_runs[box + 1]):
                mine = mine or (runs[q, 0] < hi and runs[q, 1] > lo)
            if not mine:
                continue
            for r in range(rows):
                b, pixel = order[first + r] // (oh * ow), order[first + r] % (oh * ow)
                _column_range(x, h, w, c, kh, kw, sh, sw, ph, pw, b, pixel // ow, pixel % ow, lo, hi, buffer,
                              r * (hi - lo))
                g_rows[r * o:(r + 1) * o] = g[order[first + r] * o:(order[first + r] + 1) * o]
            for q in range(box_runs[box], box_runs[box + 1]):
                start, stop = max(runs[q, 0], lo), min(runs[q, 1], hi)
                if start < stop:
                    gemm.add_transposed_product(buffer, start - lo, hi - lo, stop - start, g_rows, 0, o, o, out, start * o,
                                                o, rows, True)


@kernel(parallel=True)
def _pointwise_weight_grad(x, g, o, c, pixel_shares, column_shares, block_rows, partials):
    """A 1x1 layer's weight gradient (stride 1, no padding), grad_rows^T @ x's pixel rows (its pixel rows
    are its column rows as they are), added into partials (zeros), one (O, C) matrix per share of the
    pixels.  The tasks are a grid: pixel share p (pixels pixel_shares[p] to pixel_shares[p + 1]) by
    column share q (columns column_shares[q] to column_shares[q + 1], multiples of 16), each adding its
    product into its columns of partials[p], at most block_rows pixels at a time."""
    columns = column_shares.size - 1
    for task in prange((pixel_shares.size - 1) * columns):
        p, q = task // columns, task % columns
        start, stop = column_shares[q], column_shares[q + 1]
        share = pixel_shares[p + 1] - pixel_shares[p]
        step = max(1, -(-share // max(1, -(-share // block_rows))))      # blocks of equal size
        for first in range(pixel_shares[p], pixel_shares[p + 1], step):
            rows = min(step, pixel_shares[p + 1] - first)
            gemm.add_transposed_product(g, first * o, o, o, x, first * c + start, c, stop - start, partials[p], start, c,
                                        rows, True)


@kernel(parallel=True)
def _sum_partials(partials, o, width, out, tasks):
    """out (width, O), flat = the sum of the partials (each (O, padded width) in its rows: a task's
    product, _weight_grad_tiles's or _pointwise_weight_grad's), added in task order into the first, then
    transposed: the weight gradient as its filters' matrix (_filter_matrix), the layout of the filters
    it updates.  The tasks split out's rows (the partials' columns), 16 at a time, and transpose blocks
    of 16 by 16 values (gemm.transpose_tile)."""
    parts, padded = partials.shape[0], partials.shape[1] // o
    flat = partials.reshape(-1)
    blocks = -(-width // gemm.LANES)
    for task in prange(tasks):
        first, last = task * blocks // tasks * gemm.LANES, min(width, (task + 1) * blocks // tasks * gemm.LANES)
        for part in range(1, parts):                  # into the first partial: the task's columns of it
            for q in range(o):
                total = flat[q * padded + first:q * padded + last]
                more = partials[part, q * padded + first:q * padded + last]
                for p in range(last - first):
                    total[p] += more[p]
        for p0 in range(first, last, gemm.LANES):
            for q0 in range(0, o, gemm.LANES):
                gemm.transpose_tile(flat, q0 * padded + p0, padded, out, p0 * o + q0, o, min(gemm.LANES, width - p0),
                                    min(gemm.LANES, o - q0))


_BLOCK_ROWS = 256     # pixel rows per task of the gradient pass: its partial bias sums are one row of `partials`


@kernel(parallel=True)
def _gradient_rows(g, g_stride, mask, mask_stride, relu, rows, o, out, partials, zero):
    """out[r] = g[r] (zeroed where a fused ReLU's output was not positive), and per block of rows the
    sums of out per channel (the bias gradient, added up afterwards in a fixed order: deterministic)."""
    blocks = (rows + _BLOCK_ROWS - 1) // _BLOCK_ROWS
    for block in prange(blocks):
        total = partials[block]
        for r in range(block * _BLOCK_ROWS, min(rows, (block + 1) * _BLOCK_ROWS)):
            src, m, dst = g[r * g_stride:r * g_stride + o], mask[r * mask_stride:r * mask_stride + o], out[r * o:(r + 1) * o]
            if relu:
                for q in range(o):
                    dst[q] = src[q] if m[q] > zero else zero
            else:
                for q in range(o):
                    dst[q] = src[q]
            for q in range(o):
                total[q] += dst[q]


def _filter_matrix(weight):
    """The filters (O, C, KH, KW) as their product's matrix B, (KH*KW*C, O): y = columns @ B, rows in a
    column row's order (i, j, c).  A view when they are stored that way, as minigrad.nn.Conv2d stores
    them (then read in place, no copy), else a copy."""
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0)).reshape(-1, weight.shape[0])


def _filters_of(matrix, c, kh, kw):
    """The inverse of _filter_matrix: the (O, C, KH, KW) view of a (KH*KW*C, O) matrix."""
    return matrix.reshape(kh, kw, c, -1).transpose(3, 2, 0, 1)


def _is_pointwise(kernel_size, stride, padding):
    return kernel_size == (1, 1) and stride == (1, 1) and padding == (0, 0)


# Columns (and 1x1 outputs) are handled this many bytes at a time: small enough to stay in cache
# between the kernel that writes them and the GEMM (or the bias pass) that reads them...
_CHUNK_BYTES = 4 * 2**20
# ...but never fewer than this many rows per GEMM: a naive Inception module's 5x5 convolution over
# thousands of channels has rows of 66,000 columns, and 4 MB would be a 14-row GEMM (measured: naive
# GoogLeNet 2.9x slower than with whole-image chunks).
_MIN_ROWS = 256


# Columns up to this size are kept from the forward pass for the backward (given a `saved` dict), where
# the weight gradient does not run in tiles (float64; float32 with O not a multiple of 8).  Measured
# (batch 8, before weight gradients ran in tiles): the 5x5 16->32's backward (10 MB of columns) 13-17% faster, its forward not
# slower; with a 32 MiB limit, inception 3b (20 and 29 MB of columns kept) ran 5-13% slower (BENCHMARKS.md).
_KEEP_COLUMNS_BYTES = 16 * 2**20


# The weight gradient grad_rows^T @ cols is an (O, width) GEMM.  With few output channels its M
# dimension is tiny, and OpenBLAS's two threads split those few rows; as cols^T @ grad_rows (its
# transpose, the filters' matrix) they split the width instead.  Measured at every GoogLeNet shape,
# batch 8 and 32, alternating: O <= 32 1.00-1.74x faster (3a's 5x5 1.02-1.12x, its 5x5 reduction
# 1.36-1.74x); wider layers mixed, 0.92-1.19x.
_SWAP_WEIGHT_GRAD_MAX_O = 32


# A product with a thin side (k or n at most 64: a forward with few output channels or a short column
# row, an input gradient of few output channels) runs in minigrad's own GEMM (gemm.py), where OpenBLAS
# is at its slowest.  Measured at GoogLeNet's shapes, batch 8, alternating (BENCHMARKS.md): 1.04-1.50x
# faster at every such shape.  Wider products are mixed on the Intel, 0.76-1.19x, and stay with OpenBLAS.
_OWN_GEMM_MAX_THIN = 64
# On the Zen, wider products too, given enough rows: bare, at GoogLeNet's batch-8 shapes, 1.00-1.22x
# OpenBLAS's speed at 1568-6272 rows (forwards 1.02-1.22x, input gradients 0.96-1.10x), 0.88-0.96x at 392
# (5a and 5b); modules 3a-4d 1.02-1.06x faster, alternating whole processes (BENCHMARKS.md).
_OWN_GEMM_MIN_ROWS_WIDE = 1024 if gemm.ON_ZEN else math.inf


# A float32 convolution whose output channels are a multiple of 16 runs whole in _conv_tiles: its column
# rows are built 12 at a time into a buffer that stays in cache and go straight into minigrad's GEMM, so
# the column matrix never goes through memory.  Each tile reads all of the packed weights.  On the Intel
# only while they fit in the core's 2 MB cache beside the rest; wider layers (4c-5b's 3x3) stay with
# im2col and OpenBLAS, which blocks its product for the cache.  Measured alternating, forward
# (BENCHMARKS.md): 1.02-1.42x faster with weights up to 885 KB, 0.87-1.03x with 1.8-2.6 MB.  On the Zen 4
# (1 MB of L2, a fast L3) every such layer: modules 4c-5b forward+backward 0.99-1.14x faster with 4c-5b's
# 3x3 in tiles than without (measured alternating, whole processes).
_TILE_WEIGHT_BYTES = math.inf if gemm.ON_ZEN else 2**20


def runs_in_tiles(dtype, o, width):
    """Whether a (non-1x1) convolution with o output channels and column rows `width` long runs in tiles."""
    return dtype == np.float32 and o % gemm.LANES == 0 and o * width * 4 <= _TILE_WEIGHT_BYTES


def runs_own_gemm(a, b):
    """Whether a convolution computes a @ b in minigrad's GEMM (shapes it takes, thin or with many rows)
    or OpenBLAS's."""
    return gemm.handles(a, b) and (min(a.shape[1], b.shape[1]) <= _OWN_GEMM_MAX_THIN
                                   or a.shape[0] >= _OWN_GEMM_MIN_ROWS_WIDE)


# On the Zen a 1x1 layer's products run in minigrad's GEMM at any number of rows.  The forward reads its
# weights in place (_filter_matrix): paired in-process at 7x7, batch 8 (5a and 5b's 1x1 layers), 0.92-0.97x
# OpenBLAS's time.  The input gradient's B, the filters' matrix transposed, is packed in register
# transposes (gemm.pack_panels; NumPy's strided copy had made it 0.88-0.96x OpenBLAS's speed at 392 rows).
# Elsewhere, as every product: thin ones only (runs_own_gemm).
def pointwise_in_own_gemm(x_dtype, n):
    """Whether a 1x1 layer's (stride 1, no padding) product with n columns, its forward's (n = O) or its
    input gradient's (n = C), runs in minigrad's GEMM at any number of rows (chunks of fewer than 12 rows
    excepted)."""
    return gemm.ON_ZEN and x_dtype == np.float32 and n % gemm.LANES == 0


def _whole_vectors(n):
    """n rounded up to whole vectors, where that adds at most half again (24 -> 32, not 8 -> 16): the
    channels a kernel that takes only whole vectors computes, the extra ones on zero filters and dropped;
    None where it would add more (only 24 -> 32 was measured)."""
    wide = -(-n // gemm.LANES) * gemm.LANES
    return wide if 2 * wide <= 3 * n else None


def pointwise_columns(x_dtype, o):
    """The columns a 1x1 layer's forward computes for its o outputs: o, or o in whole vectors
    (_whole_vectors) where only that keeps the product in minigrad's GEMM (pointwise_in_own_gemm).  4b
    and 4c's 5x5 reductions (512 -> 24 at 14x14, batch 8) took 0.53 ms in OpenBLAS (the cores handed from
    its threads to Numba's and back, for the bias pass), 0.26 ms as 32 columns in minigrad's GEMM (median
    of 100, in one process)."""
    wide = _whole_vectors(o)
    return wide if wide and wide != o and pointwise_in_own_gemm(x_dtype, wide) else o


def _product(a, b, out=None, any_rows=False):
    """a @ b, into out if given, in the GEMM that runs_own_gemm picks; with any_rows (a 1x1 layer's
    product where pointwise_in_own_gemm holds), in minigrad's GEMM wherever it takes the shapes."""
    own = gemm.handles(a, b) if any_rows else runs_own_gemm(a, b)
    return gemm.matmul(a, b, out) if own else np.matmul(a, b, out=out)


def _weight_grad_matrix(grad_rows, cols):
    """cols^T @ grad_rows, (width, O): the weight gradient as its filters' matrix (_filter_matrix);
    Fortran-ordered when computed as (grad_rows^T @ cols)^T (the caller copies it anyway)."""
    if grad_rows.shape[1] <= _SWAP_WEIGHT_GRAD_MAX_O:
        return cols.T @ grad_rows
    return (grad_rows.T @ cols).T


def weight_grad_in_tiles(x_dtype, o, width, pointwise):
    """Whether a backward computes its weight gradient in _weight_grad_tiles: float32 and O a multiple of 8
    (the shapes of its tiles); a 1x1 layer's pixel rows are its columns as they are, so their length (C)
    must also be a multiple of 16 (built columns are padded to one)."""
    return x_dtype == np.float32 and o % 8 == 0 and (not pointwise or width % gemm.LANES == 0)


def _weight_grad_in_tiles(xs, kernel_size, stride, padding, out_size, grad_rows):
    """grad_rows^T @ columns as the weight's gradient (O, C, KH, KW), stored as its filters' matrix
    (_filter_matrix): by _weight_grad_tiles, the columns built block by block in cache (never a column
    matrix), or, for a 1x1 layer with stride 1 and no padding, by _pointwise_weight_grad from xs's pixel
    rows; the tasks' partial sums added up and transposed in one pass (_sum_partials).  Or, where the
    tasks split the columns (_splits_columns), by _weight_grad_columns, in the filters' layout at once."""
    n, h, w, c = xs.shape
    o = grad_rows.shape[1]
    tasks = get_num_threads()
    if _is_pointwise(kernel_size, stride, padding):
        # The tasks split the pixels, each adding into a matrix of its own, summed afterwards; with few
        # pixels they split the columns instead, so that there is one matrix, only transposed by the sum
        # pass (a sum of two would cost more than the pixel rows each task then reads in full).
        pixels, vectors = grad_rows.shape[0], c // gemm.LANES
        split_columns = pixels <= _POINTWISE_COLUMN_SPLIT_PIXELS and vectors >= tasks
        pixel_shares = [0, pixels] if split_columns else [pixels * t // tasks for t in range(tasks + 1)]
        column_shares = [vectors * t // tasks * gemm.LANES for t in range(tasks + 1)] if split_columns else [0, c]
        partials = np.zeros((len(pixel_shares) - 1, o * c), np.float32)
        _pointwise_weight_grad(xs.reshape(-1), grad_rows.reshape(-1), o, c, np.array(pixel_shares, np.intp),
                               np.array(column_shares, np.intp), _WEIGHT_GRAD_BLOCK_ROWS, partials)
    else:
        padded = -(-kernel_size[0] * kernel_size[1] * c // gemm.LANES) * gemm.LANES
        if _splits_columns(grad_rows.shape[0], o, padded, tasks):
            vectors = padded // gemm.LANES
            column_shares = np.array([vectors * t // tasks * gemm.LANES for t in range(tasks + 1)], np.intp)
            plan = _block_plan(n, h, w, c, o, *kernel_size, *stride, *padding, *out_size, padded, 1)
            grad_matrix = np.zeros((padded, o), np.float32)
            _weight_grad_columns(xs.reshape(-1), h, w, c, *kernel_size, *stride, *padding, *out_size,
                                 grad_rows.reshape(-1), o, column_shares, grad_matrix.reshape(-1), tuple(plan))
            return _filters_of(grad_matrix[:kernel_size[0] * kernel_size[1] * c], c, *kernel_size)
        plan = _block_plan(n, h, w, c, o, *kernel_size, *stride, *padding, *out_size, padded, tasks)
        partials = np.zeros((plan.shares.size - 1, o * padded), np.float32)
        _weight_grad_tiles(xs.reshape(-1), h, w, c, *kernel_size, *stride, *padding, *out_size, grad_rows.reshape(-1),
                           o, partials, tuple(plan))
    width = kernel_size[0] * kernel_size[1] * c
    grad_matrix = np.empty((width, o), np.float32)
    _sum_partials(partials, o, width, grad_matrix.reshape(-1), min(-(-width // 16), tasks))
    return _filters_of(grad_matrix, c, *kernel_size)


def _chunks(units, bytes_per_unit, rows_per_unit=1):
    step = max(-(-_MIN_ROWS // rows_per_unit), _CHUNK_BYTES // max(bytes_per_unit, 1), 1)
    step = min(units, step)
    return [(start, min(units, start + step)) for start in range(0, units, step)]


def _finish(y_rows, bias, relu):
    rows, o = y_rows.shape
    has_bias = bias is not None
    _finish_rows(y_rows.reshape(-1), o, rows, np.ascontiguousarray(bias) if has_bias else y_rows[0, :1], has_bias, relu,
                 y_rows.dtype.type(0))


def im2col(x, kernel_size, stride, padding, out_size, out=None):
    """(N, C, H, W) -> columns (N*OH*OW, KH*KW*C) in the order above; into `out` if given."""
    xs = nhwc(x)
    n, h, w, c = xs.shape
    (kh, kw), (oh, ow) = kernel_size, out_size
    cols = np.empty((n * oh * ow, kh * kw * c), x.dtype) if out is None else out
    _im2col(xs.reshape(-1), h, w, c, kh, kw, *stride, *padding, oh, ow, 0, n * oh, cols.reshape(-1))
    return cols


def col2im(cols, x_shape, kernel_size, stride, padding, out_size, out=None):
    """Columns (N*OH*OW, KH*KW*C) -> (N, C, H, W), summing overlaps; into `out` (channels-last) if given."""
    n, c, h, w = x_shape
    (kh, kw), (oh, ow) = kernel_size, out_size
    if out is None:
        dx = np.zeros((n, h, w, c), cols.dtype)
    else:
        dx = out
        dx[...] = 0                                   # the kernel adds into it
    _col2im_add(np.ascontiguousarray(cols).reshape(-1), h, w, c, kh, kw, *stride, *padding, oh, ow, 0, n * oh,
                dx.reshape(-1))
    return nchw(dx)


def _taps_inside(out_size, kernel, stride, pad, size):
    """Along one axis, for each output position: the kernel taps [lo, hi) whose input lies inside the image."""
    start = np.arange(out_size) * stride - pad
    return np.clip(-start, 0, kernel), np.clip(size - start, 0, kernel)


def _window_classes(lo, hi, kernel):
    """Along one axis, a rank per output position: positions whose windows take the same taps share one;
    whole windows (no tap in the padding) rank first."""
    keys = list(zip((lo != 0).tolist(), (hi != kernel).tolist(), lo.tolist(), hi.tolist()))
    rank = {key: r for r, key in enumerate(sorted(set(keys)))}
    return np.array([rank[key] for key in keys], dtype=np.intp)


# How _conv_tiles and _weight_grad_tiles split their pixels: `order` (pixel indices b*OH*OW + oy*OW + ox)
# into groups (group s: order[starts[s]:starts[s + 1]]); each group's runs of columns,
# runs[box_runs[box]:box_runs[box + 1]] with box = group_box[s] ((start, stop) rows, none if all its
# windows lie in the padding); each task's groups, shares[task] to shares[task + 1]; and how many groups,
# the first ones, are direct tiles (_tile_plan; 0 in other plans).
_Plan = collections.namedtuple("_Plan", "order starts group_box box_runs runs shares direct")


def _pixel_classes(n, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    """The pixels ordered by which taps their windows take (by row class, then column class, each group
    in natural order), their class keys in that order, and the bounds of their taps (i0, i1, j0, j1)."""
    i0, i1 = _taps_inside(oh, kh, sh, ph, h)
    j0, j1 = _taps_inside(ow, kw, sw, pw, w)
    row_class, column_class = _window_classes(i0, i1, kh), _window_classes(j0, j1, kw)
    key = np.tile((row_class[:, None] * (column_class.max() + 1) + column_class[None, :]).reshape(-1), n)
    order = np.argsort(key, kind="stable")
    oy, ox = order % (oh * ow) // ow, order % ow
    bounds = np.stack([i0[oy], i1[oy], j0[ox], j1[ox]])
    empty = (bounds[1] <= bounds[0]) | (bounds[3] <= bounds[2])     # such windows add no taps to their group
    bounds[:, empty] = np.array([[kh], [0], [kw], [0]])
    return order, key[order], bounds


def _taps(bounds):
    """The number of taps in the boxes (i0, i1, j0, j1) = bounds[0], ..., bounds[3]."""
    return np.maximum(bounds[1] - bounds[0], 0) * np.maximum(bounds[3] - bounds[2], 0)


# A task's work per pixel, in multiply-adds of one tap by one output channel: its taps' product and about
# one tap's more (starting runs, finishing the row), plus building its column row (every tap, zeros
# included), which costs about as much as 8 output channels' products per tap (the 5x5 16->32's forward
# in tiles, bare: 0.17 ms whatever the outputs, plus 0.33 per 16 of them).  Split by taps alone, thin
# layers' tasks were unbalanced by the build: paired, 5x5 16->32 and 16->48 0.95-0.99x the time with it.
_BUILD_COST = 8


def _work(taps, o, kh, kw, built=True):
    return (taps + 1) * o + _BUILD_COST * kh * kw * built


def _group_plan(order, bounds, starts, kh, kw, c, o, align, limit, tasks, shares=None, direct=0):
    """The _Plan of the groups starting at `starts`: each takes its pixels' taps' bounding box (the taps
    outside it are padding for every one of its pixels), as runs of columns: one per kernel row, merged
    where they touch, their ends rounded out to `align` columns (at most `limit`); the tasks' shares
    split the groups' work (_work; the first `direct` groups build no columns) evenly, unless given."""
    boxes = np.stack([np.minimum.reduceat(bounds[0], starts), np.maximum.reduceat(bounds[1], starts),
                      np.minimum.reduceat(bounds[2], starts), np.maximum.reduceat(bounds[3], starts)], axis=1)
    distinct, group_box = np.unique(boxes, axis=0, return_inverse=True)
    box_runs, runs = [0], []
    for i0, i1, j0, j1 in distinct.tolist():
        box = []
        for i in range(i0, i1 if j1 > j0 else i0):
            start, stop = (i * kw + j0) * c // align * align, min(limit, -(-(i * kw + j1) * c // align) * align)
            if box and start <= box[-1][1]:
                box[-1][1] = stop
            else:
                box.append([start, stop])
        runs += box
        box_runs.append(len(runs))
    if shares is None:
        rows = np.diff(np.append(starts, order.size))
        work = np.cumsum(rows * _work(_taps(boxes.T), o, kh, kw, np.arange(starts.size) >= direct))
        shares = np.searchsorted(work, work[-1] * np.arange(tasks + 1) / tasks, side="right")
        shares[0], shares[-1] = 0, starts.size
    as_index = functools.partial(np.ascontiguousarray, dtype=np.intp)
    return _Plan(as_index(order), as_index(np.append(starts, order.size)), as_index(group_box.reshape(-1)),
                 as_index(box_runs), as_index(np.array(runs).reshape(-1, 2)), as_index(shares), direct)


# Plans per geometry: computed once (a sort over the pixels), reused every step.
@functools.lru_cache(maxsize=64)
def _tile_plan(n, h, w, c, o, kh, kw, sh, sw, ph, pw, oh, ow, tasks):
    """_conv_tiles's plan: tiles of 12 pixels, in class order (so most tiles hold windows of one
    class).  Near the edges windows miss some taps: at 7x7 with a 3x3 kernel and padding 1, 18% of all
    taps lie in the padding, 31% with a 5x5 and padding 2; zeros that the tiles skip.  First come the
    direct tiles: 12 consecutive pixels of one output row, their windows whole, as many as each row's
    whole windows make (two per row of 3a's 5x5 at 28x28, one of a 3x3 at 14x14, none at 7x7); then the
    rest, those rows' leftover pixels first."""
    order, _, bounds = _pixel_classes(n, h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    whole = np.flatnonzero((bounds[0] == 0) & (bounds[1] == kh) & (bounds[2] == 0) & (bounds[3] == kw))
    row = order[whole] // ow               # (image, output row); a row's whole windows are consecutive pixels
    new_row = np.diff(row, prepend=-1) != 0
    row_start, run = np.flatnonzero(new_row), np.cumsum(new_row) - 1
    place, length = np.arange(row.size) - row_start[run], np.diff(np.append(row_start, row.size))[run]
    in_direct = place < length // gemm.TILE_ROWS * gemm.TILE_ROWS
    rest = np.ones(order.size, bool)
    rest[whole[in_direct]] = False
    positions = np.concatenate([whole[in_direct], np.flatnonzero(rest)])
    return _group_plan(order[positions], bounds[:, positions], np.arange(0, order.size, gemm.TILE_ROWS), kh, kw, c, o,
                       1, kh * kw * c, tasks, direct=int(in_direct.sum()) // gemm.TILE_ROWS)


# The weight gradient's pixel rows per block in _weight_grad_tiles: enough that a tile's sums, loaded and
# stored once per block, are a small part of its work; few enough that a block's column rows (up to 1.3 MB
# for 5b's 3x3) stay near the core.  Measured at every GoogLeNet shape, batch 8, against im2col + OpenBLAS:
# 128-256 alike (BENCHMARKS.md).  A block holds one class of windows, or a few small ones together
# (classes of fewer than _WEIGHT_GRAD_MIN_ROWS pixels: the sums' loads and stores would outweigh the work).
_WEIGHT_GRAD_BLOCK_ROWS = 192
_WEIGHT_GRAD_MIN_ROWS = 32
# A 1x1 layer's weight gradient with at most this many pixels splits its columns between the tasks, not
# its pixels.  Measured at GoogLeNet's batch-8 shapes, the whole 1x1 backward, old and new code
# interleaved in one process (BENCHMARKS.md): at 7x7 (392 pixels) 0.94-0.96x the time of the pixel split;
# with the column split everywhere, alternating processes, 14x14 (1568 pixels) 1.05-1.2x and 28x28 and
# 56x56 1.2-1.8x (each task reads every pixel row).
_POINTWISE_COLUMN_SPLIT_PIXELS = 1024


# A weight gradient in tiles whose tasks split the pixels (_weight_grad_tiles) adds into one (O, padded
# width) part per task, loaded and stored for every block of pixels; where those parts outgrow the core's
# cache (1 MB of L2 on the Zen), or where the pixels are few (at 7x7 most of them lie in small classes of
# edge windows: many blocks), the tasks split the columns instead (_weight_grad_columns): half the product
# each, and no sum of parts.  Measured at GoogLeNet's shapes, old and new interleaved in one process
# (BENCHMARKS.md): batch 8, 7x7 0.64-0.78x the time, 14x14 with parts of 400 KB or more 0.80-0.97x;
# batch 32, 7x7 0.83-0.93x, 14x14 with parts over 1 MB 0.90-0.97x.  Not below 256 KB (the 5x5s with 16-32
# channels, the stem: 1.02-1.23x) nor with many pixels and parts under 1 MB (28x28 and 56x56: 0.98-1.04x).
# Measured on the Zen only, not on the Intel (2 MB of L2), where the same rule applies unmeasured.
_COLUMN_SPLIT_MIN_BYTES = 2**18
_COLUMN_SPLIT_MAX_PIXELS = 2048
_COLUMN_SPLIT_ANY_PIXELS_BYTES = 2**20


def _splits_columns(pixels, o, padded, tasks):
    """Whether a (non-1x1) weight gradient in tiles runs in _weight_grad_columns: see above."""
    part = o * padded * 4
    return (o % gemm.LANES == 0 and padded // gemm.LANES >= tasks > 1 and part >= _COLUMN_SPLIT_MIN_BYTES
            and (pixels <= _COLUMN_SPLIT_MAX_PIXELS or part > _COLUMN_SPLIT_ANY_PIXELS_BYTES))


@functools.lru_cache(maxsize=64)
def _block_plan(n, h, w, c, o, kh, kw, sh, sw, ph, pw, oh, ow, padded, tasks):
    """_weight_grad_tiles's plan: blocks of at most _WEIGHT_GRAD_BLOCK_ROWS pixels of one class (a class
    split into blocks of near-equal size), runs of columns rounded out to 16 within `padded`."""
    order, key, bounds = _pixel_classes(n, h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    # first the tasks' shares of the pixels, even in work (_work); then each share's blocks
    work = np.cumsum(_work(_taps(bounds), o, kh, kw))
    task_starts = np.searchsorted(work, work[-1] * np.arange(tasks) / tasks, side="right").tolist()
    cuts = sorted(set(np.flatnonzero(np.diff(key, prepend=-1)).tolist()) | set(task_starts)) + [order.size]
    starts, block = [], 0              # the open block: pixels from `block` on
    for start, stop in zip(cuts[:-1], cuts[1:]):
        if start - block >= _WEIGHT_GRAD_MIN_ROWS or (start in task_starts and start > block):
            starts.append(block)
            block = start
        pieces = -(-(stop - block) // _WEIGHT_GRAD_BLOCK_ROWS)
        size = -(-(stop - block) // pieces)
        starts += range(block, block + (pieces - 1) * size, size)
        block += (pieces - 1) * size
    starts.append(block)
    shares = np.searchsorted(starts, task_starts + [order.size])
    return _group_plan(order, bounds, np.array(starts), kh, kw, c, o, gemm.LANES, padded, tasks, shares)


def _convolve_in_tiles(xs, weight, bias, stride, padding, relu, flip=False):
    """The convolution of channels-last xs (N, H, W, C) as a channels-last (N, OH, OW, O) array, by
    _conv_tiles (see runs_in_tiles), with the filters `weight` (O, C, KH, KW); with flip, with the
    input gradient's filters of a forward whose filters are `weight` (C, O, KH, KW): flipped, their
    two channel axes swapped."""
    n, h, w, c = xs.shape
    o, kh, kw = weight.shape[1 if flip else 0], *weight.shape[2:]
    oh, ow = conv_out_size(h, kh, stride[0], padding[0]), conv_out_size(w, kw, stride[1], padding[1])
    y = np.empty((n, oh, ow, o), xs.dtype)
    has_bias = bias is not None
    plan = _tile_plan(n, h, w, c, o, kh, kw, *stride, *padding, oh, ow, get_num_threads())
    # The forward reads its filters where they lie (stored as their product's matrix): against packing
    # them into panels first, 0.73-0.81x the time on the 7x7 layers' forwards, 0.94-1.0x on larger images.
    # The input gradient's flipped filters must be packed: each task packs its own copy, in its core's
    # cache.  Paired against one NumPy copy read by both: backward 0.87x the time on 5b's 3x3, 0.96-0.97x
    # on 5a's and 4e's, 1.00x on larger images.
    filters = _filter_matrix(weight).reshape(-1)
    packed = np.empty((plan.shares.size - 1, kh * kw * c * o) if flip else (1, 1), xs.dtype)
    _conv_tiles(xs.reshape(-1), h, w, c, kh, kw, *stride, *padding, oh, ow, filters, flip, packed, o,
                np.ascontiguousarray(bias) if has_bias else y.reshape(-1)[:1], has_bias, relu, y.reshape(-1), tuple(plan))
    return y


# Which F(m x m, r x r) runs a layer (winograd.py), measured on the Zen, batch 8, GoogLeNet's layers
# (BENCHMARKS.md, "The Winograd session").  Each layer against the tiles, forward / backward: F(4x4, 3x3)
# at 28x28 and 56x56 0.35-0.41x / 0.40-0.54x, at 7x7 (2x2 tiles of 4x4 an image, all the batch's in one
# pass: winograd.BY_ELEMENT_MAX_TILES) 0.61-0.77x / 0.71-0.84x; F(2x2, 3x3) at 14x14 0.56-0.61x /
# 0.60-0.71x; F(2x2, 5x5) from 14x14 0.50-0.79x / 0.63-0.88x, but alone 1.1-1.5x for the weight gradient
# of 16 input channels and 1.0-1.45x at 7x7 (4x4 tiles of 2x2, 64 outputs for 49), which keep the tiles.
# Whole modules, alternating the choices in one process: F(4x4, 3x3) at 28x28 0.89-0.90x of F(2x2, 3x3)'s
# time (3a, 3b), at 14x14 0.99-1.04x (4a-4e: its 36 transformed patches and products no longer fit the
# core's 1 MB cache beside each other), at 7x7 0.94-0.98x of no Winograd (5a, 5b).
_WINOGRAD_3X3_SMALL_TILE_SIDES = range(14, 28)      # output sides where F(2x2, 3x3) runs, F(4x4, 3x3) elsewhere
_WINOGRAD_5X5_MIN_SIDE = 14
_WINOGRAD_5X5_WEIGHT_GRAD_MIN_CHANNELS = 32


def winograd_enabled():
    """Whether Winograd's algorithm may run (winograd_size), from MINIGRAD_WINOGRAD: '1' (the default) or
    '0'.  Read at each call, as MINIGRAD_KERNELS is."""
    value = os.environ.get("MINIGRAD_WINOGRAD", "1")
    if value not in ("0", "1"):
        raise ValueError(f"MINIGRAD_WINOGRAD={value!r}: expected '1' (Winograd where it was measured faster, "
                         "the default) or '0' (never)")
    return value == "1"


def winograd_size(x_dtype, weight_shape, stride, padding, out_size, weight_grad=False):
    """(m, r): the F(m x m, r x r) by which a layer's forward and input gradient (or with weight_grad,
    its weight gradient) run (winograd.py), or None.  It takes float32 3x3 and 5x5 filters at stride 1,
    input and output channels multiples of 16 (whole vectors for the transforms, whole panels for the
    products), padding at most r - 1 on each side (the input gradient's convolution is padded by r - 1
    minus it); which tile, and where the tiles are faster: the measured rule above.  MINIGRAD_WINOGRAD=0
    turns it off (every layer then computes its products directly, with a direct product's rounding)."""
    o, c, kh, kw = weight_shape
    if not winograd_enabled():
        return None
    if (x_dtype != np.float32 or kh != kw or kh not in (3, 5) or tuple(stride) != (1, 1)
            or max(padding) > kh - 1 or min(padding) < 0 or c % gemm.LANES or o % gemm.LANES):
        return None
    side = min(out_size)
    if kh == 3:
        return (2 if side in _WINOGRAD_3X3_SMALL_TILE_SIDES else 4), 3
    if side < _WINOGRAD_5X5_MIN_SIDE or (weight_grad and c < _WINOGRAD_5X5_WEIGHT_GRAD_MIN_CHANNELS):
        return None
    return 2, 5


def forward_in_tiles(x_dtype, weight_shape, stride, padding):
    """Whether conv2d_forward runs this layer in tiles (a 1x1 layer with stride 1 and no padding has no
    columns to build: it stays one product)."""
    o, c, kh, kw = weight_shape
    return not _is_pointwise((kh, kw), stride, padding) and runs_in_tiles(x_dtype, o, kh * kw * c)


def _input_grad_in_tiles(x_dtype, weight_shape, stride, padding):
    """Whether a backward computes its input gradient as a convolution in tiles (conv2d_backward): its
    outputs, the C input channels, in whole vectors (_whole_vectors).  4b and 4c's 5x5 (24 -> 64 at
    14x14, batch 8): 0.75 ms against 0.99 in OpenBLAS's GEMM and col2im (median of 100, in one process)."""
    o, c, kh, kw = weight_shape
    wide = _whole_vectors(c)
    return (tuple(stride) == (1, 1) and padding[0] <= kh - 1 and padding[1] <= kw - 1
            and wide is not None and runs_in_tiles(x_dtype, wide, kh * kw * o))


def conv2d_forward(x, weight, bias, stride, padding, relu=False, saved=None):
    """saved: a dict for the backward pass, or None (no backward will follow).  Where the backward's
    weight gradient will not run in tiles (weight_grad_in_tiles), columns of at most _KEEP_COLUMNS_BYTES
    are then built for the whole batch and left in saved["columns"]: the backward skips its im2col and
    computes the weight gradient in one GEMM."""
    xs = nhwc(x)
    n, h, w, c = xs.shape
    o, _, kh, kw = weight.shape
    width = kh * kw * c
    oh, ow = conv_out_size(h, kh, stride[0], padding[0]), conv_out_size(w, kw, stride[1], padding[1])
    keep = (saved is not None and n * oh * ow * width * x.dtype.itemsize <= _KEEP_COLUMNS_BYTES
            and not weight_grad_in_tiles(x.dtype, o, width, False))        # that backward builds its own, in cache
    # (float32 with O a multiple of 16: its weight gradient runs in tiles, so no columns are kept)
    size = winograd_size(x.dtype, weight.shape, stride, padding, (oh, ow))
    if size:
        return nchw(winograd.convolve(size, xs, _filter_matrix(weight), o, padding, bias, relu))
    if forward_in_tiles(x.dtype, weight.shape, stride, padding):
        return nchw(_convolve_in_tiles(xs, weight, bias, stride, padding, relu))
    filters = _filter_matrix(weight)
    y = np.empty((n, oh, ow, o), x.dtype)
    y_rows = y.reshape(-1, o)
    if _is_pointwise((kh, kw), stride, padding):
        x_rows, columns = xs.reshape(-1, c), pointwise_columns(x.dtype, o)
        out_rows = y_rows
        if columns != o:                               # zero filters (and biases) make up whole vectors
            filters = np.pad(filters, ((0, 0), (0, columns - o)))
            bias = None if bias is None else np.pad(bias, (0, columns - o))
            out_rows = np.empty((n * h * w, columns), x.dtype)
        any_rows = pointwise_in_own_gemm(x.dtype, columns)
        for start, stop in _chunks(n * h * w, columns * x.dtype.itemsize):
            _product(x_rows[start:stop], filters, out_rows[start:stop], any_rows)
            _finish(out_rows[start:stop], bias, relu)
        if columns != o:
            y_rows[...] = out_rows[:, :o]
        return nchw(y)
    # columns that are kept leave the cache anyway: then one chunk, one GEMM (measured 1.06-1.11x faster)
    chunks = [(0, n * oh)] if keep else _chunks(n * oh, ow * width * x.dtype.itemsize, ow)
    cols = None
    for u0, u1 in chunks:
        rows = (u1 - u0) * ow
        if cols is None:
            cols = np.empty(rows * width, x.dtype)
        _im2col(xs.reshape(-1), h, w, c, kh, kw, *stride, *padding, oh, ow, u0, u1, cols)
        _product(cols[:rows * width].reshape(rows, width), filters, y_rows[u0 * ow:u1 * ow])
        _finish(y_rows[u0 * ow:u1 * ow], bias, relu)
    if keep:
        saved["columns"] = cols.reshape(-1, width)
    return nchw(y)


def conv2d_backward(x, weight, grad_y, stride, padding, need_input_grad=True, relu_output=None, saved=None):
    """grad_weight = grad_rows^T @ cols (in _weight_grad_tiles where it can, the columns built there) and
    grad_cols = grad_rows @ weight (then col2im), chunk by chunk, the columns rebuilt unless the forward
    pass left them in `saved`; or, at stride 1 in tiles, the input gradient as a convolution (below).
    relu_output: the output of a conv2d_forward with relu=True; its mask is applied in the pass that
    also sums the bias gradient."""
    xs = nhwc(x)
    n, h, w, c = xs.shape
    o, _, kh, kw = weight.shape
    oh, ow = grad_y.shape[2:]
    pixels = n * oh * ow
    g, g_stride = pixel_rows(grad_y)
    mask, mask_stride = (g, g_stride) if relu_output is None else pixel_rows(relu_output)
    grad_rows = np.empty((pixels, o), x.dtype)
    partials = np.zeros(((pixels + _BLOCK_ROWS - 1) // _BLOCK_ROWS, o), x.dtype)
    _gradient_rows(g, g_stride, mask, mask_stride, relu_output is not None, pixels, o, grad_rows.reshape(-1),
                   partials, x.dtype.type(0))
    grad_bias = partials.sum(axis=0, dtype=np.float64).astype(x.dtype)
    if _is_pointwise((kh, kw), stride, padding):
        if weight_grad_in_tiles(x.dtype, o, c, True):
            grad_weight = _weight_grad_in_tiles(xs, (1, 1), stride, padding, (oh, ow), grad_rows)
        else:      # the pixel rows are the columns
            grad_weight = _filters_of(np.ascontiguousarray(_weight_grad_matrix(grad_rows, xs.reshape(-1, c))), c, 1, 1)
        grad_x = None
        if need_input_grad:
            grad_x = nchw(_product(grad_rows, _filter_matrix(weight).T, any_rows=pointwise_in_own_gemm(x.dtype, c))
                          .reshape(n, h, w, c))
        return grad_x, grad_weight, grad_bias
    width = kh * kw * c
    grad_x = None
    size = winograd_size(x.dtype, weight.shape, stride, padding, (oh, ow))
    weight_size = winograd_size(x.dtype, weight.shape, stride, padding, (oh, ow), weight_grad=True)
    if need_input_grad and size:
        # the input gradient's convolution (below), by Winograd, with the filters turned
        grad_x = nchw(winograd.convolve(size, grad_rows.reshape(n, oh, ow, o), _filter_matrix(weight), c,
                                        (kh - 1 - padding[0], kw - 1 - padding[1]), flip=True))
    elif need_input_grad and _input_grad_in_tiles(x.dtype, weight.shape, stride, padding):
        # With stride 1 the input gradient is itself a convolution: of the output gradient with the
        # filters flipped and their two channel axes swapped, padded by KH-1-PH (and KW-1-PW).  So it
        # runs in tiles like a forward, with no gradient columns and no col2im.
        wide = _whole_vectors(c)
        filters = weight if wide == c else np.pad(weight, ((0, 0), (0, wide - c), (0, 0), (0, 0)))
        grad_x = _convolve_in_tiles(grad_rows.reshape(n, oh, ow, o), filters, None, (1, 1),
                                    (kh - 1 - padding[0], kw - 1 - padding[1]), False, flip=True)
        grad_x = nchw(grad_x if wide == c else np.ascontiguousarray(grad_x[..., :c]))
    by_columns = need_input_grad and grad_x is None          # grad_rows @ weight, then col2im, chunk by chunk
    kept = saved.get("columns") if saved else None
    grad_weight = grad_matrix = None
    if weight_size:
        grad_weight = _filters_of(winograd.weight_grad(weight_size, xs, grad_rows, padding, (oh, ow)), c, kh, kw)
    elif weight_grad_in_tiles(x.dtype, o, width, False):
        grad_weight = _weight_grad_in_tiles(xs, (kh, kw), stride, padding, (oh, ow), grad_rows)
    elif kept is not None:            # with the forward's columns, the weight gradient is one GEMM over the batch
        grad_matrix = _weight_grad_matrix(grad_rows, kept)
    dx = np.zeros((n, h, w, c), x.dtype) if by_columns else None
    weight_rows = _filter_matrix(weight).T if by_columns else None
    cols = grad_cols = None
    # the chunks rebuild the columns (for a weight gradient not yet computed) and turn the gradient into
    # the input's (if wanted)
    rebuild = grad_weight is None and grad_matrix is None
    chunks = _chunks(n * oh, ow * width * x.dtype.itemsize, ow) if rebuild or by_columns else []
    for u0, u1 in chunks:
        rows = (u1 - u0) * ow
        chunk_grad = grad_rows[u0 * ow:u1 * ow]
        if rebuild:
            cols = np.empty(rows * width, x.dtype) if cols is None else cols
            _im2col(xs.reshape(-1), h, w, c, kh, kw, *stride, *padding, oh, ow, u0, u1, cols)
            chunk_weight_grad = _weight_grad_matrix(chunk_grad, cols[:rows * width].reshape(rows, width))
            if grad_matrix is None:
                grad_matrix = chunk_weight_grad
            else:
                grad_matrix += chunk_weight_grad
        if by_columns:
            grad_cols = np.empty(rows * width, x.dtype) if grad_cols is None else grad_cols
            _product(chunk_grad, weight_rows, grad_cols[:rows * width].reshape(rows, width))
            _col2im_add(grad_cols, h, w, c, kh, kw, *stride, *padding, oh, ow, u0, u1, dx.reshape(-1))
    if by_columns:
        grad_x = nchw(dx)
    if grad_weight is None:
        grad_weight = _filters_of(np.ascontiguousarray(grad_matrix), c, kh, kw)
    return grad_x, grad_weight, grad_bias
