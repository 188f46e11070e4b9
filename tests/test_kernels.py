"""Every fast kernel against the NumPy reference, forward and backward, float32 and float64, on every
backend (tests/backends.py): the Numba CPU kernels, the CUDA kernels run on the CPU by the host
emulation (with odd grid and block sizes), and the CUDA kernels on a GPU (marked gpu).

Tolerances per dtype: float64 agrees to rounding (1e-12 relative); float32 sums in a
different order than the reference, so 1e-5 relative (scaled by the magnitude of the
values summed).
"""

import dataclasses
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
from minigrad.testing import assert_close, conv_geometry, distinct_values, pool_geometry, seeds

from backends import BACKENDS, LAUNCH_SHAPES, get_backend
from conftest import examples

# Winograd's float32 rounding error, as a multiple of a direct convolution's, by tile (kernels/cpu/conv/winograd.py):
# its transforms' coefficients grow with the tile (F(4x4, 3x3)'s B^T has 4s and 5s, its A^T 8s).  Twice what
# the examples of test_numba_conv2d_by_winograd need (F(2x2, 5x5) fails them at 1x, passes at 5x).
WINOGRAD_GROWTH = {(2, 3): 2.0, (4, 3): 10.0, (2, 5): 10.0}
dtypes = st.sampled_from([np.float32, np.float64])
launches = st.sampled_from(LAUNCH_SHAPES)          # (threads per block, most blocks), for the CUDA emulation

on_every_backend = pytest.mark.parametrize("backend_name", BACKENDS)


def close(actual, expected, dtype, scale=1.0):
    assert actual.dtype == dtype
    assert_close(actual, expected, "kernel", scale)


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


def test_numba_conv2d_keeps_small_columns_for_its_backward():
    """The columns are kept only when a backward will follow (a `saved` dict) and they fit the limit;
    the backward then skips im2col and gives the same gradients as one that rebuilds them."""
    cpu = pytest.importorskip("kernels.cpu", reason="numba is not installed")
    tuning = importlib.import_module("kernels.cpu.tuning")
    x, w, b = normal((2, 3, 6, 5), 0, np.float64), normal((4, 3, 3, 3), 1, np.float64), normal(4, 2, np.float64)
    g = normal((2, 4, 3, 2), 3, np.float64)
    assert cpu.conv.plan_for(np.float64, x.shape, w.shape, (2, 2), (1, 0)).keep_columns
    saved = {}
    y = cpu.conv2d_forward(x, w, b, (2, 2), (1, 0), True, saved)
    assert saved["columns"].shape == (2 * 3 * 2, 3 * 3 * 3)
    rows = cpu.im2col(x, (3, 3), (2, 2), (1, 0), (3, 2)).transpose(0, 4, 5, 2, 3, 1).reshape(12, 27)
    np.testing.assert_array_equal(saved["columns"], rows)
    for need_input_grad in (True, False):
        kept = cpu.conv2d_backward(x, w, g, (2, 2), (1, 0), need_input_grad, y, saved)
        rebuilt = cpu.conv2d_backward(x, w, g, (2, 2), (1, 0), need_input_grad, y)
        for a, b_ in zip(kept, rebuilt):
            assert (a is None) == (b_ is None)
            if a is not None:
                np.testing.assert_allclose(a, b_, rtol=1e-12)
    too_big = {}
    with tuning.use(keep_columns_bytes=saved["columns"].nbytes - 1):
        assert not cpu.conv.plan_for(np.float64, x.shape, w.shape, (2, 2), (1, 0)).keep_columns
        cpu.conv2d_forward(x, w, b, (2, 2), (1, 0), True, too_big)
    assert too_big == {}


