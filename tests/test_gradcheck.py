"""Finite-difference gradient checks (float64) of every op, on hypothesis-drawn geometries.

Run just these with:  pytest tests/test_gradcheck.py
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad
import minigrad.functional as F
from minigrad import Tensor, gradcheck

from conftest import examples
from strategies import away_from_zero, conv_geometry, distinct_values, pool_geometry, seeds


def leaf(array):
    return Tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


def normal(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


@settings(max_examples=examples(25))
@given(conv_geometry(), st.booleans(), seeds)
def test_conv2d(geometry, with_bias, seed):
    x_shape, w_shape, stride, padding = geometry
    x, w = leaf(normal(x_shape, seed)), leaf(normal(w_shape, seed + 1))
    inputs = [x, w] + ([leaf(normal(w_shape[0], seed + 2))] if with_bias else [])
    gradcheck(lambda *t: F.conv2d(t[0], t[1], t[2] if with_bias else None, stride, padding), inputs)


@settings(max_examples=examples(40))
@given(pool_geometry(), seeds)
def test_max_pool2d(geometry, seed):
    x_shape, kernel, stride, padding, ceil_mode = geometry
    x = leaf(distinct_values(x_shape, seed))
    gradcheck(lambda t: F.max_pool2d(t, kernel, stride, padding, ceil_mode), [x])


@settings(max_examples=examples(40))
@given(pool_geometry(), st.booleans(), seeds)
def test_avg_pool2d(geometry, count_include_pad, seed):
    x_shape, kernel, stride, padding, ceil_mode = geometry
    x = leaf(normal(x_shape, seed))
    gradcheck(lambda t: F.avg_pool2d(t, kernel, stride, padding, ceil_mode, count_include_pad), [x])


@settings(max_examples=examples(20))
@given(st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 13), st.integers(1, 13)), seeds)
def test_relu(shape, seed):
    gradcheck(F.relu, [leaf(away_from_zero(shape, seed))])


@settings(max_examples=examples(30))
@given(st.tuples(st.integers(1, 3), st.integers(1, 8), st.integers(1, 6), st.integers(1, 6)),
       st.integers(1, 7), st.floats(1e-4, 2.0), st.floats(0.1, 1.5), st.floats(0.5, 2.0), seeds)
def test_local_response_norm(shape, size, alpha, beta, k, seed):
    x = leaf(normal(shape, seed))
    gradcheck(lambda t: F.local_response_norm(t, size, alpha, beta, k), [x])


@settings(max_examples=examples(20))
@given(st.integers(1, 4), st.integers(1, 7), st.integers(1, 7), st.booleans(), st.booleans(), seeds)
def test_linear(batch, features_in, features_out, with_bias, extra_dim, seed):
    x_shape = (batch, 2, features_in) if extra_dim else (batch, features_in)
    x, w = leaf(normal(x_shape, seed)), leaf(normal((features_out, features_in), seed + 1))
    inputs = [x, w] + ([leaf(normal(features_out, seed + 2))] if with_bias else [])
    gradcheck(lambda *t: F.linear(*t), inputs)


@settings(max_examples=examples(10))
@given(st.floats(0.0, 0.9), seeds)
def test_dropout_with_fixed_mask(p, seed):
    def fn(t):
        minigrad.manual_seed(seed)          # the same mask on every evaluation
        return F.dropout(t, p)
    gradcheck(fn, [leaf(normal((3, 4, 5), seed))])


@settings(max_examples=examples(20))
@given(st.integers(1, 5), st.integers(1, 7), st.integers(0, 1), seeds)
def test_log_softmax(rows, cols, dim, seed):
    gradcheck(lambda t: F.log_softmax(t, dim), [leaf(normal((rows, cols), seed) * 3)])


@settings(max_examples=examples(20))
@given(st.integers(1, 5), st.integers(1, 7), seeds)
def test_cross_entropy_and_nll_loss(rows, classes, seed):
    target = np.random.default_rng(seed).integers(0, classes, rows)
    x = leaf(normal((rows, classes), seed) * 3)
    gradcheck(lambda t: F.cross_entropy(t, target), [x])
    gradcheck(lambda t: F.nll_loss(F.log_softmax(t, 1), target), [x])


@settings(max_examples=examples(20))
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.integers(0, 3), seeds)
def test_cat(channel_counts, dim, seed):
    shapes = []
    for c in channel_counts:
        shape = [2, 3, 4, 5]
        shape[dim] = c
        shapes.append(tuple(shape))
    inputs = [leaf(normal(s, seed + i)) for i, s in enumerate(shapes)]
    gradcheck(lambda *t: minigrad.cat(list(t), dim), inputs)


@settings(max_examples=examples(20))
@given(st.lists(st.integers(0, 4), min_size=1, max_size=4).filter(sum), st.integers(0, 3), st.data(), seeds)
def test_split(sizes, dim, data, seed):
    """Every piece used with its own weight, or only some of them (the rest get zero gradient)."""
    shape = [2, 3, 4, 5]
    shape[dim] = sum(sizes)
    used = data.draw(st.lists(st.booleans(), min_size=len(sizes), max_size=len(sizes)).filter(any))

    def weighted_pieces(t):
        pieces = minigrad.split(t, sizes, dim)
        return sum((p * (i + 1.5)).sum() for i, (p, u) in enumerate(zip(pieces, used)) if u)
    gradcheck(weighted_pieces, [leaf(normal(tuple(shape), seed))])


broadcast_pairs = st.sampled_from([((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1)),
                                   ((1,), (2, 3)), ((), (2, 3)), ((2, 1, 4), (2, 3, 1))])


@settings(max_examples=examples(30))
@given(broadcast_pairs, st.sampled_from(["+", "-", "*", "/"]), st.booleans(), seeds)
def test_binary_arithmetic_with_broadcasting(shapes, op, swap, seed):
    a_shape, b_shape = shapes[::-1] if swap else shapes
    a = leaf(normal(a_shape, seed))
    b = leaf(away_from_zero(b_shape, seed + 1, margin=0.5))     # no division by ~0
    ops = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y, "/": lambda x, y: x / y}
    gradcheck(ops[op], [a, b])


@pytest.mark.parametrize("scalar_left", [False, True])
def test_scalar_arithmetic(scalar_left):
    a = leaf(away_from_zero((3, 4), 0, margin=0.5))
    if scalar_left:
        gradcheck(lambda t: 2.5 - t * 3.0 + 1.0 / t, [a])
    else:
        gradcheck(lambda t: (t - 2.5) * 3.0 / 1.5 + 4.0, [a])


@pytest.mark.parametrize("exponent", [2, 3, 0.5, -1.5])
def test_pow(exponent):
    gradcheck(lambda t: t ** exponent, [leaf(np.abs(normal((3, 4), 1)) + 0.5)])


def test_neg_and_matmul():
    gradcheck(lambda a, b: -(a @ b), [leaf(normal((3, 4), 0)), leaf(normal((4, 5), 1))])


@settings(max_examples=examples(20))
@given(st.permutations([0, 1, 2, 3]), seeds)
def test_shape_ops(dims, seed):
    x = leaf(normal((2, 3, 4, 5), seed))
    gradcheck(lambda t: t.permute(*dims).reshape(-1, 10).transpose(0, 1).flatten(), [x])


@pytest.mark.parametrize("dim,keepdim", [(None, False), (0, False), (1, True), ((0, 2), False), (-1, True)])
def test_sum_and_mean(dim, keepdim):
    x = leaf(normal((2, 3, 4), 7))
    gradcheck(lambda t: t.sum(dim, keepdim) * t.mean(dim, keepdim), [x])


# ---- the checker itself must catch wrong gradients -------------------------------

class WrongSquare(minigrad.Function):
    def forward(self, a):
        self.a = a
        return a * a

    def backward(self, grad):
        wrong = 2 * self.a * grad
        wrong.flat[3] *= 1.1                 # one element off by 10%
        return wrong


def test_gradcheck_reports_the_wrong_element():
    x = leaf(normal((2, 3), 3) + 2)
    with pytest.raises(minigrad.GradcheckError, match=r"input 0 \(shape \(2, 3\)\) is wrong at index \(1, 0\)"):
        gradcheck(lambda t: WrongSquare()(t), [x])


def test_gradcheck_catches_errors_that_cancel_in_a_plain_sum():
    class SwappedGradient(minigrad.Function):   # right values, wrong places
        def forward(self, a):
            self.a = a
            return a * a

        def backward(self, grad):
            return (2 * self.a * grad)[::-1].copy()

    x = leaf(np.array([1.0, 2.0, 3.0]))
    with pytest.raises(minigrad.GradcheckError):
        gradcheck(lambda t: SwappedGradient()(t), [x])


def test_gradcheck_checks_float32_inputs_in_float64():
    x = Tensor(normal((3, 3), 5).astype(np.float32), requires_grad=True)
    assert gradcheck(lambda t: (t * t).sum(), [x])
