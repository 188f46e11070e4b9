"""What every network here shares: named layers with an input-size check, the grid
arithmetic, the classifier head and the reference model's initialisation."""

from __future__ import annotations

import math
from collections import OrderedDict

import minigrad
from kernels.geometry import conv_out_size, pool_out_size
from minigrad import nn

from .inception import Inception, InceptionNaive


def as_pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


def check_network_args(model, num_classes, in_channels, input_size, dropout=0.0):
    """The arguments every network takes, checked before any layer is built."""
    import numbers

    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{model}: {name} must be a positive int, got {value!r}")
    size = input_size if isinstance(input_size, (tuple, list)) else (input_size, input_size)
    if len(size) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1
                                 for v in size):
        raise ValueError(f"{model}: input_size must be a positive int or a pair of them, got {input_size!r}")
    if not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise ValueError(f"{model}: dropout must be in [0, 1), got {dropout!r}")


class Network(nn.Module):
    """Layers applied in order, held as `self.layers` under names like Table 1's (conv1, pool1, 3a, ...)."""

    def __init__(self, name, layers, in_channels, input_size):
        super().__init__()
        self.name, self.in_channels, self.input_size = name, in_channels, as_pair(input_size)
        self.layers = nn.Sequential(OrderedDict(layers))

    def check_input(self, x):
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, *self.input_size):
            raise ValueError(f"{self.name}: expected input of shape (N, {self.in_channels}, {self.input_size[0]}, "
                             f"{self.input_size[1]}), got {x.shape}; build the model with input_size= for other sizes")

    def forward(self, x):
        self.check_input(x)
        return self.layers(x)


def run_with_heads(model, x, heads=True):
    """model(x) without gradients in training mode (so that auxiliary heads run; heads=False: eval mode) but
    with batch normalisation on its running statistics (one image has one value per channel on 1x1 grids);
    the mode restored after.  For counting shapes and costs, not for training."""
    was_training = model.training
    model.train(heads)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    try:
        with minigrad.no_grad():
            return model(x)
    finally:
        model.train(was_training)


def grids(input_size, layers, model):
    """The spatial size after every named layer, with a clear error where the input is too small.
    (Inception modules keep the grid; convolutions and pools shrink it by their own arithmetic.)"""
    grid, result = as_pair(input_size), {}
    for name, layer in layers:
        if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            k, s = as_pair(layer.kernel_size), as_pair(layer.stride or layer.kernel_size)
            if min(g - kk for g, kk in zip(grid, k)) < 0:
                raise ValueError(f"{model}: input_size {as_pair(input_size)} is too small: the grid is {grid} "
                                 f"at {name}, smaller than its {k[0]}x{k[1]} pool")
            grid = tuple(pool_out_size(g, kk, ss, 0, layer.ceil_mode) for g, kk, ss in zip(grid, k, s))
        elif not isinstance(layer, (Inception, InceptionNaive)):
            for conv in (m for m in layer.modules() if isinstance(m, nn.Conv2d)):
                grid = tuple(conv_out_size(g, k, s, p) for g, k, s, p in
                             zip(grid, conv.kernel_size, conv.stride, conv.padding))
        if min(grid) < 1:
            raise ValueError(f"{model}: input_size {as_pair(input_size)} is too small: nothing is left at {name}")
        result[name] = grid
    return result


def stage_pool():
    """GoogLeNet's max-pool between stages: 3x3, stride 2, rounding up (Caffe)."""
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)


def classifier_head(channels, grid, num_classes, dropout):
    """Average pool over the whole final grid (7x7 at 224x224) -> dropout -> linear, as named layers."""
    return [("pool5", nn.AvgPool2d(grid, stride=1)), ("dropout", nn.Dropout(dropout)),
            ("flatten", nn.Flatten()), ("fc", nn.Linear(channels, num_classes))]


def reference_init(model, classifiers=()):
    """The Caffe reference model's initialisation: Xavier uniform (+-sqrt(3 / fan_in)) for every
    convolution and linear weight, biases 0.2, the classifier layers' biases 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = math.sqrt(3.0 / math.prod(m.weight.shape[1:]))
            m.weight.data[...] = minigrad.random.draw_uniform(m.weight.shape, -bound, bound, m.weight.dtype)
            if m.bias is not None:
                m.bias.data[...] = 0.2
    for m in classifiers:
        m.bias.data[...] = 0.0
