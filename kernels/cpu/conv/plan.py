"""A convolution's plan: which algorithm runs each of its three passes, chosen in one place.

Every CPU convolution asks `plan_for(...)` before it computes anything, and does what the plan says.  The
plan depends on the layer's geometry, its dtype, the number of threads and the tuning table in force
(tuning.py), and on nothing else; it is computed once per layer shape and cached.  Print one with
`print(plan_for(...))`, or every convolution of a network with `python -m benchmarks.plan googlenet`.

The algorithms, by pass:

| pass | algorithm | what runs |
| --- | --- | --- |
| forward | `winograd` | F(m x m, r x r) minimal filtering (winograd.py): float32 3x3 and 5x5, stride 1 |
| forward | `tiles` | 12 column rows at a time, in cache, into minigrad's GEMM (tiles.py): float32, outputs whole vectors |
| forward | `pointwise` | a 1x1 layer (stride 1, no padding): the pixel rows are the column matrix, one GEMM |
| forward | `im2col` | column rows a chunk at a time (columns.py) and a GEMM (minigrad's or OpenBLAS's) |
| input gradient | `winograd`, `tiles` | at stride 1: the output gradient convolved with the filters flipped |
| input gradient | `pointwise` | one GEMM with the filters' transpose |
| input gradient | `col2im` | a GEMM with the filters' transpose, then col2im, a chunk at a time |
| weight gradient | `winograd` | dU = sum of V^T M over the tiles, then G^T dU G (winograd.py) |
| weight gradient | `tiles` | column rows built a block at a time in cache, tasks split pixels or columns (weight_grad.py) |
| weight gradient | `pointwise` | the same for a 1x1 layer, from its pixel rows (in tiles, or OpenBLAS's GEMM) |
| weight gradient | `im2col` | columns (kept from the forward, or rebuilt a chunk at a time) and OpenBLAS's GEMM |
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np
from numba import get_num_threads

from ...geometry import conv_out_size
from .. import gemm, tuning


@dataclasses.dataclass(frozen=True)
class Step:
    """One pass of a convolution: its algorithm and what it needs besides the layer's geometry."""

    algorithm: str                  # see the module's table
    gemm: str = ""                  # "minigrad" or "OpenBLAS": the GEMM of a product outside the tiles
    winograd: tuple = ()            # (m, r) of F(m x m, r x r)
    one_pass: bool = False          # Winograd: all of the batch's tiles in one pass, the threads splitting the channels
    channels: int = 0               # the channels computed, where padded to whole vectors (the extra ones dropped)
    split: str = ""                 # a weight gradient in tiles: the tasks split the "pixels" or the "columns"
    columns: str = ""               # im2col weight gradient: "kept" from the forward, or "rebuilt"

    def label(self):
        """A short form for tables: 'winograd F(4,3) one pass', 'tiles as 32', 'im2col OpenBLAS kept', ..."""
        words = [self.algorithm + (f" F({self.winograd[0]},{self.winograd[1]})" if self.winograd else "")]
        words += [self.gemm if self.algorithm not in ("tiles", "winograd") and self.gemm else "",
                  "one pass" if self.one_pass else "", f"as {self.channels}" if self.channels else "",
                  f"by {self.split}" if self.split else "", self.columns]
        return " ".join(w for w in words if w)

    def __str__(self):
        parts = {"winograd": f"winograd F({self.winograd[0]}x{self.winograd[0]}, {self.winograd[1]}x{self.winograd[1]})"
                 if self.winograd else "winograd"}.get(self.algorithm, self.algorithm)
        details = [f"{self.gemm}'s GEMM" if self.gemm else "", "one pass" if self.one_pass else "",
                   f"as {self.channels} channels" if self.channels else "",
                   f"tasks split the {self.split}" if self.split else "", f"columns {self.columns}" if self.columns else ""]
        details = [d for d in details if d]
        return parts + (f" ({', '.join(details)})" if details else "")


