"""Weight gradients in tiles: grad_rows^T @ columns without a column matrix.

A layer's weight gradient is the product of its output gradient's pixel rows (N*OH*OW, O) with its column
matrix (N*OH*OW, KH*KW*C).  Here the columns are built a block of pixels at a time, in the core's cache,
and each block's product is added into a sum (minigrad's GEMM, gemm.add_transposed_product).  The tasks
split either the pixels (`_weight_grad_tiles`: a sum per task, added up in a fixed order and transposed
into the filters' layout by `_sum_partials`) or the columns (`_weight_grad_columns`: each task builds only
its columns of every block, into its part of the result).  A 1x1 layer's pixel rows are its columns as
they are (`_pointwise_weight_grad`).  Which one a layer runs is its plan's choice (plan.py).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .. import gemm
from .._jit import kernel
from . import work
from .columns import column_range, column_row
from .rows import filters_of


@kernel(parallel=True)
def _weight_grad_tiles(x, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, g, o, partials, plan):
    """The weight gradient grad_rows^T @ columns, (O, KH*KW*C), in minigrad's GEMM, one block of pixel
    rows at a time, its product added into partials[task], one (O, padded width) matrix per task (summed
    by the caller in a fixed order: deterministic for a given number of tasks).  `plan` (work.WorkPlan,
    from work.block_plan): block s is the pixels order[starts[s]:starts[s + 1]]; task s the blocks shares[s] to
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
                column_row(x, h, w, c, kh, kw, sh, sw, ph, pw, b, pixel // ow, pixel % ow, buffer, r * padded)
                g_rows[r * o:(r + 1) * o] = g[order[first + r] * o:(order[first + r] + 1) * o]
            for q in range(box_runs[box], box_runs[box + 1]):
                start, stop = runs[q, 0], runs[q, 1]
                gemm.add_transposed_product(g_rows, 0, o, o, buffer, start, padded, stop - start, total, start, padded, rows,
                                            True)


@kernel(parallel=True)
def _weight_grad_columns(x, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, g, o, column_shares, out, plan):
    """The weight gradient as its filters' matrix, columns^T @ grad_rows (padded width, O), added into out
    (zeros): the tasks split its rows, the columns (task t: columns column_shares[t] to [t + 1], multiples
    of 16), each going through every block of pixels (`plan`, work.block_plan's for one task) and building
    only its columns of their column rows.  Against _weight_grad_tiles's split of the pixels: no sum of
    the tasks' parts and no transpose after, and each task's part of the product is half as large, so
    it stays in the core's cache across the blocks (plan.py: the rule; tuning.py: the figures)."""
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
                column_range(x, h, w, c, kh, kw, sh, sw, ph, pw, b, pixel // ow, pixel % ow, lo, hi, buffer,
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
    are its column rows as they are), into partials, one (O, C) matrix per share of the pixels.  The tasks
    are a grid: pixel share p (pixels pixel_shares[p] to pixel_shares[p + 1]) by column share q (columns
    column_shares[q] to column_shares[q + 1], multiples of 16), each writing its product into its columns
    of partials[p], at most block_rows pixels at a time (the first block written, the next ones added: the
    partials need no zeroing first, a pass over O*C values a share in the caller's thread)."""
    columns = column_shares.size - 1
    for task in prange((pixel_shares.size - 1) * columns):
        p, q = task // columns, task % columns
        start, stop = column_shares[q], column_shares[q + 1]
        share = pixel_shares[p + 1] - pixel_shares[p]
        if share == 0:                                # more tasks than pixels: this share's sum is zero
            for i in range(o):
                partials[p, i * c + start:i * c + stop] = 0
        step = max(1, -(-share // max(1, -(-share // block_rows))))      # blocks of equal size
        for first in range(pixel_shares[p], pixel_shares[p + 1], step):
            rows = min(step, pixel_shares[p + 1] - first)
            gemm.add_transposed_product(g, first * o, o, o, x, first * c + start, c, stop - start, partials[p], start, c,
                                        rows, first > pixel_shares[p])


@kernel(parallel=True)
def _sum_partials(partials, o, width, out, tasks):
    """out (width, O), flat = the sum of the partials (each (O, padded width) in its rows: a task's
    product, _weight_grad_tiles's or _pointwise_weight_grad's), added in task order into the first, then
    transposed: the weight gradient as its filters' matrix (rows.filter_matrix), the layout of the filters
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


def weight_grad_in_tiles(xs, kernel_size, stride, padding, out_size, grad_rows, split, threads, tuning):
    """grad_rows^T @ columns as the weight's gradient (O, C, KH, KW), stored as its filters' matrix
    (rows.filter_matrix).  A kxk layer: split "pixels", by _weight_grad_tiles, the columns built block by
    block in cache, the tasks' partial sums added up and transposed in one pass (_sum_partials); split
    "columns", by _weight_grad_columns, in the filters' layout at once.  A 1x1 layer (stride 1, no
    padding), from xs's pixel rows by _pointwise_weight_grad, its tasks splitting the pixels (each adding
    into a matrix of its own, summed afterwards) or with few pixels the columns (one matrix, only
    transposed by the sum pass: a sum of two would cost more than the pixel rows each task then reads)."""
    n, h, w, c = xs.shape
    o = grad_rows.shape[1]
    kh, kw = kernel_size
    if (kh, kw, *stride, *padding) == (1, 1, 1, 1, 0, 0):
        pixels, vectors = grad_rows.shape[0], c // gemm.LANES
        by_columns = split == "columns"
        pixel_shares = [0, pixels] if by_columns else [pixels * t // threads for t in range(threads + 1)]
        column_shares = [vectors * t // threads * gemm.LANES for t in range(threads + 1)] if by_columns else [0, c]
        partials = np.empty((len(pixel_shares) - 1, o * c), np.float32)
        _pointwise_weight_grad(xs.reshape(-1), grad_rows.reshape(-1), o, c, np.array(pixel_shares, np.intp),
                               np.array(column_shares, np.intp), tuning.weight_grad_block_rows, partials)
    else:
        padded = -(-kh * kw * c // gemm.LANES) * gemm.LANES
        blocks = tuning.weight_grad_block_rows, tuning.weight_grad_min_rows, tuning.build_cost
        if split == "columns":
            vectors = padded // gemm.LANES
            column_shares = np.array([vectors * t // threads * gemm.LANES for t in range(threads + 1)], np.intp)
            plan = work.block_plan(n, h, w, c, o, kh, kw, *stride, *padding, *out_size, padded, 1, *blocks)
            grad_matrix = np.zeros((padded, o), np.float32)
            _weight_grad_columns(xs.reshape(-1), h, w, c, kh, kw, *stride, *padding, *out_size,
                                 grad_rows.reshape(-1), o, column_shares, grad_matrix.reshape(-1), tuple(plan))
            return filters_of(grad_matrix[:kh * kw * c], c, kh, kw)
        plan = work.block_plan(n, h, w, c, o, kh, kw, *stride, *padding, *out_size, padded, threads, *blocks)
        partials = np.zeros((plan.shares.size - 1, o * padded), np.float32)
        _weight_grad_tiles(xs.reshape(-1), h, w, c, kh, kw, *stride, *padding, *out_size, grad_rows.reshape(-1),
                           o, partials, tuple(plan))
    width = kh * kw * c
    grad_matrix = np.empty((width, o), np.float32)
    _sum_partials(partials, o, width, grad_matrix.reshape(-1), min(-(-width // 16), threads))
    return filters_of(grad_matrix, c, kh, kw)
