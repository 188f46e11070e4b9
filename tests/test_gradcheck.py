"""Finite-difference gradient checks (float64) of every op, on hypothesis-drawn geometries, in both of
gradcheck's modes (element by element, and fast mode's random directions: the same verdict on every drawn
case); the checker itself against planted wrong gradients; python -m minigrad.gradcheck.

Run just these with:  pytest tests/test_gradcheck.py
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad
import minigrad.functional as F
from minigrad import Tensor
from minigrad.testing import away_from_zero, conv_geometry, distinct_values, pool_geometry, seeds

from conftest import examples


def gradcheck(fn, inputs, **options):
    """Both modes, which must agree that the gradient is right: every element, then random directions."""
    assert minigrad.gradcheck(fn, inputs, **options)
    assert minigrad.gradcheck(fn, inputs, fast_mode=True, **options)
    return True


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


def test_gradcheck_checks_float32_inputs_in_float64_and_says_so():
    x = Tensor(normal((3, 3), 5).astype(np.float32), requires_grad=True)
    with pytest.warns(UserWarning, match="gradcheck: input 0 is float32; it is checked as a float64 copy"):
        assert gradcheck(lambda t: (t * t).sum(), [x])


# ---- mutation tests: planted wrong backward passes ---------------------------------------------------------

class Planted(minigrad.Function):
    """x @ w with a backward of one of three planted kinds of wrong (or right)."""

    def __init__(self, mistake):
        self.mistake = mistake

    def forward(self, x, w):
        self.x, self.w = x, w
        return x @ w

    def backward(self, grad):
        grad_x, grad_w = grad @ self.w.T, self.x.T @ grad
        if self.mistake == "scaled":
            grad_w = grad_w * 1.03                              # 3% too large
        elif self.mistake == "transposed":
            grad_w = grad_w.T.reshape(grad_w.shape).copy()      # a square weight's gradient transposed
        elif self.mistake == "one element":
            grad_w = grad_w.copy()
            grad_w[1, 2] += 0.5
        return grad_x, grad_w


@pytest.mark.parametrize("mistake,fast_catches", [("scaled", True), ("transposed", True), ("one element", False),
                                                  (None, None)])
def test_planted_mistakes_are_caught(mistake, fast_catches):
    """Element-wise mode catches every planted mistake; fast mode the first two (a single element off is a
    difference its few random directions see only weakly); a right backward passes both."""
    x, w = leaf(normal((5, 4), 3)), leaf(normal((4, 4), 4))
    fn = lambda a, b: Planted(mistake)(a, b)
    if mistake is None:
        assert gradcheck(fn, [x, w])
        return
    with pytest.raises(minigrad.GradcheckError, match=r"input 1 \(shape \(4, 4\)\)"):
        minigrad.gradcheck(fn, [x, w])
    if fast_catches:
        with pytest.raises(minigrad.GradcheckError, match=r"fast mode\): gradient of input 1 .* along random direction"):
            minigrad.gradcheck(fn, [x, w], fast_mode=True)


@pytest.mark.parametrize("call,error,message", [
    (lambda: minigrad.gradcheck(lambda t: t * 2, [Tensor(np.arange(3))]), ValueError,
     "no floating-point input requires grad"),
    (lambda: minigrad.gradcheck(lambda t: t * 2, [leaf([1.0]).detach()]), ValueError, "no floating-point input requires"),
    (lambda: minigrad.gradcheck(lambda t: t.numpy(), [leaf([1.0])]), TypeError, "fn must return a Tensor, got ndarray"),
    (lambda: minigrad.gradcheck(lambda t: t, leaf([1.0])), TypeError, "inputs must be a list or tuple"),
    (lambda: minigrad.gradcheck(lambda t: Tensor(np.zeros(int(t.data.sum() * 1e6) % 3 + 1)) + t.sum(), [leaf([0.5])]),
     minigrad.GradcheckError, "output changed shape"),
])
def test_bad_input_to_gradcheck_is_one_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_gradient_of_the_wrong_shape_is_named():
    class WrongShape(minigrad.Function):
        def forward(self, a):
            return a * 2

        def backward(self, grad):
            return grad.sum(axis=0)
    with pytest.raises(minigrad.GradcheckError, match=r"the gradient of input 0 has shape \(3,\) but the input has "
                                                      r"shape \(2, 3\)"):
        minigrad.gradcheck(lambda t: WrongShape()(t), [leaf(normal((2, 3), 0))])


# ---- whole networks: python -m minigrad.gradcheck ------------------------------------------------------------

def test_the_model_command_checks_every_parameter(capsys):
    from minigrad.gradcheck import main
    assert main(["mini-googlenet", "--directions", "1", "--samples", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "passed: 40 of 40 parameters" and len(out) == 42
    assert out[1].startswith("layers.conv1.conv.weight") and out[1].endswith("pass")


def test_a_broken_kernel_backward_fails_the_model_command(monkeypatch, capsys):
    import kernels
    from minigrad.gradcheck import main
    monkeypatch.setenv("MINIGRAD_KERNELS", "numba")    # the backend that serves every call, from the first
    backend = kernels.cpu_backend()
    real = backend.max_pool2d_backward
    monkeypatch.setattr(backend, "max_pool2d_backward", lambda *args: real(*args) * 1.05)
    assert main(["mini-googlenet", "--directions", "1", "--samples", "0"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("FAILED:") and "layers.conv1.conv.weight" in out[-1]


@pytest.mark.parametrize("argv,message", [(["resnet"], "unknown model 'resnet'"),
                                          (["googlenet", "--input-size", "8"], "too small"),
                                          (["mini-googlenet", "--directions", "0"], "--directions must be an integer")])
def test_the_model_command_refuses_bad_input_in_one_line(argv, message, capsys):
    from minigrad.gradcheck import main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


class ViewIndexed(np.ndarray):
    """Stands in for a CuPy array: an index of every dimension gives a 0-d view into the array (CuPy's
    behaviour), not a copy of the scalar (NumPy's)."""

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) == self.ndim and all(isinstance(k, (int, np.integer)) for k in key):
            flat = int(np.ravel_multi_index(key, self.shape))
            return np.asarray(self).reshape(-1)[flat:flat + 1].reshape(())
        return super().__getitem__(key)


