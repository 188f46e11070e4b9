"""Forward and backward of every op against PyTorch (CPU) on the same data.

Skips when torch is missing, unless MINIGRAD_REQUIRE_TORCH=1 (CI), where it fails.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad
import minigrad.functional as F
from minigrad import Tensor
from minigrad.testing import conv_geometry, distinct_values, pool_geometry, seeds, tolerance

from conftest import examples

dtypes = st.sampled_from([np.float32, np.float64])


def compare(torch, mg_fn, torch_fn, arrays, dtype, upstream_seed=0, extra_atol=0.0):
    """Run both frameworks on the same arrays and upstream gradient; compare outputs and input gradients."""
    mg_inputs = [Tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    t_inputs = [torch.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    mg_out, t_out = mg_fn(*mg_inputs), torch_fn(*t_inputs)
    rtol, atol = tolerance("library", dtype)
    tol = dict(rtol=rtol, atol=atol + extra_atol)
    np.testing.assert_allclose(mg_out.numpy(), t_out.detach().numpy(), **tol, err_msg="forward")
    upstream = np.random.default_rng(upstream_seed).standard_normal(mg_out.shape).astype(dtype)
    mg_out.backward(upstream)
    t_out.backward(torch.tensor(upstream))
    for i, (m, t) in enumerate(zip(mg_inputs, t_inputs)):
        scale = max(1.0, float(np.abs(t.grad.numpy()).max()))
        np.testing.assert_allclose(m.grad.numpy(), t.grad.numpy(), rtol=tol["rtol"], atol=tol["atol"] * scale,
                                   err_msg=f"gradient of input {i}")


def normal(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


@settings(max_examples=examples(30))
@given(conv_geometry(max_channels=16), st.booleans(), dtypes, seeds)
def test_conv2d(torch, geometry, with_bias, dtype, seed):
    x_shape, w_shape, stride, padding = geometry
    arrays = [normal(x_shape, seed), normal(w_shape, seed + 1)] + ([normal(w_shape[0], seed + 2)] if with_bias else [])
    compare(torch, lambda *t: F.conv2d(*t[:2], t[2] if with_bias else None, stride, padding),
            lambda *t: torch.nn.functional.conv2d(*t[:2], t[2] if with_bias else None, stride, padding),
            arrays, dtype, seed, extra_atol=1e-5 if dtype == np.float32 else 0)


@settings(max_examples=examples(40))
@given(pool_geometry(max_channels=16), dtypes, seeds)
def test_max_pool2d(torch, geometry, dtype, seed):
    x_shape, kernel, stride, padding, ceil_mode = geometry
    x = distinct_values(x_shape, seed)
    compare(torch, lambda t: F.max_pool2d(t, kernel, stride, padding, ceil_mode),
            lambda t: torch.nn.functional.max_pool2d(t, kernel, stride, padding, ceil_mode=ceil_mode), [x], dtype)


@settings(max_examples=examples(20))
@given(pool_geometry(), seeds)
def test_max_pool2d_argmax_matches_torch_indices(torch, geometry, seed):
    """Ties included: the first maximum in window order wins, as in PyTorch."""
    x_shape, kernel, stride, padding, ceil_mode = geometry
    x = np.random.default_rng(seed).integers(0, 3, x_shape).astype(np.float32)    # many ties
    import kernels.reference as ref
    y, argmax = ref.max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    t_y, t_idx = torch.nn.functional.max_pool2d(torch.tensor(x), kernel, stride, padding, ceil_mode=ceil_mode,
                                                return_indices=True)
    np.testing.assert_array_equal(y, t_y.numpy())
    np.testing.assert_array_equal(argmax, t_idx.numpy())


@pytest.mark.parametrize("form", [lambda v: v, lambda v: (v,), lambda v: [v], lambda v: (v, v)])
def test_window_arguments_take_pytorchs_forms(torch, form):
    """kernel_size, stride and padding as an int, a one-element tuple or list, or a pair, as PyTorch takes
    them (one of its OpInfo samples pools with kernel_size=(3,))."""
    x = normal((2, 3, 9, 8), 0)
    for ours, theirs in [(F.max_pool2d, torch.nn.functional.max_pool2d), (F.avg_pool2d, torch.nn.functional.avg_pool2d)]:
        compare(torch, lambda t: ours(t, form(3), form(2), form(1)), lambda t: theirs(t, form(3), form(2), form(1)),
                [x], np.float64)
    w = normal((4, 3, 3, 3), 1)
    compare(torch, lambda a, b: F.conv2d(a, b, None, form(2), form(1)),
            lambda a, b: torch.nn.functional.conv2d(a, b, None, form(2), form(1)), [x, w], np.float64)


@settings(max_examples=examples(40))
@given(pool_geometry(max_channels=16), st.booleans(), dtypes, seeds)
def test_avg_pool2d(torch, geometry, count_include_pad, dtype, seed):
    x_shape, kernel, stride, padding, ceil_mode = geometry
    compare(torch, lambda t: F.avg_pool2d(t, kernel, stride, padding, ceil_mode, count_include_pad),
            lambda t: torch.nn.functional.avg_pool2d(t, kernel, stride, padding, ceil_mode, count_include_pad),
            [normal(x_shape, seed)], dtype)


@settings(max_examples=examples(30))
@given(st.tuples(st.integers(1, 3), st.integers(1, 16), st.integers(1, 7), st.integers(1, 7)),
       st.integers(1, 7), dtypes, seeds)
def test_local_response_norm(torch, shape, size, dtype, seed):
    compare(torch, lambda t: F.local_response_norm(t, size, 1e-2, 0.75, 1.0),
            lambda t: torch.nn.functional.local_response_norm(t, size, 1e-2, 0.75, 1.0),
            [normal(shape, seed) * 3], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_linear_log_softmax_cross_entropy_cat(torch, dtype):
    x, w, b = normal((6, 10), 0), normal((4, 10), 1), normal(4, 2)
    target = np.array([0, 3, 1, 2, 3, 0])
    compare(torch, F.relu, torch.relu, [x], dtype)
    compare(torch, F.linear, torch.nn.functional.linear, [x, w, b], dtype)
    compare(torch, lambda t: F.log_softmax(t, 1), lambda t: torch.log_softmax(t, 1), [x], dtype)
    compare(torch, lambda t: F.log_softmax(t, 0), lambda t: torch.log_softmax(t, 0), [x], dtype)
    compare(torch, lambda t: F.cross_entropy(t, target),
            lambda t: torch.nn.functional.cross_entropy(t, torch.tensor(target)), [x], dtype)
    compare(torch, lambda a, b: minigrad.cat([a, b], 1), lambda a, b: torch.cat([a, b], 1),
            [normal((2, 3, 4, 4), 3), normal((2, 5, 4, 4), 4)], dtype)
    for sections, dim in (([3, 1, 4], 1), (3, 1), (2, 3), ([0, 4], 2)):          # pieces recombined unevenly
        compare(torch, lambda t: _recombine(t.split(sections, dim), minigrad.cat, dim),
                lambda t: _recombine(t.split(sections, dim), torch.cat, dim), [normal((2, 8, 4, 4), 5)], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape", [(1, 9), (8, 9), (4, 40, 9), (200, 9), (9,)])
def test_linear_on_few_and_many_rows(torch, x_shape, dtype):
    """Both GEMM orders of the linear forward: at most F._FEW_ROWS rows (a batch) and more (200); with one
    row ((1, 9) and (9,)) the weight gradient is an outer product."""
    compare(torch, F.linear, torch.nn.functional.linear, [normal(x_shape, 0), normal((5, 9), 1), normal(5, 2)], dtype)


def _recombine(pieces, cat, dim):
    """Each piece scaled differently and the pieces put back in reverse order, the first one twice."""
    scaled = [p * (i + 2.0) for i, p in enumerate(pieces)]
    return cat(scaled[::-1] + [scaled[0] * scaled[0]], dim)


def test_dropout_statistics_match_torch_semantics(torch):
    minigrad.manual_seed(0)
    x = Tensor(np.ones((200, 500), np.float32), requires_grad=True)
    y = F.dropout(x, 0.3)
    values = np.unique(y.numpy())
    np.testing.assert_allclose(values, [0.0, 1 / 0.7], rtol=1e-6)      # kept values scaled by 1/(1-p)
    assert abs((y.numpy() == 0).mean() - 0.3) < 0.01
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())             # gradient uses the same mask
    assert F.dropout(x, 0.3, training=False) is x


def test_cross_entropy_is_stable_for_huge_logits(torch):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]])
    target = np.array([1, 1])
    compare(torch, lambda t: F.cross_entropy(t, target),
            lambda t: torch.nn.functional.cross_entropy(t, torch.tensor(target)), [logits], np.float32)
    x = Tensor(logits.astype(np.float32), requires_grad=True)
    loss = F.cross_entropy(x, target)
    loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(x.grad.numpy()).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tensor_arithmetic_and_shape_ops(torch, dtype):
    """+, -, *, /, @, unary -, ** with broadcasting, and reshape, permute, transpose, sum, mean, flatten."""
    def expression(a, b, c, m):
        y = (a + b) * c - a / (b * b + 1) + (-c) ** 2
        y = y.permute(2, 0, 1).reshape(4, -1).transpose(0, 1)
        z = y.sum(1, keepdim=True) * y.mean(0) + (y @ m).flatten().sum()
        return z.flatten()

    arrays = [normal((2, 3, 4), 0), normal((3, 1), 1), normal((4,), 2), normal((4, 5), 3)]
    compare(torch, expression, expression, arrays, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nll_loss(torch, dtype):
    target = np.array([2, 0, 1, 2])
    compare(torch, lambda t: F.nll_loss(F.log_softmax(t, 1), target),
            lambda t: torch.nn.functional.nll_loss(torch.log_softmax(t, 1), torch.tensor(target)),
            [normal((4, 3), 5)], dtype)


@st.composite
def pads(draw):
    """(input shape, pad): up to two padded dimensions, widths from cropping 1 to padding 3 on each side."""
    shape = tuple(draw(st.lists(st.integers(3, 5), min_size=2, max_size=4)))
    dims = draw(st.integers(1, 2))
    return shape, tuple(draw(st.integers(-1, 3)) for _ in range(2 * dims))


@settings(max_examples=examples(25))
@given(pads(), st.sampled_from([0.0, 1.5, -np.inf]), dtypes, seeds)
def test_pad(torch, geometry, value, dtype, seed):
    """F.pad in constant mode: negative widths crop, -inf fills (what max-pooling reads padding as)."""
    shape, widths = geometry
    compare(torch, lambda x: F.pad(x, widths, value), lambda x: torch.nn.functional.pad(x, widths, value=value),
            [normal(shape, seed)], dtype)


@settings(max_examples=examples(15))
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.data(), dtypes, seeds)
def test_softmax(torch, shape, data, dtype, seed):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    compare(torch, lambda x: F.softmax(x * 3, dim), lambda x: torch.softmax(x * 3, dim), [normal(shape, seed)], dtype)


@pytest.mark.parametrize("a_shape,b_shape", [((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((5, 2, 3), (3, 4)),
                                             ((2, 1, 2, 3), (5, 3, 4)), ((4,), (2, 4, 3))])
def test_matmul_broadcasts_and_takes_vectors_as_numpy_does(torch, a_shape, b_shape):
    compare(torch, lambda a, b: a @ b, lambda a, b: a @ b, [normal(a_shape, 1), normal(b_shape, 2)], np.float64)
