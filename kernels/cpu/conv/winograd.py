"""Stride-1 convolutions by Winograd's minimal filtering F(m x m, r x r), float32, channels-last.

An m x m block of outputs of an r x r filter reads an a x a patch of the input, a = m + r - 1.
Computed directly, that is m^2 r^2 multiply-adds per input channel and filter; Winograd's algorithm
(Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks") needs a^2:

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise, over a x a)

with d the a x a input patch and g the r x r filter.  For F(2x2, 3x3):

    B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
          [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1  1]
          [0 -1  1  0]         [1/2 -1/2  1/2]
          [0 -1  0  1]         [ 0    0    1 ]

(`_matrices` derives them, and those of the other sizes, from the points where the Toom-Cook
algorithm evaluates its polynomials.)  Summed over the input channels, each of the a^2 elementwise
products becomes one matrix product: for a block of T patches (tiles), V_e (T, C) @ U_e (C, O) =
M_e (T, O), where V_e holds element e of every tile's transformed patch B^T d B and U_e element e of
every filter's G g G^T.  Multiply-adds per output, per channel pair:

    F(2x2, 3x3): 16/4 = 4 against 9;  F(4x4, 3x3): 36/16 = 2.25 against 9;  F(2x2, 5x5): 36/4 = 9 against 25

at the price of the transforms (a few additions per value) and, at the image's bottom and right
edges when the output's size is not a multiple of m, a tile's outputs past the edge computed and
dropped (a 7x7 output is 4x4 tiles of 2x2, or 2x2 tiles of 4x4: 64 outputs for 49).  The larger the
tile, the larger the transforms' coefficients and the float32 rounding error: F(4x4, 3x3)'s is about
ten times F(2x2, 3x3)'s (measured: 1e-5 against 1e-6 of the outputs' largest value, C = 192).

`_winograd_tiles` does a block of tiles at a time in each thread, so that the block's transformed
patches V (a^2, T, C) and products M (a^2, T, O) stay in the core's cache: transform the patches, run
the products in minigrad's GEMM (gemm.tile_product), transform the products into outputs with the
bias and ReLU.  Neither the patches nor the products go through memory.  The input gradient of such a
layer is the same convolution of the output gradient with the filters turned by 180 degrees and
their two channel axes swapped (conv/__init__.py): `transform_filters` with flip builds that U.  The
weight gradient (`_winograd_weight_grad`) adds V_e^T @ (A dY A^T)_e over the tiles, then G^T dU G.  A
batch with few tiles (7x7 images) runs in one pass instead, its threads splitting the output channels rather
than the tiles (`_winograd_by_element`, `_winograd_weight_grad_by_element`): each transforms a block of
the filters (or computes a block of dU) in its cache and runs every product on it, so that no U or dU
of the whole layer goes through memory.  Filters that cannot change (a frozen weight's) are transformed
once instead, and both kernels read that U (`convolve`'s transformed): at batch 1, 0.75-0.78x the time
of 5b's 3x3 forward in one pass.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from llvmlite import ir
from numba import get_num_threads, prange, types
from numba.extending import intrinsic

from ...memory import aligned_empty
from .. import gemm
from .._jit import kernel

LANES = gemm.LANES
_VECTOR = ir.VectorType(ir.FloatType(), LANES)
_I64 = ir.IntType(64)

TILES = 2 * gemm.TILE_ROWS        # tiles per block in a forward: the rows of each of a block's products


def _matrices(m, r, points):
    """B^T (a, a), G (a, r) and A^T (m, a) of F(m, r), a = m + r - 1, from a - 1 finite points and
    infinity.  Toom-Cook computes a product of polynomials of m and r coefficients by evaluating both at
    the points (matrices E_m, E_r: rows (1, p, p^2, ...), and (0, ..., 0, 1) for infinity, the leading
    coefficient), multiplying, and interpolating the a coefficients back (E_a^-1).  A convolution's
    output is that map transposed: y = E_m^T [(E_r g) * (E_a^-T d)], so A^T = E_m^T, G = E_r, B^T = E_a^-T;
    then each row of B^T is scaled to integers, and G's row by the inverse."""
    a = m + r - 1

    def evaluation(size):
        infinity = [Fraction(int(k == size - 1)) for k in range(size)]
        return [[Fraction(p) ** k for k in range(size)] for p in points] + [infinity]
    inverse = np.linalg.inv(np.array(evaluation(a), dtype=float))
    b_t = [[Fraction(v).limit_denominator(10**6) for v in column] for column in inverse.T]
    g = evaluation(r)
    for j in range(a):
        scale = int(np.lcm.reduce([v.denominator for v in b_t[j]]))
        b_t[j], g[j] = [v * scale for v in b_t[j]], [v / scale for v in g[j]]
    a_t = [list(column) for column in zip(*evaluation(m))]
    return tuple(map(tuple, b_t)), tuple(map(tuple, g)), tuple(map(tuple, a_t))