def test_gradcheck_is_right_where_indexing_gives_views(monkeypatch):
    """An element read before it is perturbed must be a copy: with a 0-d view the 'minus' evaluation would
    happen at x, not x - eps, and every numeric gradient would be half the true one."""
    import importlib
    module = importlib.import_module("minigrad.gradcheck")        # the module (minigrad.gradcheck is the function)
    real = module._float64_leaf
    monkeypatch.setattr(module, "_float64_leaf",
                        lambda t: Tensor(real(t).data.view(ViewIndexed), requires_grad=True))
    x = leaf([1.0, -2.0, 3.0])
    probe = x.data.view(ViewIndexed)
    element = probe[(0,)]
    probe[(0,)] = 5.0
    assert element == 5.0                                 # the stand-in really hands out views
    probe[(0,)] = 1.0
    assert gradcheck(lambda t: (t * t * t).sum(), [x])          # both modes


def test_check_model_refuses_a_frozen_model_by_name():
    """check_model perturbs every parameter in place: a frozen one (read-only) is named, with the remedy."""
    from minigrad import nn
    from minigrad.gradcheck import check_model
    minigrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).freeze()
    with pytest.raises(ValueError, match=r"check_model: the parameters 0.weight, 0.bias, 2.weight, \.\.\. are frozen"
                                         r".*model.unfreeze\(\)"):
        check_model(model, np.ones((2, 3)))
    assert all(passed for *_, passed in check_model(model.unfreeze(), np.ones((2, 3))))
