"""How much memory a network needs, estimated before it is built: so that a command refuses a size that
cannot fit (one line naming the options) instead of failing deep inside NumPy.

Parameters: counted on the network built with one class (each further class adds a row to every
classifier), at the asked input size up to the network's default (beyond it AlexNet's first linear layer
grows further, so its count is a lower bound there); a training run holds each parameter four times
(weights, gradient, momentum, averaged weights).  Activations: every layer's output for one image, summed
from one forward pass at a small size and scaled by the input's area (a convolutional network's grids grow
with its input); a training step keeps them for the backward and makes a gradient of each, hence twice that.
"""

from __future__ import annotations

import functools

import numpy as np

import minigrad
from minigrad import nn

from .network import run_with_heads

FLOAT_BYTES = 4
TRAINING_COPIES = 4                      # weights, gradients, momentum buffers, Polyak averages
# Each network's default input size (its parameters are counted at most there), and the size its activations
# are measured at (small, the smallest each builds at comfortably: its auxiliary heads need a 5x5 grid at 4a).
DEFAULT_SIZE = {"googlenet": 224, "googlenet-naive": 224, "googlenet-bn": 224, "alexnet": 224, "plain": 224,
                "mini-googlenet": 32, "mini-googlenet-naive": 32, "mini-googlenet-bn": 32, "mini-googlenet-factorized": 32,
              "mini-plain": 32, "inception-v3": 299}
SMALL_SIZE = {"googlenet": 96, "googlenet-naive": 96, "googlenet-bn": 96, "alexnet": 96, "plain": 96,
              "mini-googlenet": 32, "mini-googlenet-naive": 32, "mini-googlenet-bn": 32, "mini-googlenet-factorized": 32,
              "mini-plain": 32, "inception-v3": 299}


def estimate(name, batch, num_classes, in_channels, input_size, training=True):
    """(parameter bytes, activation bytes) of network `name` (models.MODELS) for a batch of square images."""
    params, per_image = _footprint(name, num_classes, in_channels, input_size)
    copies = TRAINING_COPIES if training else 1
    return params * FLOAT_BYTES * copies, int(batch * per_image * (2 if training else 1))


@functools.lru_cache(maxsize=64)
def _footprint(name, num_classes, in_channels, input_size):
    """(parameters, activation bytes of one image): built and run once per network and size."""
    from . import get_model

    size = min(input_size, DEFAULT_SIZE.get(name, input_size))
    model = get_model(name, num_classes=1, in_channels=in_channels, input_size=size)
    per_class = sum(m.weight.shape[1] + 1 for m in model.modules() if isinstance(m, nn.Linear) and m.weight.shape[0] == 1)
    params = sum(p.numel() for p in model.parameters()) + (num_classes - 1) * per_class
    small = min(size, SMALL_SIZE.get(name, size))
    if small != size:
        model = get_model(name, num_classes=1, in_channels=in_channels, input_size=small)
    return params, _activations(model, (1, in_channels, small, small)) * (input_size / small) ** 2


def _activations(model, shape):
    """Bytes of every layer's output for one input of `shape` (auxiliary heads included)."""
    total, hooks = [0], []
    for m in model.modules():
        if not isinstance(m, (nn.Sequential,)) and not list(m.children()):
            hooks.append(m.register_forward_hook(lambda mod, inputs, out: total.__setitem__(0, total[0] + out.data.nbytes)))
    try:
        run_with_heads(model, minigrad.Tensor(np.zeros(shape, np.float32)))
    finally:
        for h in hooks:
            h.remove()
    return total[0]


def check_fits(name, batch, num_classes, in_channels, input_size, options, training=True):
    """minigrad.cli.CommandError naming `options` (the command's words for these sizes) unless the network's
    estimated memory fits in what is available."""
    from minigrad.cli import check_memory

    params, activations = estimate(name, batch, num_classes, in_channels, input_size, training)
    check_memory(options, params + activations)