@dataclasses.dataclass(frozen=True)
class ConvPlan:
    """The plan of one layer shape: x (N, C, H, W), weight (O, C, KH, KW), stride and padding pairs."""

    x_shape: tuple
    weight_shape: tuple
    stride: tuple
    padding: tuple
    dtype: str
    threads: int
    family: str                     # the tuning table's CPU family
    forward: Step
    input_grad: Step
    weight_grad: Step
    keep_columns: bool              # the forward keeps its columns for the backward (when one follows)

    @property
    def out_size(self):
        return tuple(conv_out_size(self.x_shape[2 + d], self.weight_shape[2 + d], self.stride[d], self.padding[d])
                     for d in range(2))

    def __str__(self):
        o, c, kh, kw = self.weight_shape
        return (f"conv {c}->{o} {kh}x{kw}/{self.stride[0]} pad {self.padding[0]} on {self.x_shape} {self.dtype}, "
                f"{self.threads} threads, {self.family} tuning\n  forward:         {self.forward}"
                + (", columns kept for the backward" if self.keep_columns else "")
                + f"\n  input gradient:  {self.input_grad}\n  weight gradient: {self.weight_grad}")


def winograd_enabled():
    """Whether Winograd's algorithm may run, from MINIGRAD_WINOGRAD: '1' (the default) or '0' (every layer then
    computes its products directly, with a direct product's rounding).  Read at each call."""
    value = os.environ.get("MINIGRAD_WINOGRAD", "1")
    if value not in ("0", "1"):
        raise ValueError(f"MINIGRAD_WINOGRAD={value!r}: expected '1' (Winograd where it was measured faster, "
                         "the default) or '0' (never)")
    return value == "1"


def plan_for(dtype, x_shape, weight_shape, stride, padding, threads=None):
    """The plan of a convolution of an (N, C, H, W) input of `dtype` by (O, C, KH, KW) filters."""
    return _plan(np.dtype(dtype).str, tuple(x_shape), tuple(weight_shape), tuple(stride), tuple(padding),
                 threads or get_num_threads(), winograd_enabled(), tuning.current())


def is_pointwise(kernel_size, stride, padding):
    """A 1x1 layer with stride 1 and no padding: its pixel rows are its column matrix."""
    return tuple(kernel_size) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


