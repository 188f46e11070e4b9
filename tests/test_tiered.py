"""MINIGRAD_KERNELS=auto: the reference kernels until loading Numba's pays (kernels/tiered.py)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kernels
import kernels.reference as ref
from kernels import tiered


def _conv_call(backend, x, w, saved=None):
    return backend.conv2d_forward(x, w, None, (1, 1), (1, 1), False, saved)


def test_a_convolution_is_charged_its_columns_and_their_multiply_adds_before_it_runs():
    x, w = np.ones((2, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32)
    tiers = tiered.Tiered(load_compiled=lambda: pytest.fail("loaded before the reference kernels paid"))
    y = _conv_call(tiers.backend(), x, w)
    columns = 2 * 3 * 3 * 3 * 8 * 8                  # N * C * KH * KW * OH * OW (padding 1 keeps 8x8)
    forward = columns * 4 / tiered.MULTIPLY_ADDS_PER_SECOND + (2 * (x.size + w.size) + columns) / tiered.ELEMENTS_PER_SECOND
    assert tiers.spent == pytest.approx(forward)
    assert np.array_equal(y, _conv_call(ref, x, w))
    grad_x, grad_w, _ = tiers.backend().conv2d_backward(x, w, np.ones_like(y), (1, 1), (1, 1), False)
    assert grad_x is None and grad_w.shape == w.shape                # no input gradient: one GEMM charged
    backward = columns * 4 / tiered.MULTIPLY_ADDS_PER_SECOND + (
        2 * (x.size + w.size + y.size) + columns) / tiered.ELEMENTS_PER_SECOND
    assert tiers.spent == pytest.approx(forward + backward)


class _Compiled:
    """Stands for Numba's kernels: says which function was called."""

    def __getattr__(self, name):
        return lambda *args: ("compiled", name)


def test_the_compiled_kernels_serve_every_call_from_the_one_that_would_outspend_the_budget(monkeypatch):
    monkeypatch.setattr(tiered, "NUMBA_LOAD_SECONDS", 1e-3)
    compiled, loads = _Compiled(), []
    tiers = tiered.Tiered(load_compiled=lambda: loads.append(1) or compiled)
    x = np.ones((1, 16, 32, 32), np.float32)
    cost, affordable = tiered.estimated_seconds("relu_forward", (x,)), 0
    while (affordable + 1) * cost <= 1e-3:
        affordable += 1
    results = [tiers.backend().relu_forward(x) for _ in range(affordable + 2)]
    assert all(isinstance(r, np.ndarray) for r in results[:affordable]) and not loads[1:]
    assert results[affordable:] == [("compiled", "relu_forward")] * 2 and loads == [1]      # loaded once
    assert tiers.backend() is compiled and tiers.spent <= 1e-3


def test_arguments_by_keyword_are_charged_as_by_position():
    x, w = np.ones((2, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32)
    by_position, by_keyword = (tiered.Tiered(load_compiled=_Compiled) for _ in range(2))
    y = _conv_call(by_position.backend(), x, w)
    z = by_keyword.backend().conv2d_forward(x, w, bias=None, stride=(1, 1), padding=(1, 1), relu=False)
    assert np.array_equal(y, z) and by_keyword.spent == by_position.spent > 0


def test_a_call_that_alone_costs_more_than_loading_numba_never_runs_on_the_reference():
    """Its columns are never allocated: a large convolution goes to the compiled kernels at once."""
    tiers = tiered.Tiered(load_compiled=_Compiled)
    x = np.broadcast_to(np.float32(1), (64, 64, 224, 224))          # 205 M elements, none stored
    w = np.broadcast_to(np.float32(1), (64, 64, 3, 3))
    assert tiered.estimated_seconds("conv2d_forward", (x, w, None, (1, 1), (1, 1))) > tiered.NUMBA_LOAD_SECONDS
    assert _conv_call(tiers.backend(), x, w) == ("compiled", "conv2d_forward") and tiers.spent == 0


def test_a_backward_may_run_on_other_cpu_kernels_than_its_forward():
    """The switch can fall between a forward and its backward: each CPU backend reads only what it keeps in
    `saved`, so mixing them gives the same gradients."""
    cpu = kernels.cpu_backend("numba")
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 5, 9, 9)), rng.standard_normal((6, 5, 3, 3))
    grad_y = rng.standard_normal((2, 6, 9, 9))
    expected = ref.conv2d_backward(x, w, grad_y, (1, 1), (1, 1))
    for forward, backward in ((ref, cpu), (cpu, ref)):
        saved = {}
        _conv_call(forward, x, w, saved)
        for got, want in zip(backward.conv2d_backward(x, w, grad_y, (1, 1), (1, 1), True, None, saved), expected):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


FIRST_PROGRAM = """
import os, sys
os.environ.pop('MINIGRAD_KERNELS', None)
import numpy as np, minigrad, models, kernels
net = models.mini_googlenet().eval()
x = minigrad.Tensor(np.ones((2, 3, 32, 32), np.float32))
with minigrad.no_grad():
    first = net(x).numpy()
loaded_at_first = 'numba' in sys.modules
calls = 1
while kernels.TIERS.compiled is None:
    with minigrad.no_grad():
        net(x)
    calls += 1
with minigrad.no_grad():
    last = net(x).numpy()
print(repr((loaded_at_first, calls, kernels.cpu_backend() is sys.modules['kernels.cpu'],
            float(abs(first - last).max()))))
"""


def test_a_fresh_program_computes_without_numba_until_the_reference_kernels_paid_for_it():
    import ast

    def run():
        out = subprocess.run([sys.executable, "-c", FIRST_PROGRAM], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[1]).stdout
        return ast.literal_eval(out.splitlines()[-1])
    loaded_at_first, calls, on_numba, difference = run()
    assert not loaded_at_first and calls > 1 and on_numba and difference < 1e-5
    assert run()[1] == calls                   # the switch falls on the same call in every run
