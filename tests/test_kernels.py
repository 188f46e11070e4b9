"""Every fast kernel against the NumPy reference, forward and backward, float32 and float64, on every
backend (tests/backends.py): the Numba CPU kernels, the CUDA kernels run on the CPU by the host
emulation (with odd grid and block sizes), and the CUDA kernels on a GPU (marked gpu).

Tolerances per dtype: float64 agrees to rounding (1e-12 relative); float32 sums in a
different order than the reference, so 1e-5 relative (scaled by the magnitude of the
values summed).
"""

import functools
import importlib
import inspect

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import kernels
from kernels import reference as ref
from kernels.geometry import conv_out_size, pool_out_size
from minigrad.nn import stored_filters

from backends import BACKENDS, LAUNCH_SHAPES, get_backend
from conftest import examples
from strategies import conv_geometry, distinct_values, pool_geometry, seeds

TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
# Winograd's float32 rounding error, as a multiple of a direct convolution's, by tile (kernels/cpu/winograd.py):
# its transforms' coefficients grow with the tile (F(4x4, 3x3)'s B^T has 4s and 5s, its A^T 8s).  Twice what
# the examples of test_numba_conv2d_by_winograd need (F(2x2, 5x5) fails them at 1x, passes at 5x).
WINOGRAD_GROWTH = {(2, 3): 2.0, (4, 3): 10.0, (2, 5): 10.0}
dtypes = st.sampled_from([np.float32, np.float64])
launches = st.sampled_from(LAUNCH_SHAPES)          # (threads per block, most blocks), for the CUDA emulation

on_every_backend = pytest.mark.parametrize("backend_name", BACKENDS)


def close(actual, expected, dtype, scale=1.0):
    tol = TOLERANCE[dtype]
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * scale)


def normal(shape, seed, dtype):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@on_every_backend
@settings(max_examples=examples(60))
@given(conv_geometry(max_channels=64), st.booleans(), st.booleans(), st.booleans(), st.booleans(), dtypes, seeds,
       launches)
@example(((1, 1, 1, 1), (3, 1, 1, 1), (1, 1), (0, 0)), True, True, False, True, np.float32, 0, (256, 65535))  # 1 pixel
@example(((2, 64, 7, 7), (16, 64, 1, 1), (1, 1), (0, 0)), True, True, True, False, np.float64, 1, (7, 3))  # 1x1 GEMM
def test_conv2d(backend_name, geometry, with_bias, need_input_grad, relu, keep, dtype, seed, launch):
    """keep: the forward gets a `saved` dict and the backward reads it (the Numba kernels keep their
    columns there), as in the engine whenever a backward follows."""
    k = get_backend(backend_name, launch)
    x_shape, w_shape, stride, padding = geometry
    x, w = normal(x_shape, seed, dtype), normal(w_shape, seed + 1, dtype)
    b = normal(w_shape[0], seed + 2, dtype) if with_bias else None
    check_conv2d(k, x, w, b, stride, padding, relu, {} if keep else None, need_input_grad, dtype, seed)


def check_conv2d(k, x, w, b, stride, padding, relu, saved, need_input_grad, dtype, seed, growth=1.0):
    """Backend k's conv2d forward and backward against the reference; returns k's gradients.  growth: how
    many times the usual absolute error to allow (Winograd's larger tiles, WINOGRAD_GROWTH)."""
    y = k.conv2d_forward(x, w, b, stride, padding, relu, saved)
    scale = growth * np.sqrt(np.prod(w.shape[1:]))  # float32 error grows with the length of each dot product
    y_ref = ref.conv2d_forward(x, w, b, stride, padding, relu)
    close(y, y_ref, dtype, scale)
    g = normal(y.shape, seed + 3, dtype)
    relu_output = y_ref if relu else None          # the same mask for both, so near-zero outputs cannot differ
    got = k.conv2d_backward(x, w, g, stride, padding, need_input_grad, relu_output, saved)
    want = ref.conv2d_backward(x, w, g, stride, padding, need_input_grad, relu_output)
    if need_input_grad:
        close(got[0], want[0], dtype, scale)
    else:
        assert got[0] is None
    close(got[1], want[1], dtype, growth * np.sqrt(y.size))
    close(got[2], want[2], dtype, growth * np.sqrt(y.size))
    # New arrays, none a view of another or of an input: the engine keeps them as the leaves' .grad
    # without a copy (Function.fresh_grads)
    arrays = [a for a in (x, w, b, g, relu_output, *got) if a is not None]
    assert not any(np.may_share_memory(a, other) for a in got if a is not None for other in arrays if other is not a)
    return got


def test_numba_conv2d_keeps_small_columns_for_its_backward(monkeypatch):
    """The columns are kept only when a backward will follow (a `saved` dict) and they fit the limit;
    the backward then skips im2col and gives the same gradients as one that rebuilds them."""
    cpu = pytest.importorskip("kernels.cpu", reason="numba is not installed")
    conv = importlib.import_module("kernels.cpu.conv")
    x, w, b = normal((2, 3, 6, 5), 0, np.float64), normal((4, 3, 3, 3), 1, np.float64), normal(4, 2, np.float64)
    g = normal((2, 4, 3, 2), 3, np.float64)
    saved = {}
    y = cpu.conv2d_forward(x, w, b, (2, 2), (1, 0), True, saved)
    assert saved["columns"].shape == (2 * 3 * 2, 3 * 3 * 3)
    np.testing.assert_array_equal(saved["columns"], cpu.im2col(x, (3, 3), (2, 2), (1, 0), (3, 2)))
    for need_input_grad in (True, False):
        kept = cpu.conv2d_backward(x, w, g, (2, 2), (1, 0), need_input_grad, y, saved)
        rebuilt = cpu.conv2d_backward(x, w, g, (2, 2), (1, 0), need_input_grad, y)
        for a, b_ in zip(kept, rebuilt):
            assert (a is None) == (b_ is None)
            if a is not None:
                np.testing.assert_allclose(a, b_, rtol=1e-12)
    monkeypatch.setattr(conv, "_KEEP_COLUMNS_BYTES", saved["columns"].nbytes - 1)
    too_big = {}
    cpu.conv2d_forward(x, w, b, (2, 2), (1, 0), True, too_big)
    assert too_big == {}


