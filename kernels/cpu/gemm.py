"""A float32 GEMM of our own, for the thin products of a convolution where OpenBLAS is weakest.

    C (m, n) = A (m, k) @ B (k, n)

Many of a convolution's products are thin: a layer's forward with 16 to 64 output channels is a
product with n = 16 to 64, and its input gradient one with k = 16 to 64.  OpenBLAS is at its slowest
on such shapes here (BENCHMARKS.md).

This kernel computes C in tiles of 12 rows by up to 64 columns.  A tile keeps all its sums in 512-bit
registers (16 floats each) through the whole k loop.  Per step of k it loads one row of B's panel
(1-4 vectors) and broadcasts one number from each of A's rows to a vector; then one fused multiply-add
per (row, vector).  B is read where it lies when it is row-major (a convolution's filters are stored
so); any other B is packed first, panel by panel, so that a tile reads its panel in order.

Numba's own loops don't compile to this (measured: 3-144 GFLOP/s, BENCHMARKS.md):
- LLVM prefers 256-bit vectors on this CPU;
- it keeps such sums in registers only for some loop shapes.
So the tile's k loop is written directly in LLVM IR with <16 x float> vectors (`_tile`, a Numba
intrinsic), and a Numba kernel runs the tiles in parallel.  On a CPU without 512-bit vectors LLVM
splits each vector op into two 256-bit ones, and a tile of several vectors no longer fits the 16
registers: there the tiles are one vector wide (tuning.py's one_vector_tiles).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import get_num_threads, prange, types
from numba.extending import intrinsic

from . import tuning
from ._jit import kernel

LANES = 16                       # float32 values in a 512-bit vector
TILE_ROWS = 12                   # rows of C per task
PANEL = 4 * LANES                # columns of C per tile at most: 4 vectors
_F32 = ir.FloatType()
_VECTOR = ir.VectorType(_F32, LANES)
_I32, _I64 = ir.IntType(32), ir.IntType(64)


def _fma(builder):
    name = "llvm.fma.v16f32"
    module = builder.module
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, ir.FunctionType(_VECTOR, [_VECTOR] * 3), name)


def _tile(rows, vectors, accumulate=False):
    """An intrinsic: C[i, :16*vectors] = sum over kk < k of A[i, kk] * B[kk, :16*vectors] for `rows` rows
    (with accumulate, C[i, ...] += that sum).  Arguments a, a0, a_row, a_k, b, b0, ldb, c, c0, ldc, k
    (k >= 1), flat arrays and offsets in elements: A[i, kk] = a[a0 + i*a_row + kk*a_k] (a_row = k, a_k = 1
    for a row-major A; 1 and m for A stored transposed), B[kk, j] = b[b0 + kk*ldb + j], C[i, j] =
    c[c0 + i*ldc + j]."""

    @intrinsic
    def tile(typingctx, a, a0, a_row, a_k, b, b0, ldb, c, c0, ldc, k):
        signature = types.void(a, types.intp, types.intp, types.intp, b, types.intp, types.intp, c, types.intp,
                               types.intp, types.intp)

        def codegen(context, builder, sig, args):
            a, a0, a_row, a_k, b, b0, ldb, c, c0, ldc, k = args
            pa, pb, pc = (context.make_array(t)(context, builder, v).data
                          for t, v in ((sig.args[0], a), (sig.args[4], b), (sig.args[7], c)))
            fma, pointer = _fma(builder), _VECTOR.as_pointer()
            broadcast = ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
            c_vectors = [builder.bitcast(builder.gep(pc, [builder.add(builder.add(c0, builder.mul(ir.Constant(_I64, r), ldc)),
                                                                      ir.Constant(_I64, LANES * v))]), pointer)
                         for r in range(rows) for v in range(vectors)]
            start = ([builder.load(p, align=4) for p in c_vectors] if accumulate
                     else [ir.Constant(_VECTOR, None)] * (rows * vectors))            # zeros
            entry = builder.basic_block
            loop, done = builder.append_basic_block("tile_k"), builder.append_basic_block("tile_store")
            builder.branch(loop)
            builder.position_at_end(loop)
            kk = builder.phi(_I64)
            kk.add_incoming(ir.Constant(_I64, 0), entry)
            sums = []
            for value in start:
                s = builder.phi(_VECTOR)
                s.add_incoming(value, entry)
                sums.append(s)
            b_row = builder.gep(pb, [builder.add(b0, builder.mul(kk, ldb))])
            b_vectors = [builder.load(builder.bitcast(builder.gep(b_row, [ir.Constant(_I64, LANES * v)]), pointer),
                                      align=4) for v in range(vectors)]
            a_column = builder.add(a0, builder.mul(kk, a_k))
            new = []
            for r in range(rows):
                value = builder.load(builder.gep(pa, [builder.add(a_column, builder.mul(ir.Constant(_I64, r), a_row))]))
                splat = builder.shuffle_vector(builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), value,
                                                                      ir.Constant(_I32, 0)),
                                               ir.Constant(_VECTOR, ir.Undefined), broadcast)
                new.extend(builder.call(fma, [splat, b_vectors[v], sums[r * vectors + v]]) for v in range(vectors))
            next_k = builder.add(kk, ir.Constant(_I64, 1))
            kk.add_incoming(next_k, loop)
            for s, n in zip(sums, new):
                s.add_incoming(n, loop)
            builder.cbranch(builder.icmp_signed("<", next_k, k), loop, done)
            builder.position_at_end(done)
            for value, p in zip(new, c_vectors):
                builder.store(value, p, align=4)
            return context.get_dummy_value()
        return signature, codegen
    return tile


# The tile sizes: 32 vector registers hold a tile's sums, B's row and a broadcast.  Measured at 6272 rows
# (GFLOP/s, one run): a 32-wide panel in 12-row tiles 209 (in 6-row tiles 121); 48 wide in 6-row tiles
# 223 (8 rows: 160); 16 wide in 6-row tiles 101 (12 rows: 82); 64 wide in 6-row tiles 142 (4 rows: 139).
_tile_12x2 = _tile(12, 2)
_tile_6x1 = _tile(6, 1)
_tile_6x3 = _tile(6, 3)
_tile_6x4 = _tile(6, 4)
_tile_6x2 = _tile(6, 2)
# The same tiles adding into C: a convolution's product over a few runs of k (conv.py skips the kernel
# taps that fall in the padding, and the taps left can be several runs).
_tile_12x2_add = _tile(12, 2, accumulate=True)
_tile_6x1_add = _tile(6, 1, accumulate=True)
_tile_6x3_add = _tile(6, 3, accumulate=True)
_tile_6x4_add = _tile(6, 4, accumulate=True)
_tile_6x2_add = _tile(6, 2, accumulate=True)
# LLVM schedules one tile differently for each CPU it compiles for.  For AMD's Zen it loads all 12 broadcasts
# of a 12x2 tile before their multiply-adds, and 24 sums + 2 vectors of B + 12 broadcasts exceed the 32
# registers: the sums spill to the stack; then two 6x2 tiles run instead (tuning.py has the figures).
_SPLIT_TWO_VECTOR_TILES = tuning.HOST.split_two_vector_tiles
# Without AVX-512 each 16-float vector takes two of the 16 256-bit registers, and every tile of two or more
# vectors keeps its sums on the stack; there a panel runs as one-vector tiles of 6 rows (12 registers of
# sums, the classic AVX2 shape), one 16-column strip after another.
_ONE_VECTOR_TILES = tuning.HOST.one_vector_tiles
# C (+)= A^T @ B runs its k loop over a block of rows at a time: 8 rows of C keep their sums in 16 or 8
# registers, so that a tile is any multiple of 8 rows by 16 columns.
_tile_8x2_add = _tile(8, 2, accumulate=True)
_tile_8x1_add = _tile(8, 1, accumulate=True)
_tile_8x2 = _tile(8, 2)
_tile_8x1 = _tile(8, 1)
_tile_4x1_add = _tile(4, 1, accumulate=True)
_tile_4x1 = _tile(4, 1)


@kernel(inline=True)
def _half_tiles(a, a0, lda, b, b0, ldb, c, c0, ldc, k, vectors, add):
    """Two 6-row tiles, rows 0-5 and 6-11, `vectors` wide (1 to 4); with add, adding into C."""
    for half in range(2):
        a_half, c_half = a0 + half * 6 * lda, c0 + half * 6 * ldc
        if vectors == 4 and add:
            _tile_6x4_add(a, a_half, lda, 1, b, b0, ldb, c, c_half, ldc, k)
        elif vectors == 4:
            _tile_6x4(a, a_half, lda, 1, b, b0, ldb, c, c_half, ldc, k)
        elif vectors == 3 and add:
            _tile_6x3_add(a, a_half, lda, 1, b, b0, ldb, c, c_half, ldc, k)
        elif vectors == 3:
            _tile_6x3(a, a_half, lda, 1, b, b0, ldb, c, c_half, ldc, k)
        elif vectors == 2 and add:
            _tile_6x2_add(a, a_half, lda, 1, b, b0, ldb, c, c_half, ldc, k)
        elif vectors == 2:
            _tile_6x2(a, a_half, lda, 1, b, b0, ldb, c, c_half, ldc, k)
        elif add:
            _tile_6x1_add(a, a_half, lda, 1, b, b0, ldb, c, c_half, ldc, k)
        else:
            _tile_6x1(a, a_half, lda, 1, b, b0, ldb, c, c_half, ldc, k)


@kernel(inline=True)
def _panel(a, a0, lda, b, b0, ldb, c, c0, ldc, k, vectors, add):
    """One 12-row tile of C against a `vectors`-wide panel of B (at b0, rows ldb apart), into C at c0
    (with add, adding into it), over k steps of A's rows (at a0, lda apart): in one tile of 12 rows for
    two vectors on the Intel, else in two of 6 (the tile sizes measured fastest); without AVX-512, strip
    by strip of one vector."""
    if _ONE_VECTOR_TILES:
        for v in range(vectors):
            _half_tiles(a, a0, lda, b, b0 + v * LANES, ldb, c, c0 + v * LANES, ldc, k, 1, add)
    elif vectors == 2 and not _SPLIT_TWO_VECTOR_TILES:
        if add:
            _tile_12x2_add(a, a0, lda, 1, b, b0, ldb, c, c0, ldc, k)
        else:
            _tile_12x2(a, a0, lda, 1, b, b0, ldb, c, c0, ldc, k)
    else:
        _half_tiles(a, a0, lda, b, b0, ldb, c, c0, ldc, k, vectors, add)


@kernel(inline=True)
def _panel_of_tile(a, a0, lda, b, packed, c, c0, ldc, n, k, k0, k1, add, j):
    """tile_product's columns j to j + 64 (or to n, the last panel's 16, 32 or 48), C's rows ldc apart."""
    wide = n // PANEL * PANEL
    width = PANEL if j < wide else n - wide
    b0, ldb = (j * k + k0 * width, width) if packed else (k0 * n + j, n)
    _panel(a, a0 + k0, lda, b, b0, ldb, c, c0 + j, ldc, k1 - k0, width // LANES, add)


@kernel(inline=True)
def tile_product(a, a0, lda, b, packed, c, c0, n, k, k0, k1, add):
    """One tile: C's 12 rows at c0 (rows n apart) = A's 12 rows at a0 (rows lda apart) @ B over the run
    [k0, k1) of k, i.e. A[:, k0:k1] @ B[k0:k1] (all of k: 0, k); with add, added into C.  B (k, n) is
    `b` flat: packed by pack_panels, or (not packed) as it is, row-major.  A's rows may overlap (lda < k:
    a direct convolution's windows of one image row, conv.py).  The tile runs along the row in panels of
    64 columns, then one of 16, 32 or 48."""
    for j in range(0, n, PANEL):
        _panel_of_tile(a, a0, lda, b, packed, c, c0, n, n, k, k0, k1, add, j)


@kernel(inline=True)
def add_transposed_product(a, a0, lda, m, b, b0, ldb, n, c, c0, ldc, k, add):
    """C (m, n) += A^T @ B (without add: C = A^T @ B), for A (k, m) at a0 and B (k, n) at b0, their rows
    lda and ldb apart, and C at c0, its rows ldc apart; m a multiple of 8, n of 16.  Column panels
    outermost: a panel of B (k rows by 32 columns) stays in cache while every 8-row tile of C reads it
    (k is a block of a few hundred rows, so that A's rows stay in cache too).  Without AVX-512: tiles of 4
    rows by 16 columns (8 registers of sums)."""
    if _ONE_VECTOR_TILES:
        for j in range(0, n, LANES):
            for i in range(0, m, 4):
                if add:
                    _tile_4x1_add(a, a0 + i, 1, lda, b, b0 + j, ldb, c, c0 + i * ldc + j, ldc, k)
                else:
                    _tile_4x1(a, a0 + i, 1, lda, b, b0 + j, ldb, c, c0 + i * ldc + j, ldc, k)
    else:
        wide = n // (2 * LANES) * (2 * LANES)
        for j in range(0, wide, 2 * LANES):
            for i in range(0, m, 8):
                if add:
                    _tile_8x2_add(a, a0 + i, 1, lda, b, b0 + j, ldb, c, c0 + i * ldc + j, ldc, k)
                else:
                    _tile_8x2(a, a0 + i, 1, lda, b, b0 + j, ldb, c, c0 + i * ldc + j, ldc, k)
        if n > wide:
            for i in range(0, m, 8):
                if add:
                    _tile_8x1_add(a, a0 + i, 1, lda, b, b0 + wide, ldb, c, c0 + i * ldc + wide, ldc, k)
                else:
                    _tile_8x1(a, a0 + i, 1, lda, b, b0 + wide, ldb, c, c0 + i * ldc + wide, ldc, k)


@kernel(inline=True)
def panel_product(a, a0, lda, b, b0, ldb, c, c0, ldc, k, width):
    """C's 12 rows at c0 (rows ldc apart) = A's 12 rows at a0 (rows lda apart) @ B (k, width), row-major
    at b0 (rows ldb apart); width 16, 32, 48 or 64."""
    _panel(a, a0, lda, b, b0, ldb, c, c0, ldc, k, width // LANES, False)


# A product of few row tiles (fewer than this many a thread) splits B's panels between the tasks too: at
# 49 rows (a 7x7 image), k = 832, n = 128-384, 0.81-0.98x the time of tasks taking whole rows of tiles, each
# thread then reading only its panels of B; at 196 rows 0.95-1.0x; at 784 rows 1.16x.
PANEL_SPLIT_TILES = 4


@kernel(inline=True)
def _tile_or_tail(a, b, packed, c, m, n, k, first, j0, j1):
    """C's tile of 12 rows from `first`, its columns j0 to j1 (whole panels).  The rows past the last full
    tile are copied into a zero-padded tile of their own (a row of C depends on its own row of A only)."""
    if m - first >= TILE_ROWS:
        for j in range(j0, j1, PANEL):
            _panel_of_tile(a, first * k, k, b, packed, c, first * n, n, n, k, 0, k, False, j)
    else:
        rows, width = m - first, j1 - j0
        a_tail = np.zeros(TILE_ROWS * k, a.dtype)
        c_tail = np.empty(TILE_ROWS * width, c.dtype)
        a_tail[:rows * k] = a[first * k:m * k]
        for j in range(j0, j1, PANEL):
            _panel_of_tile(a_tail, 0, k, b, packed, c_tail, -j0, width, n, k, 0, k, False, j)
        for r in range(rows):
            c[(first + r) * n + j0:(first + r) * n + j1] = c_tail[r * width:(r + 1) * width]


@kernel(parallel=True)
def _gemm_tiles(a, b, packed, c, m, n, k, by_panels):
    """C (m rows, n columns, a multiple of 16): one task per tile of 12 rows, or (by_panels) per tile and
    panel of 64 columns, the tasks of one panel side by side; B packed by pack_panels or (not packed)
    row-major."""
    tiles = -(-m // TILE_ROWS)
    if by_panels:
        panels = -(-n // PANEL)
        for task in prange(tiles * panels):
            j = task // tiles * PANEL
            _tile_or_tail(a, b, packed, c, m, n, k, task % tiles * TILE_ROWS, j, min(n, j + PANEL))
    else:
        for t in prange(tiles):
            _tile_or_tail(a, b, packed, c, m, n, k, t * TILE_ROWS, 0, n)


@intrinsic
def transpose_block(typingctx, src, s0, lds, dst, d0, ldd):
    """dst[d0 + r*ldd + q] = src[s0 + q*lds + r] for r, q < 16: a 16 by 16 block of float32 transposed in
    registers: its 16 rows loaded as vectors, then four rounds of shuffles, each swapping the off-diagonal
    halves of blocks of 8, 4, 2, then 1 row (a value and its mirror trade places), then 16 stores.
    Numba's loops move one value at a time here (measured: a scalar transpose of the 7x7 layers' filters
    0.3-0.6 ms, about a value a cycle)."""
    signature = types.void(src, types.intp, types.intp, dst, types.intp, types.intp)

    def codegen(context, builder, sig, args):
        src, s0, lds, dst, d0, ldd = args
        ps, pd = (context.make_array(t)(context, builder, v).data for t, v in ((sig.args[0], src), (sig.args[3], dst)))
        pointer = _VECTOR.as_pointer()
        rows = [builder.load(builder.bitcast(builder.gep(ps, [builder.add(s0, builder.mul(ir.Constant(_I64, q), lds))]),
                                             pointer), align=4) for q in range(LANES)]
        for half in (8, 4, 2, 1):
            # rows i and i + half (i's `half` bit clear): each keeps the columns whose `half` bit matches
            # its own and takes the others from its partner, shifted by `half`
            upper = ir.Constant(ir.VectorType(_I32, LANES), [c + LANES - half if c & half else c for c in range(LANES)])
            lower = ir.Constant(ir.VectorType(_I32, LANES), [c + LANES if c & half else c + half for c in range(LANES)])
            for i in range(LANES):
                if not i & half:
                    rows[i], rows[i + half] = (builder.shuffle_vector(rows[i], rows[i + half], upper),
                                               builder.shuffle_vector(rows[i], rows[i + half], lower))
        for r in range(LANES):
            builder.store(rows[r], builder.bitcast(builder.gep(pd, [builder.add(d0, builder.mul(ir.Constant(_I64, r), ldd))]),
                                                   pointer), align=4)
        return context.get_dummy_value()
    return signature, codegen


@kernel(inline=True)
def transpose_tile(src, s0, lds, dst, d0, ldd, rows, columns):
    """dst[d0 + r*ldd + q] = src[s0 + q*lds + r] for r < rows and q < columns (each at most 16):
    transpose_block for a whole block, value by value for one cut short by an edge."""
    if rows == LANES and columns == LANES:
        transpose_block(src, s0, lds, dst, d0, ldd)
    else:
        for r in range(rows):
            for q in range(columns):
                dst[d0 + r * ldd + q] = src[s0 + q * lds + r]


@kernel(inline=True)
def pack_transposed(bt, bt0, ldt, n, k, r0, rows, panels):
    """Rows [r0, r0 + rows) of B (k, n) into `panels`, in pack_panels' layout, from B's
    transpose: B[r0 + r, q] = bt[bt0 + q*ldt + r].  In blocks of 16 by 16 values (transpose_tile), 16
    whole rows of a panel at a time.  Measured on 5b's 3x3 (its input gradient's filters, 663K values):
    0.36 ms against 0.56-0.59 value by value (in order on either side), in a loop of packs."""
    wide = n // PANEL * PANEL
    for j in range(0, n, PANEL):
        width = PANEL if j < wide else n - wide
        dst = j * k + r0 * width                          # the panel's rows r0 on: `width` values each
        for r1 in range(0, rows, LANES):
            for q0 in range(j, j + width, LANES):
                transpose_tile(bt, bt0 + q0 * ldt + r1, ldt, panels, dst + r1 * width + q0 - j, width,
                               min(LANES, rows - r1), min(LANES, j + width - q0))


@kernel(parallel=True)
def _pack_from_transpose(bt, n, k, tasks, panels):
    """pack_panels of B (k, n) from its transpose bt (n, k), C-ordered, flat: the tasks split B's rows,
    16 at a time."""
    blocks = -(-k // LANES)
    for task in prange(tasks):
        r0, r1 = task * blocks // tasks * LANES, min(k, (task + 1) * blocks // tasks * LANES)
        pack_transposed(bt, r0, k, n, k, r0, r1 - r0, panels)


def pack_panels(b):
    """B (k, n) as its column panels one after another, each contiguous, so that a tile reads its panel
    in order (a copy of B: B is the small operand here, weights or their transpose).  The panel of
    columns [j, j + width) is a (k, width) block at j*k.  A float32 B that is the transpose of a C-ordered
    array (the filters' matrix, for a 1x1 layer's input gradient) is packed in 16x16 register transposes
    (pack_transposed), both threads: the product with GoogLeNet's 1x1 layers' transposed filters (batch 8,
    7x7 to 28x28) took 0.82-0.95x the time it took after NumPy's strided copy, but 1.13x at 832->128
    (BENCHMARKS.md)."""
    k, n = b.shape
    wide = n // PANEL * PANEL
    if b.dtype == np.float32 and b.T.flags.c_contiguous and not b.flags.c_contiguous:
        packed = np.empty(k * n, b.dtype)
        _pack_from_transpose(b.T.reshape(-1), n, k, min(get_num_threads(), -(-k // LANES)), packed)
        return packed
    if n <= PANEL:
        return np.ascontiguousarray(b).reshape(-1)            # one panel: B itself
    packed = np.empty(k * n, b.dtype)
    packed[:k * wide].reshape(wide // PANEL, k, PANEL)[...] = b[:, :wide].reshape(k, wide // PANEL, PANEL).transpose(1, 0, 2)
    packed[k * wide:].reshape(k, n - wide)[...] = b[:, wide:]
    return packed


def handles(a, b):
    """Whether matmul(a, b) can run here: float32 matrices, n a multiple of 16, k >= 1, and at least one
    full tile of rows."""
    return (a.dtype == np.float32 and b.dtype == np.float32 and a.ndim == 2 and b.ndim == 2
            and a.shape[1] == b.shape[0] and a.shape[1] >= 1 and b.shape[1] % LANES == 0
            and a.shape[0] >= TILE_ROWS)


def matmul(a, b, out=None):
    """a @ b, into `out` (a C-ordered float32 (m, n) array) if given.  A row-major b is read where it
    lies; any other is packed first (pack_panels).  Read in place, a convolution's filters (stored as
    this product's B: (KH*KW*C, O), see minigrad.nn.Conv2d) cost no copy.  Packed panels are read 3-5%
    faster (they stream in order) but the copy costs more than that: measured on the 7x7 layers (5a, 5b),
    a forward reading its filters in place 0.73-0.85x the time of packing them first (BENCHMARKS.md)."""
    if not handles(a, b):
        raise ValueError(f"gemm.matmul: needs float32 matrices (m, k) @ (k, n) with m >= {TILE_ROWS}, k >= 1 and n "
                         f"a multiple of {LANES}; got {a.dtype} {a.shape} @ {b.dtype} {b.shape}")
    m, k = a.shape
    n = b.shape[1]
    if out is None:
        out = np.empty((m, n), np.float32)
    elif out.shape != (m, n) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"gemm.matmul: out must be a C-contiguous float32 array of shape {(m, n)}; got "
                         f"{out.dtype} {out.shape}{'' if out.flags.c_contiguous else ', not C-contiguous'}")
    in_place = b.flags.c_contiguous
    by_panels = -(-m // TILE_ROWS) < PANEL_SPLIT_TILES * get_num_threads() and n > PANEL
    _gemm_tiles(np.ascontiguousarray(a).reshape(-1), b.reshape(-1) if in_place else pack_panels(b), not in_place,
                out.reshape(-1), m, n, k, by_panels)
    return out