def _sandwich(matrices, product=False):
    """An intrinsic: L d L^T for L = matrices[variant] (p, q), over 16 channels at once (one 512-bit vector
    per element): d[i, j] = src[s0 + i*s_row + j*s_col : +16] (i, j < q), the result's element (i, j) into
    dst[d0 + i*d_row + j*d_col : +16] (i, j < p).  Arguments (variant, src, s0, s_row, s_col, dst, d0,
    d_row, d_col); with product (the products' transform into outputs), (variant, relu, ..., bias, b0):
    plus bias[b0 : b0 + 16], then, if relu, max(., 0) (NaN passes, as in rows.finish_row).  Written in
    LLVM IR, as gemm's tiles are, one branch per size: as a Numba loop over the channels, the 16 to 25
    streams it reads and writes were too many for LLVM's checks that they do not overlap, and it stayed
    scalar (measured: F(2x2, 3x3)'s filter transform 2.5 ms for 5b's 3x3, 0.2 ms in vectors)."""

    def combine(builder, coefficients, values):
        total = None
        for k, value in zip(coefficients, values):
            if k == 0:
                continue
            if k == 1:
                total = value if total is None else builder.fadd(total, value)
            elif k == -1:
                total = builder.fsub(ir.Constant(_VECTOR, [0.0] * LANES) if total is None else total, value)
            else:
                term = builder.fmul(ir.Constant(_VECTOR, [float(k)] * LANES), value)
                total = term if total is None else builder.fadd(total, term)
        return total

    def transform(context, builder, sig, args, matrix):
        p, q = len(matrix), len(matrix[0])
        first = 2 if product else 1
        src, s0, s_row, s_col, dst, d0, d_row, d_col = args[first:first + 8]
        ps, pd = (context.make_array(sig.args[k])(context, builder, args[k]).data for k in (first, first + 4))
        pointer = _VECTOR.as_pointer()

        def at(base, start, row, col, i, j):
            offset = builder.add(builder.mul(ir.Constant(_I64, i), row), builder.mul(ir.Constant(_I64, j), col))
            return builder.bitcast(builder.gep(base, [builder.add(start, offset)]), pointer)
        d = [[builder.load(at(ps, s0, s_row, s_col, i, j), align=4) for j in range(q)] for i in range(q)]
        rows = [[combine(builder, matrix[i], [d[k][j] for k in range(q)]) for j in range(q)] for i in range(p)]
        zero = ir.Constant(_VECTOR, [0.0] * LANES)
        if product:
            pb = context.make_array(sig.args[first + 8])(context, builder, args[first + 8]).data
            shift = builder.load(builder.bitcast(builder.gep(pb, [args[first + 9]]), pointer), align=4)
            relu = builder.icmp_unsigned("!=", args[1], ir.Constant(args[1].type, 0))
        for i in range(p):
            for j in range(p):
                value = combine(builder, matrix[j], rows[i])
                if product:
                    value = builder.fadd(value, shift)
                    clipped = builder.select(builder.fcmp_ordered("<", value, zero), zero, value)
                    value = builder.select(relu, clipped, value)
                builder.store(value, at(pd, d0, d_row, d_col, i, j), align=4)

    def codegen(context, builder, sig, args):
        done = builder.append_basic_block("transformed")
        cases = [builder.append_basic_block(f"size{k}") for k in range(len(matrices))]
        switch = builder.switch(args[0], cases[-1])
        for k, (block, matrix) in enumerate(zip(cases, matrices)):
            switch.add_case(ir.Constant(args[0].type, k), block)
            builder.position_at_end(block)
            transform(context, builder, sig, args, matrix)
            builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    if product:
        @intrinsic
        def sandwich(typingctx, variant, relu, src, s0, s_row, s_col, dst, d0, d_row, d_col, bias_array, b0):
            return types.void(types.intp, relu, src, *[types.intp] * 3, dst, *[types.intp] * 3, bias_array,
                              types.intp), codegen
    else:
        @intrinsic
        def sandwich(typingctx, variant, src, s0, s_row, s_col, dst, d0, d_row, d_col):
            return types.void(types.intp, src, *[types.intp] * 3, dst, *[types.intp] * 3), codegen
    return sandwich