@settings(max_examples=examples(40))
@given(conv_geometry(max_channels=48), st.booleans(), dtypes, seeds)
def test_numba_conv2d_in_many_chunks(geometry, need_input_grad, dtype, seed):
    """Tiny chunks, so that every drawn geometry runs the chunk loops (only layers with megabytes of
    columns do at the real limits): columns rebuilt per chunk, the weight gradient summed over chunks
    in both GEMM orientations (up to 32 output channels it is computed swapped), col2im per chunk."""
    cpu = pytest.importorskip("kernels.cpu", reason="numba is not installed")
    conv = importlib.import_module("kernels.cpu.conv")
    x_shape, w_shape, stride, padding = geometry
    x, w, b = normal(x_shape, seed, dtype), normal(w_shape, seed + 1, dtype), normal(w_shape[0], seed + 2, dtype)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conv, "_CHUNK_BYTES", 1)
        patch.setattr(conv, "_MIN_ROWS", 1)                # one output row of the batch per chunk
        patch.setattr(conv, "_KEEP_COLUMNS_BYTES", 0)      # nothing kept: the backward rebuilds them
        saved = {}
        got = check_conv2d(cpu, x, w, b, stride, padding, True, saved, need_input_grad, dtype, seed)
    assert saved == {}
    assert np.shares_memory(conv._filter_matrix(got[1]), got[1])      # stored as the filters (nn.Conv2d)


