"""The work planner: which pixels each task of a tiled kernel takes, in which order, and which columns.

Near the edges a window misses some taps (at 7x7 with a 3x3 kernel and padding 1, 18% of all taps lie in
the padding, 31% with a 5x5 and padding 2).  The planner sorts the pixels by which taps their windows take
(classes of windows), cuts them into groups of one class (tiles of 12 pixels for a forward, blocks of a
couple of hundred for a weight gradient), gives each group the runs of columns that are not padding for
every one of its pixels (the tiles skip the rest), and splits the groups between the tasks by their work.
A plan is computed once per geometry (a sort over the pixels) and reused every step.
"""

from __future__ import annotations

import collections
import functools

import numpy as np

from .. import gemm


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


# How tiles._conv_tiles and weight_grad._weight_grad_tiles split their pixels: `order` (pixel indices
# b*OH*OW + oy*OW + ox) into groups (group s: order[starts[s]:starts[s + 1]]); each group's runs of columns,
# runs[box_runs[box]:box_runs[box + 1]] with box = group_box[s] ((start, stop) rows, none if all its
# windows lie in the padding); each task's groups, shares[task] to shares[task + 1]; and how many groups,
# the first ones, are direct tiles (tile_plan; 0 in other plans).
WorkPlan = collections.namedtuple("WorkPlan", "order starts group_box box_runs runs shares direct")


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


def _work(taps, o, kh, kw, build_cost, built=True):
    """A task's work per pixel, in multiply-adds of one tap by one output channel: its taps' product and
    about one tap's more (starting runs, finishing the row), plus building its column row (every tap, zeros
    included: build_cost output channels' worth per tap, tuning.py)."""
    return (taps + 1) * o + build_cost * kh * kw * built


def _group_plan(order, bounds, starts, kh, kw, c, o, align, limit, tasks, build_cost, shares=None, direct=0):
    """The WorkPlan of the groups starting at `starts`: each takes its pixels' taps' bounding box (the taps
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
        work = np.cumsum(rows * _work(_taps(boxes.T), o, kh, kw, build_cost, np.arange(starts.size) >= direct))
        shares = np.searchsorted(work, work[-1] * np.arange(tasks + 1) / tasks, side="right")
        shares[0], shares[-1] = 0, starts.size
    as_index = functools.partial(np.ascontiguousarray, dtype=np.intp)
    return WorkPlan(as_index(order), as_index(np.append(starts, order.size)), as_index(group_box.reshape(-1)),
                    as_index(box_runs), as_index(np.array(runs).reshape(-1, 2)), as_index(shares), direct)


@functools.lru_cache(maxsize=64)
def tile_plan(n, h, w, c, o, kh, kw, sh, sw, ph, pw, oh, ow, tasks, build_cost):
    """tiles._conv_tiles's plan: tiles of 12 pixels, in class order (so most tiles hold windows of one
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
                       1, kh * kw * c, tasks, build_cost, direct=int(in_direct.sum()) // gemm.TILE_ROWS)


@functools.lru_cache(maxsize=64)
def block_plan(n, h, w, c, o, kh, kw, sh, sw, ph, pw, oh, ow, padded, tasks, block_rows, min_rows, build_cost):
    """weight_grad._weight_grad_tiles's plan: blocks of at most block_rows pixels of one class (a class
    split into blocks of near-equal size), runs of columns rounded out to 16 within `padded`."""
    order, key, bounds = _pixel_classes(n, h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    # first the tasks' shares of the pixels, even in work (_work); then each share's blocks
    work = np.cumsum(_work(_taps(bounds), o, kh, kw, build_cost))
    task_starts = np.searchsorted(work, work[-1] * np.arange(tasks) / tasks, side="right").tolist()
    cuts = sorted(set(np.flatnonzero(np.diff(key, prepend=-1)).tolist()) | set(task_starts)) + [order.size]
    starts, block = [], 0              # the open block: pixels from `block` on
    for start, stop in zip(cuts[:-1], cuts[1:]):
        if start - block >= min_rows or (start in task_starts and start > block):
            starts.append(block)
            block = start
        pieces = -(-(stop - block) // block_rows)
        size = -(-(stop - block) // pieces)
        starts += range(block, block + (pieces - 1) * size, size)
        block += (pieces - 1) * size
    starts.append(block)
    shares = np.searchsorted(starts, task_starts + [order.size])
    return _group_plan(order, bounds, np.array(starts), kh, kw, c, o, gemm.LANES, padded, tasks, build_cost, shares)
