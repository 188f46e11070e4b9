"""3x3 convolutions at stride 1 by Winograd's minimal filtering F(2x2, 3x3), float32, channels-last.

A 2x2 block of outputs of a 3x3 filter reads a 4x4 patch of the input.  Computed directly, that is
4 x 9 = 36 multiply-adds per input channel and filter; Winograd's algorithm (Lavin and Gray, "Fast
Algorithms for Convolutional Neural Networks") needs 16:

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise, over 4x4)

with d the 4x4 input patch, g the 3x3 filter and

    B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
          [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
          [0 -1  1  0]         [1/2 -1/2  1/2]
          [0  1  0 -1]         [ 0    0    1 ]

Summed over the input channels, each of the 16 elementwise products becomes one matrix product: for
a block of T patches (tiles), V_e (T, C) @ U_e (C, O) = M_e (T, O), e = 0..15, where V_e holds element
e of every tile's transformed patch B^T d B and U_e element e of every filter's G g G^T.  The 16
products do 16 C O multiply-adds per tile, against im2col's 36 C O: 2.25x fewer, at the price of the
two transforms (additions only) and, at the image's bottom and right edges when the output size is
odd, a tile's outputs past the edge computed and dropped (a 7x7 output is 4x4 tiles, 64 outputs for
49).

`_winograd_tiles` does a block of tiles at a time in each thread, so that the block's transformed
patches V (16, T, C) and products M (16, T, O) stay in the core's cache: transform the patches, run
the 16 products in minigrad's GEMM (gemm.tile_product), transform the products into outputs with the
bias and ReLU.  Neither the patches nor the products go through memory.  The input gradient of such a
layer is the same convolution of the output gradient with the filters flipped and their two channel
axes swapped (conv.py): `transform_filters` with flip builds that U.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import get_num_threads, prange, types
from numba.extending import intrinsic

from . import gemm
from ._jit import kernel

LANES = gemm.LANES
_VECTOR = ir.VectorType(ir.FloatType(), LANES)
_I64 = ir.IntType(64)

TILES = 2 * gemm.TILE_ROWS        # tiles per block: the rows of each of a block's 16 products


# The three transforms, each a 1-D map L applied to a square block of values along both its axes,
# L d L^T: B^T (4x4) to the input patches, G (4x3) to the filters, A^T (2x4) to the products.
_B_T = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
_A_T = ((1, 1, 1, 0), (0, 1, -1, -1))


def _sandwich(matrix, bias=False, relu=False):
    """An intrinsic: L d L^T for L = `matrix` (p, r), over 16 channels at once (one 512-bit vector per
    element): d[i, j] = src[s0 + i*s_row + j*s_col : +16], the result's element (a, b) into
    dst[d0 + a*d_row + b*d_col : +16]; with bias, plus bias[b0 : b0 + 16]; with relu, then max(., 0) (NaN
    passes, as in conv.py's ReLU).  Written in LLVM IR, as gemm's tiles are: as a Numba loop over the
    channels, the 16 to 25 streams it reads and writes were too many for LLVM's checks that they do
    not overlap, and it stayed scalar (measured: the filters' transform 2.5 ms for 5b's 3x3)."""
    p, r = len(matrix), len(matrix[0])

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

    def codegen(context, builder, sig, args):
        src, s0, s_row, s_col, dst, d0, d_row, d_col = args[:8]
        ps, pd = (context.make_array(t)(context, builder, v).data for t, v in ((sig.args[0], src), (sig.args[4], dst)))
        pointer = _VECTOR.as_pointer()

        def at(base, start, row, col, i, j):
            offset = builder.add(builder.mul(ir.Constant(_I64, i), row), builder.mul(ir.Constant(_I64, j), col))
            offset = builder.add(start, offset)
            return builder.bitcast(builder.gep(base, [offset]), pointer)
        d = [[builder.load(at(ps, s0, s_row, s_col, i, j), align=4) for j in range(r)] for i in range(r)]
        rows = [[combine(builder, matrix[a], [d[i][j] for i in range(r)]) for j in range(r)] for a in range(p)]
        shift = None
        if bias:
            pb = context.make_array(sig.args[8])(context, builder, args[8]).data
            shift = builder.load(builder.bitcast(builder.gep(pb, [args[9]]), pointer), align=4)
        zero = ir.Constant(_VECTOR, [0.0] * LANES)
        for a in range(p):
            for b in range(p):
                value = combine(builder, matrix[b], rows[a])
                if shift is not None:
                    value = builder.fadd(value, shift)
                if relu:
                    value = builder.select(builder.fcmp_ordered("<", value, zero), zero, value)
                builder.store(value, at(pd, d0, d_row, d_col, a, b), align=4)
        return context.get_dummy_value()

    if bias:
        @intrinsic
        def sandwich(typingctx, src, s0, s_row, s_col, dst, d0, d_row, d_col, bias_array, b0):
            return types.void(src, *[types.intp] * 3, dst, *[types.intp] * 3, bias_array, types.intp), codegen
    else:
        @intrinsic
        def sandwich(typingctx, src, s0, s_row, s_col, dst, d0, d_row, d_col):
            return types.void(src, *[types.intp] * 3, dst, *[types.intp] * 3), codegen
    return sandwich


_A = tuple(zip(*_A_T))
_G_T = tuple(zip(*_G))
_transform_patch = _sandwich(_B_T)
_transform_filter = _sandwich(_G)
_transform_product = _sandwich(_A_T, bias=True)
_transform_product_relu = _sandwich(_A_T, bias=True, relu=True)
# the weight gradient's: the output gradient's 2x2 tiles to their products' (A dY A^T), and the gradient
# of the transformed filters back to the filters' (G^T dU G)
_transform_gradient = _sandwich(_A)
_transform_filter_grad = _sandwich(_G_T)


@kernel(parallel=True)
def _transform_filters(f, c, o, flip, turned, u):
    """The 16 matrices U_e, flat, e = 4a + b, from the filters' matrix f (9C, O) (conv.py's
    _filter_matrix), flat; C and O multiples of 16.
    Without flip, each (C, O), row-major: U_e[ci, :] = (G g G^T)[a, b] for the filters g over (ci, :),
    g[i, j] = f[(i*3 + j)*C + ci, :].
    With flip, those of the input gradient's convolution, each (O, C), row-major: U_e[co, :] = (G g
    G^T)[a, b] for g[i, j] = f[((2-i)*3 + 2-j)*C + :, co] (the filters turned by 180 degrees, their
    channel axes swapped).  f is first transposed tap by tap into `turned` (9, O, C), in 16x16 register
    blocks, so that the transform reads and writes whole vectors."""
    if flip:
        blocks = (c // LANES) * (o // LANES)
        for index in prange(9 * blocks):
            tap, block = index // blocks, index % blocks
            ci, co = block // (o // LANES) * LANES, block % (o // LANES) * LANES
            gemm.transpose_block(f, (tap * c + ci) * o + co, o, turned, (tap * o + co) * c + ci, c)
        for co in prange(o):
            for q in range(0, c, LANES):
                _transform_filter(turned, (8 * o + co) * c + q, -3 * o * c, -o * c, u, co * c + q, 4 * o * c, o * c)
    else:
        for ci in prange(c):
            for q in range(0, o, LANES):
                _transform_filter(f, ci * o + q, 3 * c * o, c * o, u, ci * o + q, 4 * c * o, c * o)


@kernel(inline=True)
def _transform_patches(x, h, w, c, ph, pw, th, tw, first, count, q0, q1, v, plane, patch):
    """The input patches of tiles first to first + count, channels q0 to q1 (16 at a time), transformed
    (B^T d B) into v: tile r's element e at v[e*plane + r*(q1 - q0) :], its channels in order.  Tile t
    reads the 4x4 pixels from (2ty - ph, 2tx - pw) of image t // (TH*TW); a patch over the padding is
    first copied into `patch` (16 pixels of C channels) with zeros around its pixels inside."""
    width = q1 - q0
    for r in range(count):
        b, rest = (first + r) // (th * tw), (first + r) % (th * tw)
        y0, x0 = rest // tw * 2 - ph, rest % tw * 2 - pw
        if y0 >= 0 and x0 >= 0 and y0 + 4 <= h and x0 + 4 <= w:
            for q in range(q0, q1, LANES):
                _transform_patch(x, ((b * h + y0) * w + x0) * c + q, w * c, c, v, r * width + q - q0, 4 * plane, plane)
        else:
            patch[:] = 0
            for i in range(max(0, -y0), min(4, h - y0)):
                for j in range(max(0, -x0), min(4, w - x0)):
                    start = ((b * h + y0 + i) * w + x0 + j) * c
                    patch[(i * 4 + j) * c + q0:(i * 4 + j) * c + q1] = x[start + q0:start + q1]
            for q in range(q0, q1, LANES):
                _transform_patch(patch, q, 4 * c, c, v, r * width + q - q0, 4 * plane, plane)


@kernel(parallel=True)
def _winograd_tiles(x, h, w, c, ph, pw, oh, ow, u, o, bias, relu, y, block_tiles, shares):
    """y (N, OH, OW, O) flat, channels-last = the 3x3 convolution of x (N, H, W, C) flat, padding (ph, pw),
    stride 1, plus bias (O values), ReLU'd if relu; u: the transformed filters, 16 (C, O) matrices,
    row-major (transform_filters).  Tile t covers the outputs (2ty, 2tx) to (2ty+1, 2tx+1) of image
    t // (TH*TW), TH and TW the output's size halved, rounded up; task s does the blocks of block_tiles
    tiles shares[s] to shares[s + 1], each in buffers of its own that stay in its core's cache."""
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    tiles = x.size // (h * w * c) * th * tw
    plane_v, plane_m = block_tiles * c, block_tiles * o
    for task in prange(shares.size - 1):
        v = np.zeros(16 * plane_v, y.dtype)
        m = np.empty(16 * plane_m, y.dtype)
        patch = np.empty(16 * c, y.dtype)
        edge = np.empty(4 * o, y.dtype)
        for block in range(shares[task], shares[task + 1]):
            first = block * block_tiles
            count = min(block_tiles, tiles - first)       # the rows of a last, short block past it: stale, unused
            _transform_patches(x, h, w, c, ph, pw, th, tw, first, count, 0, c, v, plane_v, patch)
            for e in range(16):
                ue = u[e * c * o:(e + 1) * c * o]
                for r in range(0, count, gemm.TILE_ROWS):
                    gemm.tile_product(v, e * plane_v + r * c, c, ue, False, m, e * plane_m + r * o, o, c, 0, c, False)
            for r in range(count):
                b, rest = (first + r) // (th * tw), (first + r) % (th * tw)
                oy, ox = rest // tw * 2, rest % tw * 2
                top = ((b * oh + oy) * ow + ox) * o
                inside = oy + 1 < oh and ox + 1 < ow
                for q in range(0, o, LANES):
                    if inside and relu:
                        _transform_product_relu(m, r * o + q, 4 * plane_m, plane_m, y, top + q, ow * o, o, bias, q)
                    elif inside:
                        _transform_product(m, r * o + q, 4 * plane_m, plane_m, y, top + q, ow * o, o, bias, q)
                    elif relu:                      # at the bottom or right edge of an odd-sized output
                        _transform_product_relu(m, r * o + q, 4 * plane_m, plane_m, edge, q, 2 * o, o, bias, q)
                    else:
                        _transform_product(m, r * o + q, 4 * plane_m, plane_m, edge, q, 2 * o, o, bias, q)
                if not inside:
                    for dy in range(min(2, oh - oy)):
                        for dx in range(min(2, ow - ox)):
                            pixel = top + (dy * ow + dx) * o
                            y[pixel:pixel + o] = edge[(2 * dy + dx) * o:(2 * dy + dx + 1) * o]