@settings(max_examples=examples(40))
@given(st.integers(12, 80), st.integers(1, 90), st.integers(1, 14), st.booleans(), seeds)
@example(12, 1, 1, True, 0)                        # one tile, k = 1, one 16-wide panel
@example(6272 // 8, 400, 2, False, 1)              # inception 3a's 5x5 forward, an eighth of its rows
@example(25, 3, 13, True, 2)                       # 208 columns: three 64-wide panels and a 16-wide one
def test_numba_gemm(m, k, vectors, given_out, seed):
    """minigrad's float32 GEMM against a float64 product: every panel width (16 to 64, and wider
    products in several panels), rows past the last 12-row tile (a zero-padded tile of their own), B in
    C order (read where it lies) or Fortran order (packed first)."""
    pytest.importorskip("kernels.cpu", reason="numba is not installed")
    gemm = importlib.import_module("kernels.cpu.gemm")
    n = 16 * vectors
    a, b = normal((m, k), seed, np.float32), normal((k, n), seed + 1, np.float32)
    out = np.full((m, n), np.nan, np.float32) if given_out else None
    got = gemm.matmul(a, b if seed % 2 else np.asfortranarray(b), out)
    assert got.dtype == np.float32 and got.shape == (m, n) and (out is None or got is out)
    close(got, (a.astype(np.float64) @ b).astype(np.float32), np.float32, np.sqrt(k))


def test_numba_gemm_refuses_what_it_cannot_compute():
    """The compiled tiles do no bounds checks: every shape they cannot take is refused with its shapes."""
    pytest.importorskip("kernels.cpu", reason="numba is not installed")
    gemm = importlib.import_module("kernels.cpu.gemm")
    a, b = np.ones((12, 3), np.float32), np.ones((3, 16), np.float32)
    for bad_a, bad_b in [(a[:11], b), (a, np.ones((3, 24), np.float32)), (a, np.ones((4, 16), np.float32)),
                         (a.astype(np.float64), b), (np.ones((12, 0), np.float32), np.ones((0, 16), np.float32)),
                         (a[None], b)]:
        assert not gemm.handles(bad_a, bad_b)
        with pytest.raises(ValueError, match=r"gemm\.matmul: .*got "):
            gemm.matmul(bad_a, bad_b)
    for out in [np.empty((12, 32), np.float32), np.empty((12, 16)), np.empty((16, 12), np.float32).T]:
        with pytest.raises(ValueError, match=r"gemm\.matmul: out must be .* \(12, 16\)"):
            gemm.matmul(a, b, out)


@settings(max_examples=examples(40))
@given(conv_geometry(max_channels=8), st.sampled_from([16, 24, 32]), st.sampled_from([8, 16, 24, 32, 48, 64, 80]),
       st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans(), seeds)
# 25 pixels: two tiles, a tail
@example(((1, 1, 5, 5), (1, 1, 3, 3), (1, 1), (1, 1)), 16, 16, True, True, True, False, False, 0)
# 9 Winograd tiles, 5 on an edge
@example(((1, 1, 5, 5), (1, 1, 3, 3), (1, 1), (1, 1)), 16, 16, True, True, True, False, True, 0)
@example(((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), (0, 0)), 32, 80, True, False, False, True, True, 1)  # 1 pixel, 1x1
@example(((3, 1, 9, 7), (1, 1, 1, 1), (1, 1), (0, 0)), 16, 24, False, True, True, False, True, 2)  # 1x1: 16-wide weight tiles
# 4c's 5x5 (24 input channels): its input gradient in tiles as 32 channels, 8 dropped
@example(((2, 1, 14, 14), (1, 1, 5, 5), (1, 1), (2, 2)), 24, 64, True, False, True, False, True, 8)
# 5b's 5x5: 9 classes of windows
@example(((2, 1, 7, 7), (1, 1, 5, 5), (1, 1), (2, 2)), 16, 32, True, False, True, True, True, 3)
@example(((2, 1, 7, 7), (1, 1, 5, 5), (1, 1), (2, 2)), 16, 32, True, False, True, False, True, 3)
# windows wholly in the padding
@example(((1, 1, 3, 4), (1, 1, 1, 2), (1, 2), (2, 1)), 32, 16, True, False, True, True, True, 4)
# 3a's 5x5: 2 direct tiles a row
@example(((1, 1, 28, 28), (1, 1, 5, 5), (1, 1), (2, 2)), 16, 32, True, False, True, False, True, 5)
# direct tiles, rows 2C apart
@example(((2, 1, 27, 29), (1, 1, 3, 3), (2, 2), (1, 1)), 32, 48, False, False, True, True, True, 6)
# columns split mid kernel row
@example(((1, 1, 4, 9), (1, 1, 3, 5), (2, 1), (1, 2)), 32, 32, False, False, True, True, True, 7)
def test_numba_conv2d_float32_in_minigrads_gemm(geometry, c, o, with_bias, keep, need_input_grad, split_columns,
                                              use_winograd, seed):
    """float32 layers with 8-80 output channels, against the reference.  The forward of a kxk layer
    with a multiple of 16 outputs runs whole in tiles (_conv_tiles, any number of pixels: the last tile
    may be short; only the taps inside the image for some pixel of a tile; direct tiles, reading the
    image itself, where 12 whole windows lie side by side in a row), and so does its input
    gradient at stride 1 (a convolution with the flipped filters); with use_winograd, a 3x3 layer's at
    stride 1 with a multiple of 16 outputs runs by Winograd's F(2x2, 3x3) instead, its weight gradient
    too.  Every other weight gradient runs in
    _weight_grad_tiles (its columns built block by block; no columns kept for it), a 1x1 layer's in
    _pointwise_weight_grad; with split_columns, whatever its size, a kxk layer's with a multiple of 16
    outputs runs in _weight_grad_columns (its tasks split the columns; in GoogLeNet the wide layers at
    7x7 and 14x14).  A 1x1 layer's forward and the other input gradients run in gemm.matmul where the
    product has a 12-row tile and a side of at most 64 (on the Zen, a 1x1 layer's at any size)."""
    cpu = pytest.importorskip("kernels.cpu", reason="numba is not installed")
    conv, gemm = importlib.import_module("kernels.cpu.conv"), importlib.import_module("kernels.cpu.gemm")
    winograd = importlib.import_module("kernels.cpu.winograd")
    (n, _, h, w_), (_, _, kh, kw), stride, padding = geometry
    x, w = normal((n, c, h, w_), seed, np.float32), normal((o, c, kh, kw), seed + 1, np.float32)
    if seed % 2:                    # stored as nn.Conv2d stores them: read in place (else copied first)
        w = stored_filters(w)
    b = normal(o, seed + 2, np.float32) if with_bias else None
    out_size = (conv_out_size(h, kh, stride[0], padding[0]), conv_out_size(w_, kw, stride[1], padding[1]))
    size, weight_size = ((conv.winograd_size(np.float32, (o, c, kh, kw), stride, padding, out_size, weight_grad)
                          if use_winograd else None) for weight_grad in (False, True))
    calls, matmul, tiles, weight_tiles, pointwise_weight, weight_columns = [], gemm.matmul, conv._conv_tiles, \
        conv._weight_grad_tiles, conv._pointwise_weight_grad, conv._weight_grad_columns

    def counted(name, function):
        return lambda *args: calls.append(name) or function(*args)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gemm, "matmul", counted("matmul", matmul))
        patch.setattr(conv, "_conv_tiles", counted("tiles", tiles))
        patch.setattr(conv, "_weight_grad_tiles", counted("weight", weight_tiles))
        patch.setattr(conv, "_pointwise_weight_grad", counted("pointwise weight", pointwise_weight))
        patch.setattr(conv, "_weight_grad_columns", counted("weight columns", weight_columns))
        patch.setattr(winograd, "_winograd_tiles", counted("winograd", winograd._winograd_tiles))
        patch.setattr(winograd, "_winograd_weight_grad", counted("winograd weight", winograd._winograd_weight_grad))
        patch.setattr(winograd, "_winograd_by_element", counted("winograd", winograd._winograd_by_element))
        patch.setattr(winograd, "_winograd_weight_grad_by_element",
                      counted("winograd weight", winograd._winograd_weight_grad_by_element))
        if not use_winograd:
            patch.setattr(conv, "winograd_size", lambda *args, **kwargs: None)
        if split_columns:                       # at any size and any number of pixels
            patch.setattr(conv, "_COLUMN_SPLIT_MIN_BYTES", 0)
            patch.setattr(conv, "_COLUMN_SPLIT_MAX_PIXELS", np.inf)
        saved = {} if keep else None
        growth = max(WINOGRAD_GROWTH.get(size, 1.0), WINOGRAD_GROWTH.get(weight_size, 1.0))
        grad_w = check_conv2d(cpu, x, w, b, stride, padding, True, saved, need_input_grad, np.float32, seed, growth)[1]
    assert np.shares_memory(conv._filter_matrix(grad_w), grad_w)      # the weight gradient: stored as the filters
    rows = n * conv_out_size(h, kh, stride[0], padding[0]) * conv_out_size(w_, kw, stride[1], padding[1])
    width = c * kh * kw
    pointwise = (kh, kw, *stride, *padding) == (1, 1, 1, 1, 0, 0)
    thin = rows >= gemm.TILE_ROWS and (min(width, o) <= conv._OWN_GEMM_MAX_THIN or rows >= conv._OWN_GEMM_MIN_ROWS_WIDE)
    input_in_gemm = ["matmul"] if thin and width % gemm.LANES == 0 else []     # (rows, o) @ (o, width)
    forward_in_gemm = input_in_gemm if o % gemm.LANES == 0 else []   # (rows, width) @ (width, o)
    if pointwise and rows >= gemm.TILE_ROWS and conv.pointwise_in_own_gemm(np.float32, conv.pointwise_columns(np.float32, o)):
        forward_in_gemm = ["matmul"]                   # at any number of rows, on the Zen (O padded to whole vectors)
    if pointwise and rows >= gemm.TILE_ROWS and conv.pointwise_in_own_gemm(np.float32, c):
        input_in_gemm = ["matmul"]                                   # likewise (its B packed from the transpose)
    # stride 1, padding < kernel: the input gradient is a convolution too, in tiles (c = 24: as 32, 8 dropped)
    input_grad_in_tiles = not pointwise and stride == (1, 1) and padding[0] < kh and padding[1] < kw
    if pointwise:
        weight = ["pointwise weight"] if c % gemm.LANES == 0 else []            # else OpenBLAS's GEMM
        expected = forward_in_gemm + weight + (input_in_gemm if need_input_grad else [])
    else:
        expected = ["winograd"] if size else ["tiles"] if o % gemm.LANES == 0 else forward_in_gemm
        if need_input_grad and (size or input_grad_in_tiles):
            expected = expected + ["winograd" if size else "tiles"]
        tasks = importlib.import_module("numba").get_num_threads()
        by_columns = split_columns and o % gemm.LANES == 0 and -(-width // gemm.LANES) >= tasks > 1
        weight = "winograd weight" if weight_size else "weight columns" if by_columns else "weight"
        expected = expected + [weight] + \
            (input_in_gemm if need_input_grad and not (size or input_grad_in_tiles) else [])
    assert calls == expected, (rows, width, o)
    assert not saved                                   # the backward builds its columns itself


def test_channels_padded_to_whole_vectors_only_where_that_adds_at_most_half():
    """conv._whole_vectors: a channel count rounded up to whole vectors of 16 (the extra channels computed
    on zero filters, then dropped) only where that adds at most half again; which 1x1 forwards and input
    gradients take it (test_numba_conv2d_float32_in_minigrads_gemm checks their results and paths)."""
    conv = pytest.importorskip("kernels.cpu.conv", reason="numba is not installed")
    assert [conv._whole_vectors(n) for n in (16, 24, 32, 40, 48, 3, 8, 20, 1)] == \
        [16, 32, 32, 48, 48, None, None, None, None]
    on_zen = conv.gemm.ON_ZEN
    assert conv.pointwise_columns(np.float32, 24) == (32 if on_zen else 24)
    assert conv.pointwise_columns(np.float32, 8) == 8 and conv.pointwise_columns(np.float64, 24) == 24
    assert conv._input_grad_in_tiles(np.float32, (64, 24, 5, 5), (1, 1), (2, 2))
    assert not conv._input_grad_in_tiles(np.float32, (64, 3, 3, 3), (1, 1), (1, 1))      # 3 -> 16: no
    assert not conv._input_grad_in_tiles(np.float64, (64, 32, 3, 3), (1, 1), (1, 1))


@settings(max_examples=examples(30))
@given(st.sampled_from([(2, 3), (4, 3), (2, 5)]), st.integers(1, 3), st.integers(1, 30), st.integers(1, 30),
       st.integers(0, 4), st.integers(0, 4), st.sampled_from([16, 32, 48]), st.sampled_from([16, 32, 64, 80]),
       st.booleans(), st.booleans(), st.booleans(), seeds)
@example((2, 3), 2, 7, 7, 1, 1, 32, 64, True, True, False, 0)    # a 7x7 output: 4x4 tiles, the last cut short
@example((4, 3), 2, 7, 7, 1, 1, 32, 64, True, True, True, 0)     # 5b's case: 2x2 tiles of 4x4, all in one pass
@example((4, 3), 1, 7, 7, 1, 1, 48, 160, True, True, True, 5)    # 80 output channels a thread: blocks of 64 and 16
@example((4, 3), 1, 28, 28, 1, 1, 16, 16, False, True, False, 1)  # 49 tiles of 4x4: on both threads
@example((2, 3), 1, 28, 28, 1, 1, 16, 16, False, True, False, 1)  # 196 tiles: blocks on both threads, a short last
@example((2, 5), 1, 1, 1, 4, 4, 16, 16, True, False, True, 2)    # one pixel padded by 4: a 5x5 output from zeros
@example((4, 3), 3, 3, 9, 0, 2, 48, 80, True, True, True, 3)     # unpadded rows, columns padded by 2: 1x11 outputs
@example((2, 5), 2, 14, 14, 2, 2, 32, 128, True, True, False, 4)  # 4e's 5x5, batch 2
def test_numba_conv2d_by_winograd(size, n, h, w, ph, pw, c, o, with_bias, need_input_grad, by_element, seed):
    """Layers that winograd.py can take (winograd_size: float32 3x3 or 5x5 filters at stride 1, multiples
    of 16 channels), each F(m x m, r x r) forced whatever the layer's size, in blocks of tiles or (by_element)
    all the batch's tiles at once: forward, weight gradient and input gradient against the reference,
    within WINOGRAD_GROWTH times the usual float32 error.  Output sizes that are and are not multiples of
    the tile (tiles cut short at the edges), every padding it takes (0 to r - 1 on each side; the input
    gradient's convolution is padded by r - 1 minus it), patches wholly or partly in the padding, 48
    channels (split 16/32 between two threads in the weight gradient's blocks)."""
    cpu = pytest.importorskip("kernels.cpu", reason="numba is not installed")
    conv, winograd = importlib.import_module("kernels.cpu.conv"), importlib.import_module("kernels.cpu.winograd")
    r = size[1]
    ph, pw = ph % r, pw % r
    assume(h + 2 * ph >= r and w + 2 * pw >= r)
    x, wt = normal((n, c, h, w), seed, np.float32), normal((o, c, r, r), seed + 1, np.float32)
    if seed % 2:
        wt = stored_filters(wt)
    b = normal(o, seed + 2, np.float32) if with_bias else None
    assert conv.winograd_size(np.float32, wt.shape, (1, 1), (ph, pw), (28, 28))    # its shapes, at a size it picks
    calls = []
    kernels_ = ["_winograd_tiles", "_winograd_weight_grad", "_winograd_by_element", "_winograd_weight_grad_by_element"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conv, "winograd_size", lambda *args, **kwargs: size)
        patch.setattr(winograd, "BY_ELEMENT_MAX_TILES", 10**9 if by_element else 0)
        def counted(name, function, *args):
            calls.append((name, args[:3]))
            return function(*args)
        for name in kernels_:
            patch.setattr(winograd, name, functools.partial(counted, name, getattr(winograd, name)))
        check_conv2d(cpu, x, wt, b, (1, 1), (ph, pw), True, {}, need_input_grad, np.float32, seed, WINOGRAD_GROWTH[size])
    variant = (winograd.SIZES.index(size), *size)
    forward, weight = kernels_[2:] if by_element else kernels_[:2]
    assert calls == [(forward, variant)] * (1 + need_input_grad) + [(weight, variant)]


def test_winograd_refuses_what_its_kernels_cannot_take():
    """winograd.py's kernels do no bounds checks: every shape they cannot take is refused, naming the function
    and the shapes, before a kernel runs (conv.py reaches them only through winograd_size)."""
    winograd = pytest.importorskip("kernels.cpu.winograd", reason="numba is not installed")
    xs, f = np.zeros((2, 7, 7, 32), np.float32), np.zeros((9 * 32, 16), np.float32)
    g = np.zeros((2 * 7 * 7, 16), np.float32)
    bad = [
        (lambda: winograd.transform_filters((3, 3), f, 32, 16), r"transform_filters: size must be one of"),
        (lambda: winograd.transform_filters((2, 3), f, 24, 16), r"transform_filters: .*got float32 \(288, 16\) for C=24"),
        (lambda: winograd.transform_filters((2, 3), f.astype(np.float64), 32, 16), r"transform_filters: .*got float64"),
        (lambda: winograd.convolve((2, 3), xs[..., :24], f, 16, (1, 1)), r"convolve: input and output channels .* 24 and 16"),
        (lambda: winograd.convolve((2, 3), xs, f, 24, (1, 1)), r"convolve: input and output channels .* 32 and 24"),
        (lambda: winograd.convolve((2, 3), xs.astype(np.float64), f, 16, (1, 1)), r"convolve: needs a float32"),
        (lambda: winograd.convolve((2, 3), xs, f[:-1], 16, (1, 1)),
         r"convolve: filters must be .* \(288, 16\) .* \(287, 16\)"),
        (lambda: winograd.convolve((2, 3), xs, f, 16, (1, 1), flip=True),
         r"convolve: filters must be .* \(144, 32\) for 32 input and 16 output channels \(flip\); got float32 \(288, 16\)"),
        (lambda: winograd.convolve((2, 3), xs, f.astype(np.float64), 16, (1, 1)), r"convolve: filters must be .* float64"),
        (lambda: winograd.convolve((2, 3), xs, f, 16, (-1, 1)), r"convolve: padding must be"),
        (lambda: winograd.convolve((2, 3), xs[:, :1, :1], f, 16, (0, 0)), r"convolve: a 3x3 filter does not fit"),
        (lambda: winograd.convolve((2, 3), xs, f, 16, (1, 1), np.zeros(8, np.float32)), r"convolve: bias must"),
        (lambda: winograd.convolve((2, 3), xs, f, 16, (1, 1), block_tiles=10), r"convolve: block_tiles"),
        (lambda: winograd.weight_grad((2, 3), xs, g, (1, 1), (7, 6)), r"weight_grad: .*out_size \(7, 6\)"),
        (lambda: winograd.weight_grad((2, 3), xs, g[1:], (1, 1), (7, 7)), r"weight_grad: .*float32 \(97, 16\)"),
        (lambda: winograd.weight_grad((2, 3), xs, g[:, :8], (1, 1), (7, 7)), r"weight_grad: input and output channels"),
    ]
    for call, message in bad:
        with pytest.raises(ValueError, match=message):
            call()


def test_minigrad_winograd_turns_winograd_off(monkeypatch):
    """MINIGRAD_WINOGRAD=0: no layer runs by Winograd (its float32 results then match the reference within
    the usual tolerance); '1' or unset: the measured rule; anything else: an error naming the variable."""
    cpu = pytest.importorskip("kernels.cpu", reason="numba is not installed")
    conv, winograd = importlib.import_module("kernels.cpu.conv"), importlib.import_module("kernels.cpu.winograd")
    shape = (32, 16, 3, 3)
    monkeypatch.delenv("MINIGRAD_WINOGRAD", raising=False)
    assert conv.winograd_size(np.float32, shape, (1, 1), (1, 1), (28, 28)) == (4, 3)
    monkeypatch.setenv("MINIGRAD_WINOGRAD", "1")
    assert conv.winograd_size(np.float32, shape, (1, 1), (1, 1), (14, 14)) == (2, 3)
    monkeypatch.setenv("MINIGRAD_WINOGRAD", "0")
    assert conv.winograd_size(np.float32, shape, (1, 1), (1, 1), (28, 28)) is None
    calls = []
    monkeypatch.setattr(winograd, "_winograd_tiles", lambda *args: calls.append(args))
    x, w = normal((1, 16, 28, 28), 0, np.float32), normal(shape, 1, np.float32)
    check_conv2d(cpu, x, w, None, (1, 1), (1, 1), True, {}, True, np.float32, 2)
    assert not calls
    monkeypatch.setenv("MINIGRAD_WINOGRAD", "off")
    with pytest.raises(ValueError, match=r"MINIGRAD_WINOGRAD='off': expected '1'"):
        conv.winograd_size(np.float32, shape, (1, 1), (1, 1), (28, 28))


def test_winograd_matrices_are_the_papers():
    """_matrices derives F(2x2, 3x3)'s transforms as Lavin and Gray print them (up to the sign of the
    last row of B^T and column of A^T, which cancel), and every size's computes a correlation exactly
    (float64, one tile: A^T [(G g G^T) * (B^T d B)] A against the direct sums)."""
    winograd = pytest.importorskip("kernels.cpu.winograd", reason="numba is not installed")
    b_t, g_, a_t = winograd.MATRICES[winograd.SIZES.index((2, 3))]
    assert b_t == ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, -1, 0, 1))
    assert g_ == ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
    assert a_t == ((1, 1, 1, 0), (0, 1, -1, 1))
    rng = np.random.default_rng(0)
    for (m, r), (b_t, g_, a_t) in zip(winograd.SIZES, winograd.MATRICES):
        b_t, g_, a_t = (np.array(t, dtype=float) for t in (b_t, g_, a_t))
        d, g = rng.standard_normal((m + r - 1, m + r - 1)), rng.standard_normal((r, r))
        y = a_t @ ((g_ @ g @ g_.T) * (b_t @ d @ b_t.T)) @ a_t.T
        direct = [[np.sum(d[i:i + r, j:j + r] * g) for j in range(m)] for i in range(m)]
        np.testing.assert_allclose(y, direct, rtol=1e-12, atol=1e-12)


