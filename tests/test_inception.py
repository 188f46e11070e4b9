"""The Inception modules: channel counts, and float64 gradient checks of whole modules."""

import numpy as np
import pytest

import minigrad
from minigrad import Tensor, gradcheck
from models import Inception, InceptionNaive


def test_output_channels_of_3a():
    x = minigrad.randn(1, 192, 28, 28)
    with minigrad.no_grad():
        assert Inception(192, 64, 96, 128, 16, 32, 32)(x).shape == (1, 256, 28, 28)
        assert InceptionNaive(192, 64, 128, 32)(x).shape == (1, 64 + 128 + 32 + 192, 28, 28)


def test_5x5_branch_uses_a_real_5x5_kernel():
    module = Inception(8, 2, 3, 4, 2, 3, 2)
    assert module.branch5x5[1].conv.weight.shape == (3, 2, 5, 5)
    assert InceptionNaive(8, 2, 3, 4).branch5x5.conv.weight.shape == (4, 8, 5, 5)


def call_with_parameters(module, tensors, x):
    """Run module with its parameters (in named_parameters order) replaced by `tensors`."""
    swapped = []
    for (name, _), t in zip(list(module.named_parameters()), tensors):
        *path, attr = name.split(".")
        owner = module
        for part in path:
            owner = getattr(owner, part)
        swapped.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, t)
    try:
        return module(x)
    finally:
        for owner, attr, original in swapped:
            setattr(owner, attr, original)


@pytest.mark.parametrize("naive", [False, True])
def test_gradcheck_of_a_whole_module(naive):
    minigrad.manual_seed(3)
    module = InceptionNaive(3, 2, 2, 2) if naive else Inception(3, 2, 2, 3, 1, 2, 2)
    # distinct input values (no max-pool ties); float64 copies of every parameter are checked too
    x = Tensor(np.random.default_rng(0).permutation(2 * 3 * 5 * 4).reshape(2, 3, 5, 4) * 0.01 - 1.2,
               requires_grad=True)
    gradcheck(lambda x, *ps: call_with_parameters(module, ps, x), [x, *module.parameters()])