@kernel(parallel=True)
def _winograd_weight_grad(x, h, w, c, ph, pw, oh, ow, g, o, block_tiles, column_shares, grad_u, filters):
    """The weight gradient of _winograd_tiles' convolution, from the output's gradient g (N, OH, OW, O)
    flat: for each tile, the gradient of its products A dY A^T (dY its 2x2 outputs' gradient, zero past
    the edge), and grad_u[e] (C, O) += V_e^T @ that, over every tile; then the filters' gradient
    G^T dU G into `filters`, their matrix (9C, O) flat (conv.py's _filter_matrix).  The tasks split the
    channels: task s adds into rows column_shares[s] to column_shares[s + 1] of each grad_u[e], so no
    two add into one sum (each transforms the gradient tiles itself)."""
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    tiles = x.size // (h * w * c) * th * tw
    plane_m = block_tiles * o
    for task in prange(column_shares.size - 1):
        q0, q1 = column_shares[task], column_shares[task + 1]
        plane_v = block_tiles * (q1 - q0)
        v = np.empty(16 * plane_v, g.dtype)
        dm = np.empty(16 * plane_m, g.dtype)
        patch = np.empty(16 * c, g.dtype)
        edge = np.zeros(4 * o, g.dtype)
        for first in range(0, tiles, block_tiles):
            count = min(block_tiles, tiles - first)
            _transform_patches(x, h, w, c, ph, pw, th, tw, first, count, q0, q1, v, plane_v, patch)
            for r in range(count):
                b, rest = (first + r) // (th * tw), (first + r) % (th * tw)
                oy, ox = rest // tw * 2, rest % tw * 2
                top = ((b * oh + oy) * ow + ox) * o
                if oy + 1 < oh and ox + 1 < ow:
                    for q in range(0, o, LANES):
                        _transform_gradient(g, top + q, ow * o, o, dm, r * o + q, 4 * plane_m, plane_m)
                else:                               # past the bottom or right edge: zeros
                    edge[:] = 0
                    for dy in range(min(2, oh - oy)):
                        for dx in range(min(2, ow - ox)):
                            pixel = top + (dy * ow + dx) * o
                            edge[(2 * dy + dx) * o:(2 * dy + dx + 1) * o] = g[pixel:pixel + o]
                    for q in range(0, o, LANES):
                        _transform_gradient(edge, q, 2 * o, o, dm, r * o + q, 4 * plane_m, plane_m)
            for e in range(16):
                gemm.add_transposed_product(v, e * plane_v, q1 - q0, q1 - q0, dm, e * plane_m, o, o, grad_u,
                                            (e * c + q0) * o, o, count)
    for ci in prange(c):
        for q in range(0, o, LANES):
            _transform_filter_grad(grad_u, ci * o + q, 4 * c * o, c * o, filters, ci * o + q, 3 * c * o, c * o)