@settings(max_examples=examples(30))
@given(st.integers(1, 150), st.integers(1, 40), st.integers(1, 5), st.integers(1, 5), seeds)
@example(192, 384, 3, 3, 0)                  # 5b's 3x3 (its input gradient: 192 outputs, 384 inputs)
def test_pack_flipped_packs_the_input_gradients_filters(o, c, kh, kw, seed):
    """_pack_flipped (run in each task of the input gradient's tiles) packs, from the forward's filter
    matrix, what gemm.pack_panels packs from the filter matrix of the flipped view of the forward's
    filters: panels of 64 output channels, then the rest."""
    conv = pytest.importorskip("kernels.cpu.conv", reason="numba is not installed")
    gemm = importlib.import_module("kernels.cpu.gemm")
    forward = normal((c, o, kh, kw), seed, np.float32)           # the forward: o inputs, c outputs
    panels = np.full(o * c * kh * kw, np.nan, np.float32)
    conv._pack_flipped(conv._filter_matrix(forward).reshape(-1), o, c, kh, kw, panels)
    flipped = forward[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    np.testing.assert_array_equal(panels, gemm.pack_panels(conv._filter_matrix(flipped)))


@settings(max_examples=examples(30))
@given(st.integers(1, 150), st.integers(1, 150), seeds)
@example(192, 832, 0)                        # 5b's 1x1 832->192: its input gradient's B, the filters transposed
def test_pack_panels_packs_a_transpose_as_its_copy(k, n, seed):
    """pack_panels packs a float32 B (k, n) that is the transpose of a C-ordered array (in 16x16 register
    transposes, the threads splitting its rows) exactly as it packs a C-ordered copy of it."""
    gemm = pytest.importorskip("kernels.cpu.gemm", reason="numba is not installed")
    bt = normal((n, k), seed, np.float32)
    np.testing.assert_array_equal(gemm.pack_panels(bt.T), gemm.pack_panels(np.ascontiguousarray(bt.T)))


@settings(max_examples=examples(60))
@given(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40), st.integers(1, 7), st.integers(1, 7),
       st.integers(1, 3), st.integers(1, 3), st.integers(0, 3), st.integers(0, 3))