@settings(max_examples=examples(40))
@given(conv_geometry(max_channels=48), st.booleans(), dtypes, seeds)
def test_numba_conv2d_in_many_chunks(geometry, need_input_grad, dtype, seed):
    """Tiny chunks, so that every drawn geometry runs the chunk loops (only layers with megabytes of
    columns do at the real limits): columns rebuilt per chunk, the weight gradient summed over chunks
    in both GEMM orientations (up to 32 output channels it is computed swapped), col2im per chunk."""
    cpu = pytest.importorskip("kernels.cpu", reason="numba is not installed")
    tuning = importlib.import_module("kernels.cpu.tuning")
    x_shape, w_shape, stride, padding = geometry
    x, w, b = normal(x_shape, seed, dtype), normal(w_shape, seed + 1, dtype), normal(w_shape[0], seed + 2, dtype)
    # one output row of the batch per chunk; nothing kept: the backward rebuilds the columns
    with tuning.use(chunk_bytes=1, min_rows=1, keep_columns_bytes=0):
        saved = {}
        got = check_conv2d(cpu, x, w, b, stride, padding, True, saved, need_input_grad, dtype, seed)
    assert saved == {}
    assert np.shares_memory(cpu.conv.filter_matrix(got[1]), got[1])      # stored as the filters (nn.Conv2d)