def transform_filters(filters, c, o, flip=False):
    """The 16 matrices U_e of the filters' matrix `filters` (9C, O) (conv.py's _filter_matrix), flat, each
    row-major: (C, O); with flip, (O, C), those of the input gradient's convolution."""
    u = np.empty(16 * c * o, np.float32)
    turned = np.empty(9 * c * o if flip else 1, np.float32)
    _transform_filters(np.ascontiguousarray(filters).reshape(-1), c, o, flip, turned, u)
    return u


def weight_grad(xs, grad_rows, padding, out_size, block_tiles=128):
    """The weight gradient of convolve's convolution of channels-last xs (N, H, W, C) with padding and
    output size out_size, from its output's gradient as pixel rows (N*OH*OW, O), C-ordered: the
    filters' matrix (9C, O) (conv.py's _filter_matrix).  The two threads split the channels, in
    vectors of 16."""
    n, h, w, c = xs.shape
    o = grad_rows.shape[1]
    vectors = c // LANES
    tasks = max(1, min(get_num_threads(), vectors))
    column_shares = np.array([vectors * t // tasks * LANES for t in range(tasks + 1)], np.intp)
    grad_u = np.zeros(16 * c * o, np.float32)
    filters = np.empty((9 * c, o), np.float32)
    _winograd_weight_grad(np.ascontiguousarray(xs).reshape(-1), h, w, c, padding[0], padding[1], *out_size,
                          grad_rows.reshape(-1), o, block_tiles, column_shares, grad_u, filters.reshape(-1))
    return filters


def convolve(xs, u, o, padding, bias=None, relu=False, block_tiles=TILES):
    """The 3x3, stride-1 convolution of channels-last xs (N, H, W, C), float32, with transformed filters
    u (transform_filters), as a channels-last (N, OH, OW, O) array; o a multiple of gemm.LANES."""
    n, h, w, c = xs.shape
    oh, ow = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    y = np.empty((n, oh, ow, o), np.float32)
    blocks = -(-n * ((oh + 1) // 2) * ((ow + 1) // 2) // block_tiles)
    if blocks == 0:
        return y
    tasks = min(get_num_threads(), blocks)
    shares = np.array([blocks * t // tasks for t in range(tasks + 1)], np.intp)
    bias = np.zeros(o, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    _winograd_tiles(np.ascontiguousarray(xs).reshape(-1), h, w, c, padding[0], padding[1], oh, ow, u, o,
                    bias, relu, y.reshape(-1), block_tiles, shares)
    return y