@example(8, 28, 28, 5, 5, 1, 1, 2, 2)          # 3a's 5x5: two direct tiles in each of its 24 whole rows
@example(8, 7, 7, 3, 3, 1, 1, 1, 1)            # 5b's 3x3: 5 whole windows a row, no direct tile
def test_tile_plan_puts_direct_tiles_first(n, h, w, kh, kw, sh, sw, ph, pw):
    """_tile_plan orders every pixel once; its first `direct` tiles are 12 consecutive pixels of one output
    row whose windows are whole (what _conv_tiles reads from the image itself, with no bounds checks),
    as many as each row's whole windows make."""
    conv = pytest.importorskip("kernels.cpu.conv", reason="numba is not installed")
    assume(kh <= h + 2 * ph and kw <= w + 2 * pw)
    oh, ow = conv_out_size(h, kh, sh, ph), conv_out_size(w, kw, sw, pw)
    plan = conv._tile_plan(n, h, w, 16, 16, kh, kw, sh, sw, ph, pw, oh, ow, 2)
    assert sorted(plan.order.tolist()) == list(range(n * oh * ow))
    whole_y = [oy for oy in range(oh) if 0 <= oy * sh - ph and oy * sh - ph + kh <= h]
    whole_x = [ox for ox in range(ow) if 0 <= ox * sw - pw and ox * sw - pw + kw <= w]
    assert plan.direct == n * len(whole_y) * (len(whole_x) // 12)
    for t in range(plan.direct):
        pixels = plan.order[12 * t:12 * t + 12]
        assert plan.starts[t] == 12 * t and plan.starts[t + 1] == 12 * t + 12
        assert (np.diff(pixels) == 1).all() and pixels[0] // ow == pixels[-1] // ow
        assert pixels[0] % (oh * ow) // ow in whole_y and {p % ow for p in pixels} <= set(whole_x)


@settings(max_examples=examples(25))
@given(conv_geometry(max_channels=6), st.sampled_from([8, 24, 64]), st.booleans(), seeds)
@example(((2, 3, 23, 23), (64, 3, 7, 7), (2, 2), (3, 3)), 64, True, 0)     # the stem: 147-long column rows
def test_numba_conv2d_float32_weight_grad_in_tiles_any_width(geometry, o, need_input_grad, seed):
    """float32 layers with few input channels (column rows of any length: padded to 16 in the tiles)
    and 8-64 outputs: the weight gradient runs in _weight_grad_tiles, except a 1x1 layer's whose pixel
    rows (C long) are not a multiple of 16; the gradients against the reference."""
    cpu = pytest.importorskip("kernels.cpu", reason="numba is not installed")
    conv = importlib.import_module("kernels.cpu.conv")
    (n, c, h, w_), (_, _, kh, kw), stride, padding = geometry
    x, w = normal((n, c, h, w_), seed, np.float32), normal((o, c, kh, kw), seed + 1, np.float32)
    calls, weight_tiles = [], conv._weight_grad_tiles
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conv, "_weight_grad_tiles", lambda *args: calls.append("built") or weight_tiles(*args))
        saved = {}
        check_conv2d(cpu, x, w, normal(o, seed + 2, np.float32), stride, padding, True, saved, need_input_grad,
                     np.float32, seed)
    pointwise = (kh, kw, *stride, *padding) == (1, 1, 1, 1, 0, 0)
    assert calls == ([] if pointwise else ["built"])    # built columns (c < 16: a 1x1 layer's rows are not a multiple of 16)
    assert not saved                                    # no columns kept: no backward reads them