@settings(max_examples=examples(40))
@given(st.integers(12, 80), st.integers(1, 90), st.integers(1, 14), st.booleans(), seeds)
@example(12, 1, 1, True, 0)                        # one tile, k = 1, one 16-wide panel
@example(6272 // 8, 400, 2, False, 1)              # inception 3a's 5x5 forward, an eighth of its rows
@example(25, 3, 13, True, 2)                       # 208 columns: three 64-wide panels and a 16-wide one
def test_numba_gemm(m, k, vectors, given_out, seed):
    """minigrad's float32 GEMM against a float64 product: every panel width (16 to 64, and wider
    products in several panels), rows past the last 12-row tile (a zero-padded tile of their own), B in
    C order (read where it lies) or Fortran order (packed first), the tasks taking whole rows of tiles
    (many rows, or one panel) or a tile and a panel each (few row tiles a thread, gemm.PANEL_SPLIT_TILES,
    and more than 64 columns)."""
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
# a 1x1 layer of one pixel: with two threads its weight gradient's second share of the pixels is empty
@example(((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), (0, 0)), 16, 32, True, False, True, False, True, 8)
def test_numba_conv2d_float32_in_minigrads_gemm(geometry, c, o, with_bias, keep, need_input_grad, split_columns,
                                              use_winograd, seed):
    """float32 layers with 8-80 output channels, against the reference, each pass by the algorithm its plan
    names (kernels/cpu/conv/plan.py), and only by it: a kxk layer's forward in tiles (_conv_tiles: the last
    tile may be short, direct tiles where 12 whole windows lie side by side in a row) or by Winograd, its
    input gradient the same way at stride 1 (a convolution with the flipped filters), its weight gradient
    in tiles (_weight_grad_tiles; with split_columns, whatever its size, _weight_grad_columns) or by
    Winograd; a 1x1 layer's products in gemm.matmul or OpenBLAS, its weight gradient from its pixel rows
    (_pointwise_weight_grad).  Without use_winograd, MINIGRAD_WINOGRAD=0."""
    cpu = pytest.importorskip("kernels.cpu", reason="numba is not installed")
    conv, gemm, tuning = cpu.conv, importlib.import_module("kernels.cpu.gemm"), importlib.import_module("kernels.cpu.tuning")
    (n, _, h, w_), (_, _, kh, kw), stride, padding = geometry
    x, w = normal((n, c, h, w_), seed, np.float32), normal((o, c, kh, kw), seed + 1, np.float32)
    if seed % 2:                    # stored as nn.Conv2d stores them: read in place (else copied first)
        w = stored_filters(w)
    b = normal(o, seed + 2, np.float32) if with_bias else None
    calls = []
    counted = {gemm: {"matmul": "matmul"}, conv.tiles: {"_conv_tiles": "tiles"},
               conv.weight_grad: {"_weight_grad_tiles": "weight", "_pointwise_weight_grad": "pointwise weight",
                                  "_weight_grad_columns": "weight columns"},
               conv.winograd: {"_winograd_tiles": "winograd", "_winograd_by_element": "winograd",
                               "_winograd_weight_grad": "winograd weight",
                               "_winograd_weight_grad_by_element": "winograd weight"}}
    split = dict(column_split_min_bytes=0, column_split_max_pixels=np.inf) if split_columns else {}
    with pytest.MonkeyPatch.context() as patch, tuning.use(**split):
        for module, names in counted.items():
            for name, label in names.items():
                patch.setattr(module, name, functools.partial(lambda label, f, *a: calls.append(label) or f(*a),
                                                              label, getattr(module, name)))
        patch.setenv("MINIGRAD_WINOGRAD", "1" if use_winograd else "0")
        plan = conv.plan_for(np.float32, x.shape, w.shape, stride, padding)
        growth = max(WINOGRAD_GROWTH.get(step.winograd, 1.0) for step in (plan.forward, plan.weight_grad))
        saved = {} if keep else None
        grad_w = check_conv2d(cpu, x, w, b, stride, padding, True, saved, need_input_grad, np.float32, seed, growth)[1]
    assert np.shares_memory(conv.filter_matrix(grad_w), grad_w)      # the weight gradient: stored as the filters
    rows = n * plan.out_size[0] * plan.out_size[1]

    def kernel_of(step, weight=False):
        if step.algorithm == "winograd":
            return ["winograd weight" if weight else "winograd"]
        if weight and step.algorithm == "pointwise":
            return ["pointwise weight"] if step.gemm == "minigrad" else []
        if step.algorithm == "tiles":
            return ["weight columns" if step.split == "columns" else "weight"] if weight else ["tiles"]
        return ["matmul"] if step.gemm == "minigrad" and rows >= gemm.TILE_ROWS else []    # else OpenBLAS's
    expected = kernel_of(plan.forward) + (kernel_of(plan.input_grad) if need_input_grad else []) + \
        kernel_of(plan.weight_grad, weight=True)
    assert calls == expected, plan
    # float32 weight gradients of outputs a multiple of 8 never run on columns: none are kept
    assert plan.weight_grad.algorithm in ("winograd", "tiles", "pointwise") and not saved
    # whole vectors of outputs: a kxk forward in tiles or by Winograd; at stride 1 its input gradient too
    pointwise = conv.is_pointwise((kh, kw), stride, padding)
    if o % gemm.LANES == 0 and not pointwise:
        assert plan.forward.algorithm == ("winograd" if plan.forward.winograd else "tiles")
        in_tiles = stride == (1, 1) and conv.plan.whole_vectors(c) is not None and max(padding[0] - kh, padding[1] - kw) < 0
        assert (plan.input_grad.algorithm in ("winograd", "tiles")) == in_tiles
    assert (plan.forward.algorithm == "winograd") == (use_winograd and kh == kw and kh in (3, 5) and stride == (1, 1)
                                                      and c % 16 == 0 and o % 16 == 0 and max(padding) < kh
                                                      and (kh == 3 or min(plan.out_size) >= 14))


def test_channels_padded_to_whole_vectors_only_where_that_adds_at_most_half():
    """plan.whole_vectors: a channel count rounded up to whole vectors of 16 (the extra channels computed
    on zero filters, then dropped) only where that adds at most half again; which 1x1 forwards and input
    gradients take it (test_numba_conv2d_float32_in_minigrads_gemm checks their results and paths)."""
    conv = pytest.importorskip("kernels.cpu.conv", reason="numba is not installed")
    tuning = importlib.import_module("kernels.cpu.tuning")
    assert [conv.plan.whole_vectors(n) for n in (16, 24, 32, 40, 48, 3, 8, 20, 1)] == \
        [16, 32, 32, 48, 48, None, None, None, None]

    def plan(dtype, o, c, k):
        return conv.plan_for(dtype, (8, c, 14, 14), (o, c, k, k), (1, 1), (k // 2, k // 2))
    for table in tuning.FAMILIES.values():
        with tuning.use(table):
            assert plan(np.float32, 24, 512, 1).forward.channels == (32 if table.pointwise_own_gemm else 0)
            assert plan(np.float32, 8, 512, 1).forward.channels == 0 and plan(np.float64, 24, 512, 1).forward.channels == 0
            assert plan(np.float32, 64, 24, 5).input_grad == conv.Step("tiles", gemm="minigrad", channels=32)
            assert plan(np.float32, 64, 3, 3).input_grad.algorithm == "col2im"       # 3 -> 16: no
            assert plan(np.float64, 64, 32, 3).input_grad.algorithm == "col2im"


def test_each_cpu_gets_the_table_measured_on_its_kind():
    """AVX-512 Zens (znver4 on) the Zen 4's table, AVX2 Zens the Zen 3's, every other CPU the Intel's; the Zen
    3's differs from the Zen 4's only in the GEMM tiles compiled for AVX2's registers."""
    tuning = pytest.importorskip("kernels.cpu.tuning", reason="numba is not installed")
    assert [tuning.family_of(name) for name in ("znver4", "znver5", "znver3", "znver2", "znver1", "skylake-avx512",
                                                "sapphirerapids", "haswell", "generic")] == \
        ["zen", "zen", "zen-avx2", "zen-avx2", "zen-avx2", "intel", "intel", "intel", "intel"]
    zen3, zen4 = tuning.FAMILIES["zen-avx2"], tuning.FAMILIES["zen"]
    different = {f.name for f in dataclasses.fields(zen4) if getattr(zen3, f.name) != getattr(zen4, f.name)}
    assert different == {"family", "measured_on", "one_vector_tiles"}


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
    """Layers that winograd.py can take (float32 3x3 or 5x5 filters at stride 1, multiples of 16 channels),
    each F(m x m, r x r) forced by a tuning table whatever the layer's size, in blocks of tiles or (by_element)
    all the batch's tiles at once: forward, weight gradient and input gradient against the reference,
    within WINOGRAD_GROWTH times the usual float32 error.  Output sizes that are and are not multiples of
    the tile (tiles cut short at the edges), every padding it takes (0 to r - 1 on each side; the input
    gradient's convolution is padded by r - 1 minus it), patches wholly or partly in the padding, 48
    channels (split 16/32 between two threads in the weight gradient's blocks)."""
    cpu = pytest.importorskip("kernels.cpu", reason="numba is not installed")
    conv, tuning = cpu.conv, importlib.import_module("kernels.cpu.tuning")
    winograd = conv.winograd
    r = size[1]
    ph, pw = ph % r, pw % r
    assume(h + 2 * ph >= r and w + 2 * pw >= r)
    x, wt = normal((n, c, h, w), seed, np.float32), normal((o, c, r, r), seed + 1, np.float32)
    if seed % 2:
        wt = stored_filters(wt)
    b = normal(o, seed + 2, np.float32) if with_bias else None
    calls = []
    kernels_ = ["_winograd_tiles", "_winograd_weight_grad", "_winograd_by_element", "_winograd_weight_grad_by_element"]
    with pytest.MonkeyPatch.context() as patch, forced_winograd(tuning, patch, size, by_element):
        plan = conv.plan_for(np.float32, x.shape, wt.shape, (1, 1), (ph, pw))
        assert plan.forward == plan.input_grad == conv.Step("winograd", winograd=size, one_pass=by_element)
        assert plan.weight_grad == plan.forward

        def counted(name, function, *args):
            calls.append((name, args[:3]))
            return function(*args)
        for name in kernels_:
            patch.setattr(winograd, name, functools.partial(counted, name, getattr(winograd, name)))
        check_conv2d(cpu, x, wt, b, (1, 1), (ph, pw), True, {}, need_input_grad, np.float32, seed, WINOGRAD_GROWTH[size])
    variant = (winograd.SIZES.index(size), *size)
    forward, weight = kernels_[2:] if by_element else kernels_[:2]
    assert calls == [(forward, variant)] * (1 + need_input_grad) + [(weight, variant)]

    # Given a weight_cache (a frozen weight's), the filters are transformed once, on the first call, for the
    # forward and once for the input gradient, then read there: the same bits as transformed on the fly.
    g = normal((n, o, h + 2 * ph - r + 1, w + 2 * pw - r + 1), seed + 3, np.float32)
    with pytest.MonkeyPatch.context() as patch, forced_winograd(tuning, patch, size, by_element):
        y = cpu.conv2d_forward(x, wt, b, (1, 1), (ph, pw), True)
        grads = cpu.conv2d_backward(x, wt, g, (1, 1), (ph, pw), True, y)
        made, cache, transform_filters = [], {}, winograd.transform_filters
        patch.setattr(winograd, "transform_filters",
                      lambda *args, **kw: made.append(kw["flip"]) or transform_filters(*args, **kw))
        for _ in range(2):
            np.testing.assert_array_equal(cpu.conv2d_forward(x, wt, b, (1, 1), (ph, pw), True, None, cache), y)
            for got, want in zip(cpu.conv2d_backward(x, wt, g, (1, 1), (ph, pw), True, y, None, cache), grads):
                np.testing.assert_array_equal(got, want)
    assert made == [False, True] and set(cache) == {("winograd", size, False), ("winograd", size, True)}


def forced_winograd(tuning, patch, size, by_element):
    """A tuning table under which every stride-1 layer of r x r filters runs by F(size), in one pass
    (by_element) or in blocks of tiles."""
    forced = {(2, 3): dict(winograd_3x3_small_tiles_from=0, winograd_3x3_small_tiles_to=10**9),
              (4, 3): dict(winograd_3x3_small_tiles_from=0, winograd_3x3_small_tiles_to=0, winograd_4x4_min_tiles=0),
              (2, 5): dict(winograd_5x5_min_side=0, winograd_5x5_weight_grad_min_channels=0)}[size]
    patch.setenv("MINIGRAD_WINOGRAD", "1")
    return tuning.use(winograd_one_pass_max_tiles=10**9 if by_element else -1, **forced)


def test_winograd_refuses_what_its_kernels_cannot_take():
    """winograd.py's kernels do no bounds checks: every shape they cannot take is refused, naming the function
    and the shapes, before a kernel runs (the convolution reaches them only where its plan says winograd)."""
    winograd = pytest.importorskip("kernels.cpu.conv.winograd", reason="numba is not installed")
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
        (lambda: winograd.convolve((2, 3), xs, f, 16, (1, 1), transformed=np.zeros(16 * 32 * 15, np.float32)),
         r"convolve: transformed must be convolution_filters' .* \(8192,\) for 32 input and 16 output "
         r"channels; got float32 \(7680,\)"),
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
    conv = cpu.conv
    shape = (32, 16, 3, 3)

    def forward(side):
        return conv.plan_for(np.float32, (1, 16, side, side), shape, (1, 1), (1, 1)).forward
    monkeypatch.delenv("MINIGRAD_WINOGRAD", raising=False)
    assert forward(28).winograd == (4, 3)
    monkeypatch.setenv("MINIGRAD_WINOGRAD", "1")
    assert forward(14).winograd == (2, 3)
    monkeypatch.setenv("MINIGRAD_WINOGRAD", "0")
    assert forward(28).algorithm == "tiles"
    calls = []
    monkeypatch.setattr(conv.winograd, "_winograd_tiles", lambda *args: calls.append(args))
    x, w = normal((1, 16, 28, 28), 0, np.float32), normal(shape, 1, np.float32)
    check_conv2d(cpu, x, w, None, (1, 1), (1, 1), True, {}, True, np.float32, 2)
    assert not calls
    monkeypatch.setenv("MINIGRAD_WINOGRAD", "off")
    with pytest.raises(ValueError, match=r"MINIGRAD_WINOGRAD='off': expected '1'"):
        forward(28)


def test_winograd_matrices_are_the_papers():
    """_matrices derives F(2x2, 3x3)'s transforms as Lavin and Gray print them (up to the sign of the
    last row of B^T and column of A^T, which cancel), and every size's computes a correlation exactly
    (float64, one tile: A^T [(G g G^T) * (B^T d B)] A against the direct sums)."""
    winograd = pytest.importorskip("kernels.cpu.conv.winograd", reason="numba is not installed")
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
    conv.tiles._pack_flipped(conv.filter_matrix(forward).reshape(-1), o, c, kh, kw, panels)
    flipped = forward[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    np.testing.assert_array_equal(panels, gemm.pack_panels(conv.filter_matrix(flipped)))


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
    """work.tile_plan orders every pixel once; its first `direct` tiles are 12 consecutive pixels of one output
    row whose windows are whole (what _conv_tiles reads from the image itself, with no bounds checks),
    as many as each row's whole windows make."""
    conv = pytest.importorskip("kernels.cpu.conv", reason="numba is not installed")
    assume(kh <= h + 2 * ph and kw <= w + 2 * pw)
    oh, ow = conv_out_size(h, kh, sh, ph), conv_out_size(w, kw, sw, pw)
    plan = conv.work.tile_plan(n, h, w, 16, 16, kh, kw, sh, sw, ph, pw, oh, ow, 2, 8)
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
    weight_grad = cpu.conv.weight_grad
    (n, c, h, w_), (_, _, kh, kw), stride, padding = geometry
    x, w = normal((n, c, h, w_), seed, np.float32), normal((o, c, kh, kw), seed + 1, np.float32)
    calls, weight_tiles = [], weight_grad._weight_grad_tiles
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(weight_grad, "_weight_grad_tiles", lambda *args: calls.append("built") or weight_tiles(*args))
        saved = {}
        check_conv2d(cpu, x, w, normal(o, seed + 2, np.float32), stride, padding, True, saved, need_input_grad,
                     np.float32, seed)
    pointwise = (kh, kw, *stride, *padding) == (1, 1, 1, 1, 0, 0)
    assert calls == ([] if pointwise else ["built"])    # built columns (c < 16: a 1x1 layer's rows are not a multiple of 16)
    assert not saved                                    # no columns kept: no backward reads them
    plan = cpu.conv.plan_for(np.float32, x.shape, w.shape, stride, padding)
    assert plan.weight_grad == (cpu.conv.Step("pointwise", gemm="OpenBLAS") if pointwise else
                                cpu.conv.Step("tiles", gemm="minigrad", split="pixels"))


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
    assert argmax.dtype == argmax_ref.dtype == np.int32 and argmax.shape == y.shape        # the contract's argmax
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
@given(st.tuples(st.integers(1, 4), st.integers(1, 40), st.integers(1, 9), st.integers(1, 9)), st.booleans(),
       st.booleans(), st.booleans(), st.booleans(), dtypes, seeds, launches)
@example((2, 3, 1, 1), True, True, True, True, np.float32, 0, (7, 3))        # two values per channel
@example((8, 64, 14, 14), True, False, True, False, np.float32, 1, (256, 65535))   # several statistics blocks
@example((1, 8, 1, 1), False, False, False, False, np.float32, 0, (1, 1))    # zero variance: a huge invstd
@on_every_backend
def test_batch_norm(backend_name, shape, training, with_running, affine, relu, dtype, seed, launch):
    """Forward (batch or running statistics, the running ones updated in place), backward with and without
    a fused ReLU's mask, against the reference."""
    assume(not training or shape[0] * shape[2] * shape[3] > 1)
    k = get_backend(backend_name, launch)
    c = shape[1]
    x = normal(shape, seed, dtype) * 3 + 1
    weight, bias = (normal(c, seed + 1, dtype), normal(c, seed + 2, dtype)) if affine else (None, None)
    stats = [np.abs(normal(c, seed + 3, dtype)), np.abs(normal(c, seed + 4, dtype)) + 0.5] if with_running else [None, None]
    ours, theirs = [a.copy() if a is not None else None for a in stats], [a.copy() if a is not None else None for a in stats]
    y, mean, invstd = k.batch_norm_forward(x, weight, bias, *ours, training, 0.1, 1e-5, relu)
    y_ref, mean_ref, invstd_ref = ref.batch_norm_forward(x, weight, bias, *theirs, training, 0.1, 1e-5, relu)
    close(y, y_ref, dtype, 10)
    close(mean, mean_ref, dtype, 10)
    close(invstd, invstd_ref, dtype, 10)
    for a, b in zip(ours, theirs):
        if a is not None:
            close(a, b, dtype, 10)
    g = normal(shape, seed + 5, dtype)
    relu_output = y_ref if relu else None
    batch_statistics = training or not with_running
    got = k.batch_norm_backward(g, x, weight, mean_ref, invstd_ref, batch_statistics, relu_output)
    want = ref.batch_norm_backward(g, x, weight, mean_ref, invstd_ref, batch_statistics, relu_output)
    for a, b in zip(got, want):
        close(a, b, dtype, 10 * np.sqrt(x.size / c))


@pytest.mark.parametrize("backend_name", [b.values[0] for b in BACKENDS], ids=[b.values[0] for b in BACKENDS])
def test_batch_norm_is_exact_where_its_scale_is_huge(backend_name):
    """A tiny variance (a huge 1 / sqrt(var + eps)) and a large weight magnify any rounding: one value per
    channel must give exactly the bias, and a constant gradient exactly zero for the input, on every backend
    as in the reference (each difference, x - mean and g - mean g, is taken before any product)."""
    k = get_backend(backend_name)
    x = np.array([0.12573022, -0.13210486, 0.64042264], np.float32).reshape(1, 1, 1, 3)
    weight, bias = np.array([2040.9191], np.float32), np.array([0.5], np.float32)
    single = normal((1, 8, 1, 1), 0, np.float32) * 3 + 1
    y, _, _ = k.batch_norm_forward(single, None, np.full(8, 0.5, np.float32), None, None, False, 0.1, 1e-5)
    np.testing.assert_array_equal(np.asarray(y), np.full((1, 8, 1, 1), 0.5, np.float32))
    _, mean, invstd = ref.batch_norm_forward(x, weight, bias, None, None, True, 0.1, 1e-5)
    for ops in (k, ref):
        grad_x, _, _ = ops.batch_norm_backward(np.ones_like(x), x, weight, mean, invstd, True)
        np.testing.assert_array_equal(np.asarray(grad_x), np.zeros_like(x))


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
    """im2col gives the reference's columns (N, C, KH, KW, OH, OW), and col2im is its transpose:
    <im2col(x), c> == <x, col2im(c)>."""
    k = get_backend(backend_name, launch)
    x_shape, kernel, stride, padding, _ = geometry
    out = tuple(conv_out_size(x_shape[2 + d], kernel[d], stride[d], padding[d]) for d in range(2))
    x = normal(x_shape, seed, dtype)
    cols = k.im2col(x, kernel, stride, padding, out)
    np.testing.assert_array_equal(cols, ref.im2col(x, kernel, stride, padding, out))
    c = normal(cols.shape, seed + 1, dtype)
    lhs = float((cols.astype(np.float64) * c).sum())
    rhs = float((x.astype(np.float64) * k.col2im(c, x_shape, stride, padding)).sum())
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


@pytest.mark.parametrize("backend_name", ["reference", "numba", "cuda"])
def test_every_backend_has_the_contracts_functions_with_its_signatures(backend_name):
    """The engine dispatches on the array type alone, so every backend's kernels are called alike: each
    function of kernels/contract.py, with its parameters in its order (no GPU needed for the CUDA
    backend's: they are CudaKernels' methods, the same for CuPy and the host emulation); every launch of
    the CUDA wrappers names a kernel of the .cu sources."""
    from kernels import contract
    if backend_name == "cuda":
        from kernels.cuda import FUNCTIONS
        from kernels.cuda.ops import CudaKernels
        module = CudaKernels(np, launch=None)
        assert FUNCTIONS == contract.FUNCTIONS
    else:
        module = ref if backend_name == "reference" else get_backend(backend_name)
        assert list(getattr(module, "__all__", contract.FUNCTIONS)) == list(contract.FUNCTIONS)
    assert kernels.KERNEL_FUNCTIONS == contract.FUNCTIONS
    for name in contract.FUNCTIONS:
        assert list(inspect.signature(getattr(module, name)).parameters) == contract.parameters(name), name


def test_cuda_kernels_are_named_like_the_functions_they_serve():
    """A CUDA kernel that computes a whole contract function carries its name (max_pool2d_forward, ...);
    the others are steps of one (im2col, the conv's output pass, channel copies, pairwise sums)."""
    import re

    from kernels import contract
    from kernels.cuda import loader
    steps = {"im2col", "col2im", "conv_output", "conv_grad_output", "copy_channels", "add_pair", "channel_sums",
             "batch_norm_chunk_statistics", "batch_norm_combine", "batch_norm_apply", "batch_norm_chunk_gradients",
             "batch_norm_input_gradient"}
    launched = set(re.findall(r'self\.launch\("(\w+)"', inspect.getsource(importlib.import_module("kernels.cuda.ops"))))
    assert launched == set(loader.MODULE_OF)
    assert launched - steps <= set(contract.FUNCTIONS), launched - steps - set(contract.FUNCTIONS)


def test_dispatch_follows_the_array_type_and_minigrad_kernels(monkeypatch):
    monkeypatch.setenv("MINIGRAD_KERNELS", "reference")
    assert kernels.for_array(np.zeros(1)) is ref
    monkeypatch.setenv("MINIGRAD_KERNELS", "numba")
    assert kernels.for_array(np.zeros(1)) is importlib.import_module("kernels.cpu")
    monkeypatch.setenv("MINIGRAD_KERNELS", "auto")
    assert kernels.for_array(np.zeros(1)) is kernels.TIERS.backend()
    monkeypatch.delenv("MINIGRAD_KERNELS")
    assert kernels.cpu_backend_name() == "auto"
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
