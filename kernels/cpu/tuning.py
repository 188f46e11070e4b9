"""Tuned values of the CPU kernels, one table per CPU family: every threshold a convolution's plan reads.

The convolution's choice of algorithm for a layer (kernels/cpu/conv/plan.py) reads nothing but the layer's
geometry and these values.  Each value says what was measured to choose it (docs/performance.md has the
history).  Three machines have measured them: an Intel Xeon (emeraldrapids, AVX-512, 2 MB of L2 a core), an
AMD EPYC Zen 4 (AVX-512, 1 MB of L2) and an AMD EPYC Zen 3 (AVX2 only, 512 KB of L2).  Four values differ
between the Intel and the Zen 4; the Zen 3 takes the Zen 4's and compiles its GEMM tiles one vector wide
(AVX2 has half the registers' width).  A Zen 4 or later (znver4, znver5) gets the Zen table, an earlier Zen
the Zen 3's, any other CPU the Intel's: on a CPU of another family the rules hold unmeasured (`python -m
benchmarks.plan` prints which table is in force).

`split_two_vector_tiles` and `one_vector_tiles` shape compiled code (gemm.py reads them once, when its kernels
compile, and Numba's cache keys on the CPU), so they always follow the CPU at hand.  The others are read at
each call: `use()` swaps the table for a block of code (tests, experiments).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math

from llvmlite import binding
from numba import config


@dataclasses.dataclass(frozen=True)
class Tuning:
    family: str                         # the CPU family the table is for
    measured_on: str                    # the machine its per-family values were measured on

    # ---- which GEMM computes a product outside the tiles (gemm.py or OpenBLAS) ----------------------
    # A product with a thin side (k or n at most 64: a forward with few output channels or a short column
    # row, an input gradient of few output channels) runs in minigrad's GEMM, where OpenBLAS is at its
    # slowest: 1.04-1.50x faster at every such shape of GoogLeNet, batch 8.  Wider products are mixed on the
    # Intel (0.76-1.19x) and stay with OpenBLAS there.
    own_gemm_max_thin: int = 64
    # On the Zen, wider products too, given enough rows: 1.00-1.22x OpenBLAS's speed at 1568-6272 rows,
    # 0.88-0.96x at 392 (5a and 5b); modules 3a-4d 1.02-1.06x faster.
    own_gemm_min_rows_wide: float = math.inf
    # On the Zen a 1x1 layer's products run in minigrad's GEMM at any number of rows (the forward reads its
    # weights in place: 0.92-0.97x OpenBLAS's time at 7x7, batch 8); 24 output channels then run as 32
    # (4b and 4c's 5x5 reductions: 0.26 ms against 0.53 in OpenBLAS, whose threads hand the cores to Numba's
    # for the bias pass and back).
    pointwise_own_gemm: bool = False
    # LLVM schedules the 12x2 GEMM tile for the Zen with its 24 sums spilled to the stack (72-90 GFLOP/s);
    # as two 6x2 tiles 221-229.  On the Intel the 12x2 tile stays in registers: 209 against 121 in 6-row
    # tiles.  Compiled in (see above).
    split_two_vector_tiles: bool = False
    # Without AVX-512 a tile of two or more 16-float vectors keeps its sums on the stack (each vector takes
    # two of the 16 AVX2 registers): one-vector tiles instead.  On the Zen 3, n = 64, k = 147 (the stem's
    # product): 84-89 GFLOP/s in tiles of 4-6 rows by one vector, 51 in 6x2 tiles, 37 in 6x4.  Compiled in.
    one_vector_tiles: bool = False

    # ---- convolutions in tiles (tiles.py) --------------------------------------------------------------
    # A float32 layer whose outputs are whole vectors runs in tiles while its filters fit beside the rest
    # in the core's cache: on the Intel 1.02-1.42x faster with filters up to 885 KB, 0.87-1.03x with
    # 1.8-2.6 MB; on the Zen (1 MB of L2, a fast L3) every such layer: modules 4c-5b 0.99-1.14x faster.
    tile_weight_bytes: float = 2**20
    # A task's share of a layer is balanced by work: its taps' multiply-adds per output channel, plus about 8
    # output channels' worth per tap for building the column row (the 5x5 16->32 forward: 0.17 ms whatever
    # the outputs, plus 0.33 per 16 of them).  By taps alone, thin layers' tasks were unbalanced: 5x5
    # 16->32 and 16->48 0.95-0.99x the time with it.
    build_cost: int = 8

    # ---- im2col and a GEMM (columns.py) ----------------------------------------------------------------
    # Columns are built this many bytes at a time, small enough to stay in cache for the GEMM that reads
    # them...
    chunk_bytes: int = 4 * 2**20
    # ...but never fewer rows per GEMM than this: a naive module's 5x5 over thousands of channels has rows of
    # 66,000 columns, and 4 MB would be a 14-row GEMM (naive GoogLeNet 2.9x slower than whole images).
    min_rows: int = 256
    # Columns up to this size are kept from the forward for the backward where the weight gradient does not
    # run in tiles (float64; outputs not a multiple of 8): the 5x5 16->32's backward (10 MB of columns)
    # 13-17% faster; with 32 MiB, inception 3b (20 and 29 MB kept) 5-13% slower.
    keep_columns_bytes: int = 16 * 2**20
    # An (O, width) weight gradient with few outputs is computed as its transpose, so that OpenBLAS's threads
    # split the width: O <= 32 1.00-1.74x faster; wider layers mixed, 0.92-1.19x.
    swap_weight_grad_max_o: int = 32

    # ---- weight gradients in tiles (weight_grad.py) -----------------------------------------------------
    # Pixel rows per block: enough that a tile's sums, loaded and stored once a block, are a small part of
    # its work, few enough that a block's column rows (up to 1.3 MB for 5b's 3x3) stay near the core;
    # 128-256 measured alike.  A block holds one class of windows, or small classes together (fewer than
    # weight_grad_min_rows pixels: their sums' loads and stores would outweigh the work).
    weight_grad_block_rows: int = 192
    weight_grad_min_rows: int = 32
    # A 1x1 layer's weight gradient with at most this many pixels splits its columns between the tasks,
    # not its pixels: at 7x7 0.94-0.96x the time; everywhere, 14x14 1.05-1.2x and 28x28 1.2-1.8x.
    pointwise_column_split_pixels: int = 1024
    # A kxk weight gradient whose per-task sums outgrow the core's cache, or with few pixels, splits its
    # columns between the tasks: batch 8, 7x7 0.64-0.78x the time, 14x14 with sums of 400 KB or more
    # 0.80-0.97x; batch 32, 7x7 0.83-0.93x.  Not below 256 KB (1.02-1.23x) nor with many pixels and sums
    # under 1 MB (28x28 and 56x56: 0.98-1.04x).  Measured on the Zen only.
    column_split_min_bytes: int = 2**18
    column_split_max_pixels: int = 2048
    column_split_any_pixels_bytes: int = 2**20

    # ---- Winograd (winograd.py) ------------------------------------------------------------------------
    # Each layer of GoogLeNet against the tiles, batch 8, forward / backward: F(4x4, 3x3) at 28x28 and 56x56
    # 0.35-0.41x / 0.40-0.54x, at 7x7 0.61-0.77x / 0.71-0.84x; F(2x2, 3x3) at 14x14 0.56-0.61x / 0.60-0.71x
    # (whole modules: F(4x4, 3x3) at 14x14 0.99-1.04x of F(2x2, 3x3)'s time, its 36 transformed patches and
    # products no longer fit the 1 MB cache beside each other).  F(2x2, 5x5) from 14x14 0.50-0.79x /
    # 0.63-0.88x, but 1.1-1.5x for the weight gradient of 16 input channels and 1.0-1.45x at 7x7.
    winograd_3x3_small_tiles_from: int = 14      # output sides [from, to): F(2x2, 3x3); elsewhere F(4x4, 3x3), unless
                                                 # it has fewer tiles than winograd_4x4_min_tiles (below)
    winograd_3x3_small_tiles_to: int = 28
    # F(4x4, 3x3) on fewer tiles than this runs as F(2x2, 3x3): each of its 36 products has a tile's rows,
    # 12, the 4 tiles of a 7x7 image filling a third of them.  At 7x7, 192->384 and 160->320, forward:
    # batch 1 (4 tiles) 0.71x the time, batch 2 (8) 0.87-0.91x, batch 4 (16) 1.04-1.09x.
    winograd_4x4_min_tiles: int = 12
    winograd_5x5_min_side: int = 14
    winograd_5x5_weight_grad_min_channels: int = 32
    # Up to this many tiles a layer runs in one pass, its threads splitting the output channels: F(4x4, 3x3)
    # at 7x7, batch 8 (32 tiles), 0.71-0.75x the time of blocks of tiles; batch 32 (128) 0.94-0.97x; 256
    # tiles 0.97-1.00x; 392 tiles (14x14, batch 8) 1.01-1.07x.
    winograd_one_pass_max_tiles: int = 128

    def __hash__(self):
        return self._hash

    @functools.cached_property
    def _hash(self):
        """Every convolution looks its plan up by this table (plan.py), twice a layer a step: hashing 30
        values each time cost more than the rest of the lookup."""
        return hash(tuple(getattr(self, field.name) for field in dataclasses.fields(self)))


_ZEN4 = Tuning("zen", "AMD EPYC (Zen 4), 2 cores", own_gemm_min_rows_wide=1024, pointwise_own_gemm=True,
               split_two_vector_tiles=True, tile_weight_bytes=math.inf)
FAMILIES = {
    "intel": Tuning("intel", "Intel Xeon (emeraldrapids), 2 cores"),
    "zen": _ZEN4,
    # The Zen 3 (AVX2 only): the Zen 4's table with one-vector GEMM tiles.  Its products then run at 84-89
    # GFLOP/s (n = 64, k = 147) against 37-51 in the AVX-512 tiles and 55 in OpenBLAS, and the Zen 4's
    # routing to minigrad's GEMM pays here too: against the Intel's routing, GoogLeNet's forward at batch 1
    # and 8 0.85-0.90x the time and its batch-8 step 0.90x with NumPy imported first (OpenBLAS then on one
    # thread), 0.96-0.98x with minigrad first (five rounds alternating the tables in one process).
    "zen-avx2": dataclasses.replace(_ZEN4, family="zen-avx2", measured_on="AMD EPYC (Zen 3), 2 cores",
                                    one_vector_tiles=True),
}


def cpu_name() -> str:
    """The CPU LLVM compiles for (NUMBA_CPU_NAME if set, else the host's): 'znver3', 'sapphirerapids', ..."""
    return config.CPU_NAME or binding.get_host_cpu_name()


def family_of(name: str) -> str:
    """The table for a CPU of LLVM's name: Zen 4 and later have AVX-512, Zen 1 to 3 only AVX2."""
    if not name.startswith("znver"):
        return "intel"
    generation = name.removeprefix("znver")
    return "zen" if generation.isdigit() and int(generation) >= 4 else "zen-avx2"


HOST = FAMILIES[family_of(cpu_name())]
_current = HOST


def current() -> Tuning:
    """The table in force (HOST unless inside use())."""
    return _current


@contextlib.contextmanager
def use(tuning: Tuning | None = None, **values):
    """Run a block with another table, or with some values of the current one changed:
    `with tuning.use(keep_columns_bytes=0): ...`.  Plans are cached per table, so nothing else changes."""
    global _current
    previous = _current
    _current = dataclasses.replace(tuning or _current, **values)
    try:
        yield _current
    finally:
        _current = previous