pool_examples = [((2, 3, 7, 7), (3, 3), (1, 1), (1, 1), False),      # GoogLeNet's branch pool: overlapping, stride 1
                 ((2, 3, 9, 9), (3, 3), (2, 2), (0, 0), True),       # stage pool: overlapping, stride 2, ceil mode
                 ((1, 2, 8, 6), (3, 3), (2, 2), (1, 1), True),       # ceil mode with padding
                 ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0), False),      # a 1-pixel image
                 ((1, 2, 1, 1), (3, 3), (2, 2), (1, 1), True),       # 1 pixel, padded
                 ((1, 1, 2, 5), (1, 3), (2, 1), (0, 0), False)]      # a row no window covers, under three columns


def with_pool_examples(**fixed):
    """Always test the geometries above too, besides the drawn ones (the other arguments fixed)."""
    def decorate(test):
        for geometry in pool_examples:
            test = example(geometry=geometry, **fixed)(test)
        return test
    return decorate


@on_every_backend
@settings(max_examples=examples(60))
@given(geometry=pool_geometry(max_channels=64), dtype=dtypes, seed=seeds, launch=launches)
@with_pool_examples(dtype=np.float32, seed=0, launch=(7, 3))
def test_max_pool2d(backend_name, geometry, dtype, seed, launch):
    k = get_backend(backend_name, launch)
    x_shape, kernel, stride, padding, ceil_mode = geometry
    x = distinct_values(x_shape, seed, dtype, spacing=1.0)
    y, argmax = k.max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    y_ref, argmax_ref = ref.max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    g = normal(y.shape, seed, dtype)
    geometry_args = (x_shape, kernel, stride, padding, ceil_mode)
    close(k.max_pool2d_backward(g, argmax, *geometry_args), ref.max_pool2d_backward(g, argmax_ref, *geometry_args),
          dtype)


@on_every_backend
@settings(max_examples=examples(30))
@given(geometry=pool_geometry(), special=st.sampled_from([-np.inf, np.nan, 0.0]), seed=seeds, launch=launches)
@with_pool_examples(special=-np.inf, seed=0, launch=(3, 2))
def test_max_pool2d_ties_infinities_and_nan_pick_the_same_real_pixel(backend_name, geometry, special, seed, launch):
    """Ties: the first maximum wins, on every backend (CPU and GPU alike).  All-(-inf) or NaN windows:
    never a padding cell (which would be an out-of-bounds index for the backward kernel)."""
    k = get_backend(backend_name, launch)
    x_shape, kernel, stride, padding, ceil_mode = geometry
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, x_shape).astype(np.float64)
    x[rng.random(x_shape) < 0.3] = special
    y, argmax = k.max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    y_ref, argmax_ref = ref.max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    assert argmax.min() >= 0 and argmax.max() < x_shape[2] * x_shape[3]
    g = normal(y.shape, seed, np.float64)          # the gradient follows the same winners
    geometry_args = (x_shape, kernel, stride, padding, ceil_mode)
    close(k.max_pool2d_backward(g, argmax, *geometry_args), ref.max_pool2d_backward(g, argmax_ref, *geometry_args),
          np.float64)


@settings(max_examples=examples(60))
@given(geometry=pool_geometry(max_channels=64), count_include_pad=st.booleans(), dtype=dtypes, seed=seeds,
       launch=launches)