def whole_vectors(n):
    """n rounded up to whole vectors, where that adds at most half again (24 -> 32, not 8 -> 16): the
    channels a kernel that takes only whole vectors computes, the extra ones on zero filters and dropped;
    None where it would add more (only 24 -> 32 was measured)."""
    wide = -(-n // gemm.LANES) * gemm.LANES
    return wide if 2 * wide <= 3 * n else None


def _own_gemm(float32, rows, k, n, t, any_rows=False):
    """Whether a (rows, k) @ (k, n) product runs in minigrad's GEMM: shapes it takes (float32, n whole
    vectors, a tile of rows), and a thin side or many rows (t: the tuning), or any_rows."""
    takes = float32 and k >= 1 and n % gemm.LANES == 0 and rows >= gemm.TILE_ROWS
    return takes and (any_rows or min(k, n) <= t.own_gemm_max_thin or rows >= t.own_gemm_min_rows_wide)


def _gemm_name(own):
    return "minigrad" if own else "OpenBLAS"


def _winograd_size(float32, o, c, kh, kw, stride, padding, n, out_size, t, weight_grad=False):
    """(m, r) of the F(m x m, r x r) that runs a layer of batch n and output size out_size (tuning.py has the
    measurements), or None."""
    if (not float32 or kh != kw or kh not in (3, 5) or tuple(stride) != (1, 1) or max(padding) > kh - 1
            or min(padding) < 0 or c % gemm.LANES or o % gemm.LANES):
        return None
    side = min(out_size)
    if kh == 3:
        small = (t.winograd_3x3_small_tiles_from <= side < t.winograd_3x3_small_tiles_to
                 or _tiles_of(4, n, *out_size) < t.winograd_4x4_min_tiles)
        return (2 if small else 4), 3
    if side < t.winograd_5x5_min_side or (weight_grad and c < t.winograd_5x5_weight_grad_min_channels):
        return None
    return 2, 5


def _runs_in_tiles(float32, o, width, t):
    """A (non-1x1) convolution with o outputs and column rows `width` long, in tiles: float32, o whole vectors,
    its filters within the tuning's size."""
    return float32 and o % gemm.LANES == 0 and o * width * 4 <= t.tile_weight_bytes


def _tiles_of(m, n, h, w):
    return n * -(-h // m) * -(-w // m)


@functools.lru_cache(maxsize=512)
def _plan(dtype, x_shape, weight_shape, stride, padding, threads, winograd, t):
    n, c, h, w = x_shape
    o, _, kh, kw = weight_shape
    itemsize = np.dtype(dtype).itemsize
    float32 = np.dtype(dtype) == np.float32
    oh, ow = (conv_out_size(s, k, st, p) for s, k, st, p in zip((h, w), (kh, kw), stride, padding))
    width, pixels = kh * kw * c, n * oh * ow
    size = _winograd_size(float32, o, c, kh, kw, stride, padding, n, (oh, ow), t) if winograd else None
    weight_size = (_winograd_size(float32, o, c, kh, kw, stride, padding, n, (oh, ow), t, weight_grad=True)
                   if winograd else None)
    one_pass = t.winograd_one_pass_max_tiles
    # the weight gradient first: whether it runs in tiles decides whether the forward keeps its columns
    pointwise = is_pointwise((kh, kw), stride, padding)
    weight_tiles = float32 and o % 8 == 0 and (not pointwise or c % gemm.LANES == 0)
    if weight_size:
        weight_grad = Step("winograd", winograd=weight_size, one_pass=_tiles_of(weight_size[0], n, oh, ow) <= one_pass)
    elif weight_tiles and pointwise:
        by_columns = pixels <= t.pointwise_column_split_pixels and c // gemm.LANES >= threads
        weight_grad = Step("pointwise", gemm="minigrad", split="columns" if by_columns else "pixels")
    elif weight_tiles:
        padded = -(-width // gemm.LANES) * gemm.LANES
        part = o * padded * 4                        # bytes of each task's sum when the tasks split the pixels
        by_columns = (o % gemm.LANES == 0 and padded // gemm.LANES >= threads > 1 and part >= t.column_split_min_bytes
                      and (pixels <= t.column_split_max_pixels or part > t.column_split_any_pixels_bytes))
        weight_grad = Step("tiles", gemm="minigrad", split="columns" if by_columns else "pixels")
    else:
        weight_grad = Step("pointwise" if pointwise else "im2col", gemm="OpenBLAS")
    keep = (not pointwise and not weight_tiles and pixels * width * itemsize <= t.keep_columns_bytes)
    if weight_grad.algorithm == "im2col":
        weight_grad = dataclasses.replace(weight_grad, columns="kept" if keep else "rebuilt")

    chunk_rows = min(pixels, max(-(-t.min_rows // ow) * ow, t.chunk_bytes // max(width * itemsize, 1) // ow * ow, ow))
    if size:
        forward = Step("winograd", winograd=size, one_pass=_tiles_of(size[0], n, oh, ow) <= one_pass)
    elif pointwise:
        wide = whole_vectors(o)
        columns = wide if wide and wide != o and t.pointwise_own_gemm and float32 else o
        any_rows = t.pointwise_own_gemm and float32 and columns % gemm.LANES == 0
        rows = min(pixels, max(t.min_rows, t.chunk_bytes // max(columns * itemsize, 1), 1))
        forward = Step("pointwise", gemm=_gemm_name(_own_gemm(float32, rows, c, columns, t, any_rows)),
                       channels=columns if columns != o else 0)
    elif _runs_in_tiles(float32, o, width, t):
        forward = Step("tiles", gemm="minigrad")
    else:
        rows = pixels if keep else chunk_rows
        forward = Step("im2col", gemm=_gemm_name(_own_gemm(float32, rows, width, o, t)))

    wide = whole_vectors(c)
    if pointwise:
        any_rows = t.pointwise_own_gemm and float32 and c % gemm.LANES == 0
        input_grad = Step("pointwise", gemm=_gemm_name(_own_gemm(float32, pixels, o, c, t, any_rows)))
    elif size:
        input_grad = Step("winograd", winograd=size, one_pass=_tiles_of(size[0], n, h, w) <= one_pass)
    elif (tuple(stride) == (1, 1) and padding[0] <= kh - 1 and padding[1] <= kw - 1 and wide is not None
          and _runs_in_tiles(float32, wide, kh * kw * o, t)):
        input_grad = Step("tiles", gemm="minigrad", channels=wide if wide != c else 0)
    else:
        input_grad = Step("col2im", gemm=_gemm_name(_own_gemm(float32, chunk_rows, o, width, t)))
    return ConvPlan(x_shape, weight_shape, stride, padding, np.dtype(dtype).name, threads, t.family,
                    forward, input_grad, weight_grad, keep and forward.algorithm == "im2col")
