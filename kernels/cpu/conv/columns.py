"""im2col and col2im, channels-last: every output pixel's window as one row of the column matrix.

Every output pixel is one row of the column matrix, its columns ordered (kernel row i, kernel column j,
channel c):
    cols[(b, oy, ox), (i, j, c)] = x[b, oy*SH - PH + i, ox*SW - PW + j, c]        (0 in the padding)
so for one kernel row i, the valid kernel columns j read one contiguous run of the input: a single copy
of (j1 - j0) * C values.  With the filters as their product's matrix B (KH*KW*C, O) (rows.filter_matrix),
    y (N*OH*OW, O) = cols @ B
is exactly the channels-last output.  The columns are built a chunk of output rows at a time (`chunks`:
a few MB, still in cache for the GEMM that reads them).  col2im is the transpose: it adds each column
entry back onto the pixel it came from.
"""

from __future__ import annotations

from numba import prange

from .._jit import kernel


@kernel(inline=True)
def column_row(x, h, w, c, kh, kw, sh, sw, ph, pw, b, oy, ox, cols, row):
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
def column_range(x, h, w, c, kh, kw, sh, sw, ph, pw, b, oy, ox, lo, hi, cols, row):
    """Columns [lo, hi) of output pixel (b, oy, ox)'s column row, into cols[row:row + hi - lo]: the
    weight gradient's tasks split the columns (weight_grad._weight_grad_columns).  column_row's copy with the
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
def im2col_rows(x, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, u0, u1, cols):
    """cols rows for the output rows u = b*OH + oy in [u0, u1); x and cols flat.  One task per output row."""
    width = kh * kw * c
    for t in prange(u1 - u0):
        b, oy = (u0 + t) // oh, (u0 + t) % oh
        for ox in range(ow):
            column_row(x, h, w, c, kh, kw, sh, sw, ph, pw, b, oy, ox, cols, (t * ow + ox) * width)


@kernel(parallel=True)
def col2im_rows(cols, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, u0, u1, dx):
    """The transpose of im2col_rows for output rows [u0, u1): adds each column entry onto the pixel it
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


def chunks(units, bytes_per_unit, chunk_bytes, min_rows, rows_per_unit=1):
    """[start, stop) ranges of `units` (output rows, or pixels) of about chunk_bytes each, and at least
    min_rows rows (of rows_per_unit rows a unit) each (tuning.py's chunk_bytes and min_rows)."""
    step = max(-(-min_rows // rows_per_unit), chunk_bytes // max(bytes_per_unit, 1), 1)
    step = min(units, step)
    return [(start, min(units, start + step)) for start in range(0, units, step)]