@on_every_backend
@with_pool_examples(count_include_pad=True, dtype=np.float32, seed=0, launch=(32, 5))
def test_avg_pool2d(backend_name, geometry, count_include_pad, dtype, seed, launch):
    k = get_backend(backend_name, launch)
    x_shape, kernel, stride, padding, ceil_mode = geometry
    x = normal(x_shape, seed, dtype)
    args = kernel, stride, padding, ceil_mode, count_include_pad
    y = k.avg_pool2d_forward(x, *args)
    close(y, ref.avg_pool2d_forward(x, *args), dtype)
    g = normal(y.shape, seed + 1, dtype)
    close(k.avg_pool2d_backward(g, x_shape, *args), ref.avg_pool2d_backward(g, x_shape, *args), dtype)


shapes = st.tuples(st.integers(1, 3), st.integers(1, 64), st.integers(1, 13), st.integers(1, 13))


@on_every_backend
@settings(max_examples=examples(30))
@given(shapes, dtypes, seeds, launches)
def test_relu(backend_name, shape, dtype, seed, launch):
    k = get_backend(backend_name, launch)
    x = normal(shape, seed, dtype)
    x.flat[::7] = 0.0                                # exact zeros: no gradient, as in the reference
    y = k.relu_forward(x)
    np.testing.assert_array_equal(y, ref.relu_forward(x))
    g = normal(shape, seed + 1, dtype)
    np.testing.assert_array_equal(k.relu_backward(g, y), ref.relu_backward(g, y))


@settings(max_examples=examples(40))
@given(shapes, st.integers(1, 7), st.floats(1e-4, 1.0), st.sampled_from([0.75, 0.5, 1.3]), st.floats(0.5, 2.0),
       dtypes, seeds, launches)
@on_every_backend
def test_lrn(backend_name, shape, size, alpha, beta, k_, dtype, seed, launch):
    k = get_backend(backend_name, launch)
    x = normal(shape, seed, dtype) * 3
    y, scale = k.lrn_forward(x, size, alpha, beta, k_)
    y_ref, scale_ref = ref.lrn_forward(x, size, alpha, beta, k_)
    close(y, y_ref, dtype)
    close(scale, scale_ref, dtype, 10)
    g = normal(shape, seed + 1, dtype)
    close(k.lrn_backward(x, y, scale, g, size, alpha, beta, k_),
          ref.lrn_backward(x, y_ref, scale_ref, g, size, alpha, beta, k_), dtype, 10)