# The sizes this module computes, (m, r), numbered as the kernels' `variant` argument, and their
# matrices (B^T, G, A^T): points 0, 1, -1 for 4x4 patches, 0, +-1, +-2 for 6x6 (F(4x4, 3x3) and
# F(2x2, 5x5) then share B^T).
SIZES = ((2, 3), (4, 3), (2, 5))
_POINTS = {4: (0, 1, -1), 6: (0, 1, -1, 2, -2)}
MATRICES = tuple(_matrices(m, r, _POINTS[m + r - 1]) for m, r in SIZES)


def _each(pick):
    return tuple(pick(*matrices) for matrices in MATRICES)


# The five transforms, each over every size: the input patches (B^T d B), the filters (G g G^T), the
# products into outputs with the bias and ReLU (A^T M A); for the weight gradient, the outputs'
# gradient into the products' (A dY A^T) and the transformed filters' gradient into the filters'
# (G^T dU G).
_transform_patch = _sandwich(_each(lambda b_t, g, a_t: b_t))
_transform_filter = _sandwich(_each(lambda b_t, g, a_t: g))
_transform_product = _sandwich(_each(lambda b_t, g, a_t: a_t), product=True)
_transform_gradient = _sandwich(_each(lambda b_t, g, a_t: tuple(zip(*a_t))))
_transform_filter_grad = _sandwich(_each(lambda b_t, g, a_t: tuple(zip(*g))))


