"""The same network in PyTorch, with the same weights: the reference for --compare torch.

`to_torch(module)` walks a minigrad model and builds the PyTorch twin layer by layer
(PyTorch is only a benchmark and test reference, never a dependency of the engine).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from minigrad import nn
from models.googlenet import AUX_AFTER, GoogLeNet
from models.inception import Inception, InceptionNaive
from models.network import Network


def to_torch(module):
    import torch

    tnn = torch.nn

    def param(t):
        return tnn.Parameter(torch.from_numpy(np.array(t.numpy(), copy=True)))

    def convert(m):
        if isinstance(m, nn.Conv2d):
            out, inp = m.weight.shape[:2]
            conv = tnn.Conv2d(inp, out, m.kernel_size, m.stride, m.padding, bias=m.bias is not None)
            conv.weight = param(m.weight)
            if m.bias is not None:
                conv.bias = param(m.bias)
            return conv
        if isinstance(m, nn.Linear):
            linear = tnn.Linear(m.weight.shape[1], m.weight.shape[0], bias=m.bias is not None)
            linear.weight = param(m.weight)
            if m.bias is not None:
                linear.bias = param(m.bias)
            return linear
        if isinstance(m, nn.MaxPool2d):
            return tnn.MaxPool2d(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)
        if isinstance(m, nn.AvgPool2d):
            return tnn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad)
        if isinstance(m, nn.LocalResponseNorm):
            return tnn.LocalResponseNorm(m.size, m.alpha, m.beta, m.k)
        if isinstance(m, nn.ReLU):
            return tnn.ReLU()
        if isinstance(m, nn.Dropout):
            return tnn.Dropout(m.p)
        if isinstance(m, nn.Flatten):
            return tnn.Flatten(m.start_dim, m.end_dim)
        if isinstance(m, (Inception, InceptionNaive)):
            return _Branches([convert(b) for b in (m.branch1x1, m.branch3x3, m.branch5x5, m.branch_pool)])
        if isinstance(m, GoogLeNet):
            return _GoogLeNet(convert(m.layers), [convert(getattr(m, f"aux{i}")) for i in (1, 2) if m.aux_logits])
        if isinstance(m, Network):
            return convert(m.layers)
        children = list(m.named_children())
        if isinstance(m, nn.Sequential) or children:       # any other container: its children in order
            return tnn.Sequential(OrderedDict((n, convert(c)) for n, c in children))
        raise TypeError(f"to_torch: no PyTorch equivalent for {type(m).__name__}")

    class _Branches(tnn.Module):
        def __init__(self, branches):
            super().__init__()
            self.branches = tnn.ModuleList(branches)

        def forward(self, x):
            return torch.cat([b(x) for b in self.branches], 1)

    class _GoogLeNet(tnn.Module):
        def __init__(self, layers, aux):
            super().__init__()
            self.layers, self.aux = layers, tnn.ModuleList(aux)

        def forward(self, x):
            outputs = []
            for name, layer in self.layers.named_children():
                x = layer(x)
                if self.training and len(self.aux) and name in AUX_AFTER:
                    outputs.append(self.aux[AUX_AFTER.index(name)](x))
            return (x, *outputs) if outputs else x

    return convert(module)