@on_every_backend
@pytest.mark.parametrize("size", [6, 11, 10**6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lrn_window_wider_than_the_channels(backend_name, size, dtype):
    """Every channel's window holds all five channels: the kernels clip it to +-(C - 1) without changing a sum."""
    k = get_backend(backend_name)
    x = normal((2, 5, 3, 4), 7, dtype) * 3
    y, scale = k.lrn_forward(x, size, 1e-2, 0.75, 1.0)
    y_ref, scale_ref = ref.lrn_forward(x, size, 1e-2, 0.75, 1.0)
    close(y, y_ref, dtype)
    close(scale, scale_ref, dtype, 10)
    close(k.lrn_backward(x, y, scale, x, size, 1e-2, 0.75, 1.0),
          ref.lrn_backward(x, y_ref, scale_ref, x, size, 1e-2, 0.75, 1.0), dtype, 10)


@settings(max_examples=examples(30))
@given(st.lists(st.integers(1, 64), min_size=1, max_size=5), st.integers(1, 3), st.integers(1, 9), dtypes, seeds,
       launches)
@on_every_backend
def test_concat_and_split(backend_name, channel_counts, batch, side, dtype, seed, launch):
    k = get_backend(backend_name, launch)
    parts = [normal((batch, c, side, side + 1), seed + i, dtype) for i, c in enumerate(channel_counts)]
    merged = k.concat(parts, 1)
    np.testing.assert_array_equal(merged, ref.concat(parts, 1))
    for got, want in zip(k.split(merged, channel_counts, 1), parts):
        np.testing.assert_array_equal(got, want)
        if backend_name == "numba":
            assert np.shares_memory(got, merged)           # the CPU split costs no copy: pieces are views


@settings(max_examples=examples(30))
@given(st.integers(2, 5), shapes, st.sampled_from(["C", "channels-last", "mixed", "reversed"]), dtypes, seeds, launches)
@example(4, (8, 64, 13, 13), "channels-last", np.float32, 0, (256, 65535))   # big enough for the Numba kernel
@example(3, (3, 64, 13, 13), "mixed", np.float64, 1, (7, 3))
@example(2, (8, 64, 13, 13), "reversed", np.float32, 2, (33, 65535))
@on_every_backend
def test_add_n(backend_name, count, shape, layout, dtype, seed, launch):
    """The gradients that meet at one tensor, summed in one pass: the reference's sum, in its order
    (so bit for bit), whatever the parts' memory layouts."""
    k = get_backend(backend_name, launch)
    parts = [normal(shape, seed + i, dtype) for i in range(count)]
    if layout == "reversed":                         # negative strides, every other part
        parts = [p[:, ::-1] if i % 2 == 0 else p for i, p in enumerate(parts)]
    elif layout != "C":
        parts = [np.ascontiguousarray(p.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
                 if layout == "channels-last" or i % 2 else p for i, p in enumerate(parts)]
    got = k.add_n(parts)
    np.testing.assert_array_equal(got, ref.add_n(parts))
    assert got.dtype == dtype and not any(np.shares_memory(got, p) for p in parts)


@settings(max_examples=examples(40))
@given(size=st.sampled_from([1, 7, 4095, 4096, 12289, 70001]), momentum=st.sampled_from([0.0, 0.9]),
       weight_decay=st.sampled_from([0.0, 5e-4]), nesterov=st.booleans(), first_step=st.booleans(),
       contiguous=st.booleans(), dtype=dtypes, seed=seeds, launch=launches)
@example(size=70001, momentum=0.9, weight_decay=5e-4, nesterov=False, first_step=False, contiguous=True,
         dtype=np.float32, seed=0, launch=(256, 65535))           # the paper's setting, Numba's parallel kernel
@example(size=12289, momentum=0.9, weight_decay=5e-4, nesterov=True, first_step=False, contiguous=True,
         dtype=np.float64, seed=1, launch=(7, 3))                 # Numba's one-core kernel
@on_every_backend
def test_sgd_update(backend_name, size, momentum, weight_decay, nesterov, first_step, contiguous, dtype, seed, launch):
    """The optimizer's step in one pass: the reference's values bit for bit (each product and sum
    rounded alone, on the GPU too), in place on the parameter and the momentum buffer."""
    k = get_backend(backend_name, launch)
    nesterov = nesterov and momentum > 0
    param, grad, buffer = (normal((size, 2), seed + i, dtype) for i in range(3))
    if not contiguous:                                   # a transposed parameter: the NumPy fallback
        param, buffer = param.T.copy().T, buffer.T.copy().T
    buffer = None if first_step or not momentum else buffer
    want = ref.sgd_update(param.copy(), grad, None if buffer is None else buffer.copy(), 0.01, momentum,
                          weight_decay, nesterov)
    inputs = param.copy(), None if buffer is None else buffer.copy()
    got = k.sgd_update(inputs[0], grad, inputs[1], 0.01, momentum, weight_decay, nesterov)
    np.testing.assert_array_equal(got[0], want[0])
    assert (got[1] is None) == (want[1] is None) == (momentum == 0)
    if momentum:
        np.testing.assert_array_equal(got[1], want[1])
    if backend_name != "cuda":                           # (on a GPU the arrays come back as copies)
        assert got[0] is inputs[0] and (buffer is None or got[1] is inputs[1])


@pytest.mark.parametrize("grad_layout", ["filters", "contiguous"])
def test_numba_sgd_update_runs_in_one_pass_on_filters_stored_as_their_matrix(monkeypatch, grad_layout):
    """A convolution's filters, stored as nn.Conv2d stores them ((KH, KW, C, O) behind their (O, C, KH, KW)
    shape), and their momentum buffer are updated by the one-pass kernel, in place, with the reference's
    values; a gradient in another layout is read through a copy."""
    k = get_backend("numba")
    shape = (64, 32, 3, 3)
    param, grad, buffer = (stored_filters(normal(shape, i, np.float32)) for i in range(3))
    if grad_layout == "contiguous":
        grad = np.ascontiguousarray(grad)
    want = ref.sgd_update(np.array(param), grad, np.array(buffer), 0.01, 0.9, 5e-4, False)
    monkeypatch.setattr(ref, "sgd_update", lambda *args: pytest.fail("the NumPy fallback ran"))
    got = k.sgd_update(param, grad, buffer, 0.01, 0.9, 5e-4, False)
    assert got[0] is param and got[1] is buffer
    np.testing.assert_array_equal(param, want[0])
    np.testing.assert_array_equal(buffer, want[1])
    first = k.sgd_update(param, grad, None, 0.01, 0.9, 5e-4, False)[1]     # a new buffer: in param's layout
    assert first.strides == param.strides


def test_add_n_leaves_other_dtypes_and_shapes_to_numpy():
    k = get_backend("numba")
    big = np.ones((64, 64, 2), np.float32)
    mixed = k.add_n([big, big.astype(np.float64), np.float32(2)])      # promotion and broadcasting, as NumPy's +
    assert mixed.dtype == np.float64 and mixed.shape == big.shape and (mixed == 4).all()
    assert k.add_n([np.arange(5000), np.arange(5000)]).dtype == np.arange(1).dtype


@on_every_backend
@settings(max_examples=examples(30))
@given(pool_geometry(), dtypes, seeds, launches)
def test_col2im_is_the_adjoint_of_im2col(backend_name, geometry, dtype, seed, launch):
    """<im2col(x), c> == <x, col2im(c)>, in the backend's own column layout."""
    k = get_backend(backend_name, launch)
    x_shape, kernel, stride, padding, _ = geometry
    out = tuple(conv_out_size(x_shape[2 + d], kernel[d], stride[d], padding[d]) for d in range(2))
    x = normal(x_shape, seed, dtype)
    cols = k.im2col(x, kernel, stride, padding, out)
    c = normal(cols.shape, seed + 1, dtype)
    lhs = float((cols.astype(np.float64) * c).sum())
    rhs = float((x.astype(np.float64) * k.col2im(c, x_shape, kernel, stride, padding, out)).sum())
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-6)


@on_every_backend
def test_non_contiguous_inputs_give_the_same_results(backend_name):
    k = get_backend(backend_name)
    x = normal((2, 4, 9, 9), 0, np.float32)[:, ::-1, ::2, 1:]        # negative and non-unit strides
    w = normal((4, 3, 3, 3), 1, np.float32).transpose(0, 1, 3, 2)[:, :, ::-1]
    view = x[:, :3]
    close(k.conv2d_forward(view, w, None, (1, 1), (1, 1)), ref.conv2d_forward(view, w, None, (1, 1), (1, 1)),
          np.float32, 6)
    np.testing.assert_array_equal(k.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1), True)[0],
                                  ref.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1), True)[0])
    np.testing.assert_array_equal(k.relu_forward(x), ref.relu_forward(x))


@on_every_backend
def test_every_backend_has_every_kernel_with_the_same_signature(backend_name):
    """The engine dispatches on the array type alone, so every backend's kernels must be called alike."""
    if backend_name == "numba":
        module = get_backend(backend_name)
    else:                                      # the CUDA functions are CudaKernels' methods: no GPU needed
        from kernels.cuda import FUNCTIONS
        from kernels.cuda.ops import CudaKernels
        assert set(kernels.KERNEL_FUNCTIONS) <= set(FUNCTIONS)
        module = CudaKernels(np, launch=None)
    for name in kernels.KERNEL_FUNCTIONS:
        expected = list(inspect.signature(getattr(ref, name)).parameters)
        assert list(inspect.signature(getattr(module, name)).parameters) == expected, name


def test_dispatch_follows_the_array_type_and_minigrad_kernels(monkeypatch):
    monkeypatch.setenv("MINIGRAD_KERNELS", "reference")
    assert kernels.for_array(np.zeros(1)) is ref
    monkeypatch.setenv("MINIGRAD_KERNELS", "numba")
    assert kernels.for_array(np.zeros(1)) is importlib.import_module("kernels.cpu")
    monkeypatch.setenv("MINIGRAD_KERNELS", "fortran")
    with pytest.raises(ValueError, match="MINIGRAD_KERNELS='fortran': expected one of"):
        kernels.for_array(np.zeros(1))
    fake_cupy_array = type("ndarray", (), {"__module__": "cupy._core.core"})()     # recognised by its module
    assert kernels.for_array(fake_cupy_array) is importlib.import_module("kernels.cuda")


@on_every_backend
def test_pool_output_sizes_agree_with_geometry(backend_name):
    k = get_backend(backend_name)
    x = normal((1, 2, 10, 9), 0, np.float32)
    y, _ = k.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1), True)
    assert y.shape[2:] == tuple(pool_out_size(n, 3, 2, 1, True) for n in (10, 9))