@kernel(parallel=True)
def _transform_filters(variant, r, a, f, c, o, flip, turned, u):
    """The a^2 matrices U_e, flat, e = a*i + j, from the filters' matrix f (r*r*C, O) (rows.filter_matrix),
    flat; C and O multiples of 16.
    Without flip, each (C, O), row-major: U_e[ci, :] = (G g G^T)[i, j] for the filters g over (ci, :),
    g[i, j] = f[(i*r + j)*C + ci, :].
    With flip, those of the input gradient's convolution, each (O, C), row-major: U_e[co, :] = (G g
    G^T)[i, j] for g[i, j] = f[((r-1-i)*r + r-1-j)*C + :, co] (the filters turned by 180 degrees, their
    channel axes swapped).  f is first transposed tap by tap into `turned` (r*r, O, C), in 16x16
    register blocks, so that the transform reads and writes whole vectors."""
    plane, last = c * o, r * r - 1
    if flip:
        blocks = (c // LANES) * (o // LANES)
        for index in prange(r * r * blocks):
            tap, block = index // blocks, index % blocks
            ci, co = block // (o // LANES) * LANES, block % (o // LANES) * LANES
            gemm.transpose_block(f, (tap * c + ci) * o + co, o, turned, (tap * o + co) * c + ci, c)
        for co in prange(o):
            for q in range(0, c, LANES):
                _transform_filter(variant, turned, (last * o + co) * c + q, -r * plane, -plane, u, co * c + q,
                                  a * plane, plane)
    else:
        for ci in prange(c):
            for q in range(0, o, LANES):
                _transform_filter(variant, f, ci * o + q, r * plane, plane, u, ci * o + q, a * plane, plane)


@kernel(inline=True)
def _transform_patches(variant, m, a, x, h, w, c, ph, pw, th, tw, first, count, q0, q1, v, plane, patch):
    """The input patches of tiles first to first + count, channels q0 to q1 (16 at a time), transformed
    (B^T d B) into v: tile t's element e at v[e*plane + t*(q1 - q0) :], its channels in order.  Tile t
    reads the a x a pixels from (m*ty - ph, m*tx - pw) of image t // (TH*TW); a patch over the padding
    is first copied into `patch` (a*a pixels of C channels) with zeros around its pixels inside."""
    width = q1 - q0
    for t in range(count):
        b, rest = (first + t) // (th * tw), (first + t) % (th * tw)
        y0, x0 = rest // tw * m - ph, rest % tw * m - pw
        if y0 >= 0 and x0 >= 0 and y0 + a <= h and x0 + a <= w:
            for q in range(q0, q1, LANES):
                _transform_patch(variant, x, ((b * h + y0) * w + x0) * c + q, w * c, c, v, t * width + q - q0,
                                 a * plane, plane)
        else:
            patch[:] = 0
            for i in range(max(0, -y0), min(a, h - y0)):
                for j in range(max(0, -x0), min(a, w - x0)):
                    start = ((b * h + y0 + i) * w + x0 + j) * c
                    patch[(i * a + j) * c + q0:(i * a + j) * c + q1] = x[start + q0:start + q1]
            for q in range(q0, q1, LANES):
                _transform_patch(variant, patch, q, a * c, c, v, t * width + q - q0, a * plane, plane)


@kernel(inline=True)
def _output_tile(variant, relu, m, a, products, p0, plane, bias, y, oh, ow, o, th, tw, t, edge):
    """Tile t's m x m outputs, A^T M A plus the bias (ReLU'd if relu), from its products (element e at
    products[p0 + e*plane :], O channels in order) into y (N, OH, OW, O) flat; a tile cut short by the
    bottom or right edge goes through `edge` (m*m*O values), and only its outputs inside are copied."""
    b, rest = t // (th * tw), t % (th * tw)
    oy, ox = rest // tw * m, rest % tw * m
    top = ((b * oh + oy) * ow + ox) * o
    if oy + m <= oh and ox + m <= ow:
        for q in range(0, o, LANES):
            _transform_product(variant, relu, products, p0 + q, a * plane, plane, y, top + q, ow * o, o, bias, q)
    else:
        for q in range(0, o, LANES):
            _transform_product(variant, relu, products, p0 + q, a * plane, plane, edge, q, m * o, o, bias, q)
        for dy in range(min(m, oh - oy)):
            for dx in range(min(m, ow - ox)):
                pixel = top + (dy * ow + dx) * o
                y[pixel:pixel + o] = edge[(dy * m + dx) * o:(dy * m + dx + 1) * o]


@kernel(parallel=True)
def _winograd_tiles(variant, m, r, x, h, w, c, ph, pw, oh, ow, u, o, bias, relu, y, block_tiles, shares):
    """y (N, OH, OW, O) flat, channels-last = the r x r convolution of x (N, H, W, C) flat, padding
    (ph, pw), stride 1, plus bias (O values), ReLU'd if relu, by F(m x m, r x r) (SIZES[variant]); u:
    the transformed filters, a^2 (C, O) matrices, row-major (transform_filters).  Tile t covers the
    outputs (m*ty, m*tx) to (m*ty + m-1, m*tx + m-1) of image t // (TH*TW), TH and TW the output's size
    over m, rounded up; task s does the blocks of block_tiles tiles shares[s] to shares[s + 1], each in
    buffers of its own that stay in its core's cache."""
    a = m + r - 1
    th, tw = (oh + m - 1) // m, (ow + m - 1) // m
    tiles = x.size // (h * w * c) * th * tw
    plane_v, plane_m = block_tiles * c, block_tiles * o
    for task in prange(shares.size - 1):
        v = np.zeros(a * a * plane_v, y.dtype)
        products = np.empty(a * a * plane_m, y.dtype)
        patch = np.empty(a * a * c, y.dtype)
        edge = np.empty(m * m * o, y.dtype)
        for block in range(shares[task], shares[task + 1]):
            first = block * block_tiles
            count = min(block_tiles, tiles - first)       # the rows of a last, short block past it: stale, unused
            _transform_patches(variant, m, a, x, h, w, c, ph, pw, th, tw, first, count, 0, c, v, plane_v, patch)
            for e in range(a * a):
                ue = u[e * c * o:(e + 1) * c * o]
                for t in range(0, count, gemm.TILE_ROWS):
                    gemm.tile_product(v, e * plane_v + t * c, c, ue, False, products, e * plane_m + t * o, o, c, 0, c,
                                      False)
            for t in range(count):
                _output_tile(variant, relu, m, a, products, t * o, plane_m, bias, y, oh, ow, o, th, tw, first + t, edge)


@kernel(inline=True)
def _gradient_tile(variant, m, a, g, oh, ow, o, th, tw, t, products, p0, plane, edge):
    """The output gradient's tile t (its m x m pixels of g (N, OH, OW, O) flat, zero past the edge),
    transformed (A dY A^T) into products: element e at products[p0 + e*plane :], its O channels in order;
    `edge` (m*m*O values) holds a tile cut short by the edge."""
    b, rest = t // (th * tw), t % (th * tw)
    oy, ox = rest // tw * m, rest % tw * m
    top = ((b * oh + oy) * ow + ox) * o
    if oy + m <= oh and ox + m <= ow:
        for q in range(0, o, LANES):
            _transform_gradient(variant, g, top + q, ow * o, o, products, p0 + q, a * plane, plane)
    else:
        edge[:] = 0
        for dy in range(min(m, oh - oy)):
            for dx in range(min(m, ow - ox)):
                pixel = top + (dy * ow + dx) * o
                edge[(dy * m + dx) * o:(dy * m + dx + 1) * o] = g[pixel:pixel + o]
        for q in range(0, o, LANES):
            _transform_gradient(variant, edge, q, m * o, o, products, p0 + q, a * plane, plane)


@kernel(parallel=True)
def _winograd_weight_grad(variant, m, r, x, h, w, c, ph, pw, oh, ow, g, o, block_tiles, column_shares, grad_u,
                          filters):
    """The weight gradient of _winograd_tiles' convolution, from the output's gradient g (N, OH, OW, O)
    flat: for each tile, the gradient of its products A dY A^T (dY its m x m outputs' gradient, zero
    past the edge), and grad_u[e] (C, O) += V_e^T @ that, over every tile; then the filters' gradient
    G^T dU G into `filters`, their matrix (r*r*C, O) flat (rows.filter_matrix).  The tasks split
    the channels: task s adds into rows column_shares[s] to column_shares[s + 1] of each grad_u[e], so
    no two add into one sum (each transforms the gradient tiles itself)."""
    a = m + r - 1
    th, tw = (oh + m - 1) // m, (ow + m - 1) // m
    tiles = x.size // (h * w * c) * th * tw
    plane_m = block_tiles * o
    for task in prange(column_shares.size - 1):
        q0, q1 = column_shares[task], column_shares[task + 1]
        plane_v = block_tiles * (q1 - q0)
        v = np.empty(a * a * plane_v, g.dtype)
        products = np.empty(a * a * plane_m, g.dtype)
        patch = np.empty(a * a * c, g.dtype)
        edge = np.zeros(m * m * o, g.dtype)
        for first in range(0, tiles, block_tiles):
            count = min(block_tiles, tiles - first)
            _transform_patches(variant, m, a, x, h, w, c, ph, pw, th, tw, first, count, q0, q1, v, plane_v, patch)
            for t in range(count):
                _gradient_tile(variant, m, a, g, oh, ow, o, th, tw, first + t, products, t * o, plane_m, edge)
            for e in range(a * a):
                gemm.add_transposed_product(v, e * plane_v, q1 - q0, q1 - q0, products, e * plane_m, o, o, grad_u,
                                            (e * c + q0) * o, o, count, True)
    plane = c * o
    for ci in prange(c):
        for q in range(0, o, LANES):
            _transform_filter_grad(variant, grad_u, ci * o + q, a * plane, plane, filters, ci * o + q, r * plane, plane)


@kernel(inline=True)
def _filter_block(variant, r, a, f, c, o, flip, q0, width, turned, u):
    """The transformed filters of output channels q0 to q0 + width (16 at a time) of the convolution of
    c input channels into o, into u: a^2 matrices (c, width), row-major, flat (element e at
    u[e*c*width :]).  f is the layer's filters' matrix, flat: (r*r*c, o) (rows.filter_matrix), or
    with flip, for the input gradient's convolution, (r*r*o, c), the filters then turned by 180 degrees
    and their channel axes swapped (_transform_filters); they are first transposed tap by tap into
    `turned` (r*r, c, width), in 16x16 register blocks."""
    plane = c * width
    if flip:
        for tap in range(r * r):
            for k in range(0, c, LANES):
                for j in range(0, width, LANES):
                    gemm.transpose_block(f, (tap * o + q0 + j) * c + k, c, turned, (tap * c + k) * width + j, width)
        for k in range(c):
            for q in range(0, width, LANES):
                _transform_filter(variant, turned, ((r * r - 1) * c + k) * width + q, -r * plane, -plane, u,
                                  k * width + q, a * plane, plane)
    else:
        for ci in range(c):
            for q in range(0, width, LANES):
                _transform_filter(variant, f, ci * o + q0 + q, r * c * o, c * o, u, ci * width + q, a * plane, plane)


# The one-pass kernels split the output channels between their tasks in blocks of this many: a block's
# transformed filters (a^2, C, 32: 0.9 MB for 5b's 3x3) stay in the core's cache while every product
# reads them, rather than all of them (a^2, C, O: 10.6 MB) written out and read back.  Blocks of 64
# measured the same (5a 1.00x, 5b 0.98-0.99x of them, 101 pairs twice).
FILTER_COLUMNS = 32


@kernel(parallel=True)
def _winograd_by_element(variant, m, r, x, h, w, c, ph, pw, oh, ow, f, flip, kept, o, bias, relu, y, rows, v,
                         products, tasks, column_shares):
    """_winograd_tiles for images with few tiles (7x7: 16 or 4 an image), in three passes over every
    tile of the batch at once: the tasks split the tiles to transform the patches into v (a^2, rows, C),
    then the output channels, in blocks of FILTER_COLUMNS: each block's filters transformed (from f, the
    filters' matrix, as _filter_block takes it) and its a^2 products (every product's rows in whole
    12-row tiles: rows is the tiles rounded up to 12), then the tiles again for the outputs.  With kept,
    f is instead every filter transformed already (transform_filters' a^2 (C, O) matrices), and each
    block's products read their columns there.  Split by tiles, 32 tiles of 4x4 (7x7, batch 8) left each
    task 16 rows, computed as 24."""
    a = m + r - 1
    th, tw = (oh + m - 1) // m, (ow + m - 1) // m
    tiles = x.size // (h * w * c) * th * tw
    for task in prange(tasks):
        first, last = tiles * task // tasks, tiles * (task + 1) // tasks
        patch = np.empty(a * a * c, y.dtype)
        _transform_patches(variant, m, a, x, h, w, c, ph, pw, th, tw, first, last - first, 0, c, v[first * c:],
                           rows * c, patch)
    for task in prange(column_shares.size - 1):
        lo, hi = column_shares[task], column_shares[task + 1]
        u = f if kept else np.empty(a * a * c * FILTER_COLUMNS, y.dtype)
        turned = np.empty(r * r * c * FILTER_COLUMNS if flip and not kept else 1, y.dtype)
        for q0 in range(lo, hi, FILTER_COLUMNS):
            width = min(FILTER_COLUMNS, hi - q0)
            if kept:            # U_e's columns q0 to q0 + width, rows O apart
                u0, du, ldu = q0, c * o, o
            else:
                _filter_block(variant, r, a, f, c, o, flip, q0, width, turned, u)
                u0, du, ldu = 0, c * width, width
            for e in range(a * a):
                for t in range(0, rows, gemm.TILE_ROWS):
                    gemm.panel_product(v, (e * rows + t) * c, c, u, u0 + e * du, ldu, products,
                                       (e * rows + t) * o + q0, o, c, width)
    for task in prange(tasks):
        first, last = tiles * task // tasks, tiles * (task + 1) // tasks
        edge = np.empty(m * m * o, y.dtype)
        for t in range(first, last):
            _output_tile(variant, relu, m, a, products, t * o, rows * o, bias, y, oh, ow, o, th, tw, t, edge)


@kernel(parallel=True)
def _winograd_weight_grad_by_element(variant, m, r, x, h, w, c, ph, pw, oh, ow, g, o, v, products, tasks,
                                     column_shares, filters):
    """_winograd_weight_grad for images with few tiles, in passes as _winograd_by_element: the tasks
    split the tiles to transform the patches into v (a^2, tiles, C) and the output gradient's tiles into
    products (a^2, tiles, O), then split the output channels, in blocks of FILTER_COLUMNS: each block's
    dU_e (C, block) = V_e^T @ its columns of the products, in the task's cache, and the filters'
    gradient G^T dU G from it."""
    a = m + r - 1
    th, tw = (oh + m - 1) // m, (ow + m - 1) // m
    tiles = x.size // (h * w * c) * th * tw
    for task in prange(tasks):
        first, last = tiles * task // tasks, tiles * (task + 1) // tasks
        patch = np.empty(a * a * c, g.dtype)
        edge = np.zeros(m * m * o, g.dtype)
        _transform_patches(variant, m, a, x, h, w, c, ph, pw, th, tw, first, last - first, 0, c, v[first * c:],
                           tiles * c, patch)
        for t in range(first, last):
            _gradient_tile(variant, m, a, g, oh, ow, o, th, tw, t, products, t * o, tiles * o, edge)
    for task in prange(column_shares.size - 1):
        lo, hi = column_shares[task], column_shares[task + 1]
        grad_u = np.empty(a * a * c * FILTER_COLUMNS, g.dtype)
        for q0 in range(lo, hi, FILTER_COLUMNS):
            width = min(FILTER_COLUMNS, hi - q0)
            plane = c * width
            for e in range(a * a):
                gemm.add_transposed_product(v, e * tiles * c, c, c, products, e * tiles * o + q0, o, width, grad_u,
                                            e * plane, width, tiles, False)
            for ci in range(c):
                for q in range(0, width, LANES):
                    _transform_filter_grad(variant, grad_u, ci * width + q, a * plane, plane, filters, ci * o + q0 + q,
                                           r * c * o, c * o)


def _column_shares(o, tasks):
    """Output channels 0 to o split between the tasks in whole vectors, as evenly as they go."""
    vectors = o // LANES
    tasks = max(1, min(tasks, vectors))
    return np.array([vectors * t // tasks * LANES for t in range(tasks + 1)], np.intp)


def _aligned(size, zero=False):
    """A float32 buffer of `size` values on a cache line (kernels/memory.py), zeroed if zero: the kernels read
    and write whole vectors in these."""
    return aligned_empty(size, np.float32, zero)


def _refuse_unless(ok, op, what):
    """A ValueError naming winograd.op and what() (a callable, so that the message, which formats the
    shapes, is built only when it is raised: these checks run on every call)."""
    if not ok:
        raise ValueError(f"winograd.{op}: {what()}")


def _check_layer(op, size, xs, o, padding):
    """The geometry every kernel here assumes (they do no bounds checks): a size of SIZES, a float32
    channels-last (N, H, W, C) input, C and O whole vectors, paddings of two non-negative integers."""
    _refuse_unless(size in SIZES, op, lambda: f"size must be one of {SIZES}, got {size!r}")
    _refuse_unless(isinstance(xs, np.ndarray) and xs.dtype == np.float32 and xs.ndim == 4, op,
                   lambda: f"needs a float32 (N, H, W, C) array, got {getattr(xs, 'dtype', type(xs))} "
                   f"{getattr(xs, 'shape', '')}")
    _refuse_unless(xs.shape[3] % LANES == 0 and xs.shape[3] > 0 and o % LANES == 0 and o > 0, op,
                   lambda: f"input and output channels must be positive multiples of {LANES}, got {xs.shape[3]} and {o} "
                   f"(input shape {xs.shape})")
    _refuse_unless(len(padding) == 2 and all(int(p) == p and p >= 0 for p in padding), op,
                   lambda: f"padding must be two non-negative integers, got {padding!r}")


def transform_filters(size, filters, c, o, flip=False):
    """The a^2 matrices U_e of F(size) (an (m, r) of SIZES) of the filters' matrix `filters` (r*r*C, O)
    (rows.filter_matrix), flat, each row-major: (C, O); with flip, (O, C), those of the input
    gradient's convolution."""
    _refuse_unless(size in SIZES, "transform_filters", lambda: f"size must be one of {SIZES}, got {size!r}")
    m, r = size
    a = m + r - 1
    _refuse_unless(c % LANES == 0 and o % LANES == 0 and c > 0 and o > 0 and filters.dtype == np.float32
                   and filters.shape == (r * r * c, o), "transform_filters",
                   lambda: f"needs the float32 filters' matrix ({r * r}*C, O) with C and O positive multiples of {LANES}; "
                   f"got {filters.dtype} {filters.shape} for C={c}, O={o}")
    u = _aligned(a * a * c * o)
    turned = _aligned(r * r * c * o if flip else 1)
    _transform_filters(SIZES.index(size), r, a, np.ascontiguousarray(filters).reshape(-1), c, o, flip, turned, u)
    return u


def convolution_filters(size, filters, c, o, flip=False):
    """The U that convolve reads for its convolution of c channels into o by F(size): the filters' matrix
    transformed (with flip, that of a layer of o input and c output channels, turned and transposed)."""
    return transform_filters(size, filters, *((o, c) if flip else (c, o)), flip=flip)


def convolve(size, xs, filters, o, padding, bias=None, relu=False, flip=False, one_pass=False, block_tiles=TILES,
             transformed=None):
    """The r x r, stride-1 convolution of channels-last xs (N, H, W, C), float32, by F(size) (an (m, r) of
    SIZES), as a channels-last (N, OH, OW, O) array; C and O multiples of gemm.LANES; block_tiles a
    multiple of gemm.TILE_ROWS.  filters: the layer's filters' matrix (r*r*C, O) (rows.filter_matrix); with
    flip, the input gradient's convolution of a layer of O input channels and C output channels, by that
    layer's (r*r*O, C), turned and transposed (transform_filters).  one_pass: all the tiles at once, the
    threads splitting the output channels (_winograd_by_element), else blocks of block_tiles tiles (the
    layer's plan chooses: plan.py).  transformed: these filters' convolution_filters made earlier, read
    instead of transforming them again (the caller vouches they are the same filters)."""
    _check_layer("convolve", size, xs, o, padding)
    m, r = size
    n, h, w, c = xs.shape
    shape = (r * r * o, c) if flip else (r * r * c, o)
    _refuse_unless(isinstance(filters, np.ndarray) and filters.dtype == np.float32 and filters.shape == shape,
                   "convolve", lambda: f"filters must be the float32 filters' matrix {shape} for {c} input and {o} output "
                   f"channels{' (flip)' if flip else ''}; got {getattr(filters, 'dtype', type(filters))} "
                   f"{getattr(filters, 'shape', '')}")
    _refuse_unless(bias is None or np.shape(bias) == (o,), "convolve",
                   lambda: f"bias must have shape ({o},), got {np.shape(bias)}")
    _refuse_unless(block_tiles >= gemm.TILE_ROWS and block_tiles % gemm.TILE_ROWS == 0, "convolve",
                   lambda: f"block_tiles must be a positive multiple of {gemm.TILE_ROWS}, got {block_tiles}")
    oh, ow = h + 2 * padding[0] - r + 1, w + 2 * padding[1] - r + 1
    _refuse_unless(oh >= 1 and ow >= 1, "convolve",
                   lambda: f"a {r}x{r} filter does not fit input {xs.shape} padded by {padding}")
    y = np.empty((n, oh, ow, o), np.float32)
    if n == 0:
        return y
    a = m + r - 1
    _refuse_unless(transformed is None or (isinstance(transformed, np.ndarray) and transformed.dtype == np.float32
                                           and transformed.shape == (a * a * c * o,)), "convolve",
                   lambda: f"transformed must be convolution_filters' float32 ({a * a * c * o},) for {c} input and {o} "
                   f"output channels; got {getattr(transformed, 'dtype', type(transformed))} "
                   f"{getattr(transformed, 'shape', '')}")
    bias = np.zeros(o, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    filters = np.ascontiguousarray(filters)
    tiles = n * -(-oh // m) * -(-ow // m)
    if one_pass:
        rows = -(-tiles // gemm.TILE_ROWS) * gemm.TILE_ROWS
        v, products = _aligned(a * a * rows * c), _aligned(a * a * rows * o)
        v.reshape(a * a, rows, c)[:, tiles:] = 0        # the last GEMM tile's rows past the tiles: zeros
        kept = transformed is not None
        _winograd_by_element(SIZES.index(size), m, r, np.ascontiguousarray(xs).reshape(-1), h, w, c, padding[0],
                             padding[1], oh, ow, transformed if kept else filters.reshape(-1), flip, kept, o, bias, relu,
                             y.reshape(-1), rows, v, products, min(get_num_threads(), tiles),
                             _column_shares(o, get_num_threads()))
        return y
    u = convolution_filters(size, filters, c, o, flip) if transformed is None else transformed
    blocks = -(-tiles // block_tiles)
    tasks = min(get_num_threads(), blocks)
    shares = np.array([blocks * t // tasks for t in range(tasks + 1)], np.intp)
    _winograd_tiles(SIZES.index(size), m, r, np.ascontiguousarray(xs).reshape(-1), h, w, c, padding[0], padding[1], oh,
                    ow, u, o, bias, relu, y.reshape(-1), block_tiles, shares)
    return y


def weight_grad(size, xs, grad_rows, padding, out_size, one_pass=False, block_tiles=128):
    """The weight gradient of convolve's convolution (F(size)) of channels-last xs (N, H, W, C) with padding
    and output size out_size, from its output's gradient as pixel rows (N*OH*OW, O), C-ordered: the
    filters' matrix (r*r*C, O) (rows.filter_matrix).  The threads split the channels, in vectors of 16;
    with one_pass all the tiles at once (_winograd_weight_grad_by_element), else blocks of block_tiles."""
    _check_layer("weight_grad", size, xs, grad_rows.shape[-1], padding)
    m, r = size
    a = m + r - 1
    n, h, w, c = xs.shape
    o = grad_rows.shape[1]
    expected = (h + 2 * padding[0] - r + 1, w + 2 * padding[1] - r + 1)
    _refuse_unless(tuple(out_size) == expected and min(expected) > 0 and grad_rows.dtype == np.float32
                   and grad_rows.shape == (n * expected[0] * expected[1], o) and grad_rows.flags.c_contiguous,
                   "weight_grad", lambda: f"needs the output gradient as C-ordered float32 pixel rows (N*OH*OW, O) with "
                   f"(OH, OW) = {expected} for input {xs.shape} and padding {tuple(padding)}; got out_size "
                   f"{tuple(out_size)} and {grad_rows.dtype} {grad_rows.shape}")
    _refuse_unless(block_tiles >= 1, "weight_grad", lambda: f"block_tiles must be positive, got {block_tiles}")
    filters = np.empty((r * r * c, o), np.float32)
    tiles = n * -(-out_size[0] // m) * -(-out_size[1] // m)
    if tiles == 0:                                  # an empty batch: the kernels' products need k >= 1
        filters[...] = 0
        return filters
    if one_pass:
        v, products = _aligned(a * a * tiles * c), _aligned(a * a * tiles * o)
        _winograd_weight_grad_by_element(SIZES.index(size), m, r, np.ascontiguousarray(xs).reshape(-1), h, w, c,
                                         padding[0], padding[1], *out_size, grad_rows.reshape(-1), o, v, products,
                                         min(get_num_threads(), tiles), _column_shares(o, get_num_threads()),
                                         filters.reshape(-1))
        return filters
    grad_u = _aligned(a * a * c * o, zero=True)
    _winograd_weight_grad(SIZES.index(size), m, r, np.ascontiguousarray(xs).reshape(-1), h, w, c, padding[0], padding[1],
                          *out_size, grad_rows.reshape(-1), o, block_tiles, _column_shares(c, get_num_threads()), grad_u,
                          filters.reshape(-1))
    return filters
