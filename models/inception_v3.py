"""Inception-v3 ("Rethinking the Inception Architecture for Computer Vision", Szegedy et al. 2015), as
torchvision publishes it, and the factorized convolutions it is made of.

The paper's ideas, each a module here:
- Figure 5: a 5x5 as two stacked 3x3 (the same receptive field, 2 * 9 = 18 weights per channel pair
  instead of 25: 28% fewer): `StackedConv` (InceptionA's double-3x3 branch).
- Figure 6: an n x n as a 1 x n followed by an n x 1 (2n instead of n^2; n = 7 on the 17x17 grid):
  `Asymmetric` (InceptionC).
- Figure 7: the expanded filter bank on the 8x8 grid, a 1x3 and a 3x1 side by side on one input,
  concatenated: `ExpandedBank` (InceptionE).
- Figure 10: the grid reduced by stride-2 convolutions beside a stride-2 pool, concatenated, rather than a
  pool before or after an expensive module: `InceptionB`, `InceptionD`.

Every convolution is BasicConv2d (`ConvBNReLU`: no bias, batch normalisation with eps 0.001, ReLU).  The
released network differs from the paper's Table 1: four 17x17 modules where the table shows five (the
"5 x" rows), and its 35x35 modules keep a 5x5 branch beside the double 3x3 that Figure 5 replaces it with.
models.summary says so for this model.
"""

from __future__ import annotations

import numpy as np

import minigrad
from kernels.geometry import conv_out_size, pool_out_size
from minigrad import nn

from .inception import ConvBNReLU
from .network import Network, check_network_args

Conv = ConvBNReLU


class StackedConv(nn.Module):
    """Convolutions applied one after another (Figure 5: a 5x5 as two 3x3): channels[0] -> channels[1] -> ...,
    each with its (kernel, padding) and the last with `stride`."""

    def __init__(self, channels, kernels, paddings, stride=1):
        super().__init__()
        for i, (k, p) in enumerate(zip(kernels, paddings)):
            setattr(self, f"conv{i + 1}", Conv(channels[i], channels[i + 1], k, stride if i == len(kernels) - 1 else 1, p))

    def forward(self, x):
        for conv in self.children():
            x = conv(x)
        return x


def Asymmetric(in_channels, mid_channels, out_channels, n, first="1xn"):
    """Figure 6: an n x n convolution as 1 x n then n x 1 (first="1xn") or n x 1 then 1 x n, padded to keep
    the grid: 2n weights per channel pair instead of n^2."""
    row, column = ((1, n), (0, n // 2)), ((n, 1), (n // 2, 0))
    (k1, p1), (k2, p2) = (row, column) if first == "1xn" else (column, row)
    return StackedConv((in_channels, mid_channels, out_channels), (k1, k2), (p1, p2))


class ExpandedBank(nn.Module):
    """Figure 7: a 1x3 and a 3x1 convolution side by side on one input, concatenated (2 * out channels)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv_1x3 = Conv(in_channels, out_channels, (1, 3), padding=(0, 1))
        self.conv_3x1 = Conv(in_channels, out_channels, (3, 1), padding=(1, 0))

    def forward(self, x):
        return minigrad.cat([self.conv_1x3(x), self.conv_3x1(x)], 1)


def _pool_branch(in_channels, out_channels):
    """3x3 average pool, stride 1, padding 1 (the padding counted, as torchvision's F.avg_pool2d), then 1x1."""
    return nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), Conv(in_channels, out_channels, 1))


class InceptionA(nn.Module):
    """35x35: 1x1 (64); 1x1 (48) -> 5x5 (64); 1x1 (64) -> 3x3 (96) -> 3x3 (96) (Figure 5); pool -> 1x1."""

    def __init__(self, in_channels, pool_features):
        super().__init__()
        self.branch1x1 = Conv(in_channels, 64, 1)
        self.branch5x5 = StackedConv((in_channels, 48, 64), (1, 5), (0, 2))
        self.branch3x3dbl = StackedConv((in_channels, 64, 96, 96), (1, 3, 3), (0, 1, 1))
        self.branch_pool = _pool_branch(in_channels, pool_features)
        self.out_channels = 64 + 64 + 96 + pool_features

    def forward(self, x):
        return minigrad.cat([self.branch1x1(x), self.branch5x5(x), self.branch3x3dbl(x), self.branch_pool(x)], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 (Figure 10): 3x3/2 (384); 1x1 (64) -> 3x3 (96) -> 3x3/2 (96); max-pool 3x3/2."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = Conv(in_channels, 384, 3, stride=2)
        self.branch3x3dbl = StackedConv((in_channels, 64, 96, 96), (1, 3, 3), (0, 1, 0), stride=2)
        self.branch_pool = nn.MaxPool2d(3, stride=2)
        self.out_channels = 384 + 96 + in_channels

    def forward(self, x):
        return minigrad.cat([self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(x)], 1)


class InceptionC(nn.Module):
    """17x17 (Figure 6, n = 7): 1x1 (192); 1x1 -> 1x7 -> 7x1 (192); 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 (192);
    pool -> 1x1 (192).  c7: the channels inside the factorized branches."""

    def __init__(self, in_channels, channels_7x7):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = Conv(in_channels, 192, 1)
        self.branch7x7 = nn.Sequential(Conv(in_channels, c7, 1), Asymmetric(c7, c7, 192, 7, first="1xn"))
        self.branch7x7dbl = nn.Sequential(Conv(in_channels, c7, 1), Asymmetric(c7, c7, c7, 7, first="nx1"),
                                          Asymmetric(c7, c7, 192, 7, first="nx1"))
        self.branch_pool = _pool_branch(in_channels, 192)
        self.out_channels = 4 * 192

    def forward(self, x):
        return minigrad.cat([self.branch1x1(x), self.branch7x7(x), self.branch7x7dbl(x), self.branch_pool(x)], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 (Figure 10): 1x1 (192) -> 3x3/2 (320); 1x1 (192) -> 1x7 -> 7x1 -> 3x3/2 (192); max-pool."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = StackedConv((in_channels, 192, 320), (1, 3), (0, 0), stride=2)
        self.branch7x7x3 = nn.Sequential(Conv(in_channels, 192, 1), Asymmetric(192, 192, 192, 7, first="1xn"),
                                         Conv(192, 192, 3, stride=2))
        self.branch_pool = nn.MaxPool2d(3, stride=2)
        self.out_channels = 320 + 192 + in_channels

    def forward(self, x):
        return minigrad.cat([self.branch3x3(x), self.branch7x7x3(x), self.branch_pool(x)], 1)


class InceptionE(nn.Module):
    """8x8 (Figure 7): 1x1 (320); 1x1 (384) -> [1x3, 3x1] (2 x 384); 1x1 (448) -> 3x3 (384) -> [1x3, 3x1]
    (2 x 384); pool -> 1x1 (192)."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch1x1 = Conv(in_channels, 320, 1)
        self.branch3x3 = nn.Sequential(Conv(in_channels, 384, 1), ExpandedBank(384, 384))
        self.branch3x3dbl = nn.Sequential(Conv(in_channels, 448, 1), Conv(448, 384, 3, padding=1), ExpandedBank(384, 384))
        self.branch_pool = _pool_branch(in_channels, 192)
        self.out_channels = 320 + 768 + 768 + 192

    def forward(self, x):
        return minigrad.cat([self.branch1x1(x), self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(x)], 1)


class InceptionAux(nn.Module):
    """On 6e's 17x17 output: avg-pool 5x5/3 -> 1x1 (128) -> 5x5 (768) -> global avg-pool -> linear."""

    def __init__(self, in_channels, grid, num_classes):
        super().__init__()
        side = [pool_out_size(g, 5, 3, 0, False) for g in grid]
        self.pool = nn.AvgPool2d(5, stride=3)
        self.conv0 = Conv(in_channels, 128, 1)
        self.conv1 = Conv(128, 768, 5)
        self.global_pool = nn.AvgPool2d((side[0] - 4, side[1] - 4), stride=1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.global_pool(self.conv1(self.conv0(self.pool(x))))))


def _grids(input_size):
    """The grid after the stem (35x35 at 299), the 17x17 and the 8x8 stages, for an input of input_size."""
    side = conv_out_size(input_size, 3, 2, 0)                       # Conv2d_1a_3x3, stride 2
    side = conv_out_size(side, 3, 1, 0)                             # Conv2d_2a_3x3
    side = pool_out_size(side, 3, 2, 0, False)                      # maxpool1 (after 2b, which keeps the grid)
    side = conv_out_size(side, 3, 1, 0)                             # Conv2d_4a_3x3 (after 3b, a 1x1)
    grid35 = pool_out_size(side, 3, 2, 0, False)                    # maxpool2
    grid17 = conv_out_size(grid35, 3, 2, 0)                         # Mixed_6a
    return grid35, grid17, conv_out_size(grid17, 3, 2, 0)           # Mixed_7a


class InceptionV3(Network):
    """torchvision's Inception-v3 (its channel tables; 299x299 input): 27,161,264 parameters with the
    auxiliary head, 23,834,568 without.  In training mode with aux_logits it returns (logits, aux)."""

    def __init__(self, num_classes=1000, aux_logits=True, dropout=0.5, in_channels=3, input_size=299):
        check_network_args("inception_v3", num_classes, in_channels, input_size, dropout)
        if not isinstance(input_size, int):
            raise ValueError(f"inception_v3: input_size must be one int (square images), got {input_size!r}")
        grid35, grid17, grid8 = _grids(input_size)
        if grid8 < 1:
            raise ValueError(f"inception_v3: input_size {input_size} is too small: nothing is left at Mixed_7a "
                             "(75 is the least)")
        with nn.skip_init():          # _init below sets every weight: none drawn twice
            layers = [("Conv2d_1a_3x3", Conv(in_channels, 32, 3, stride=2)), ("Conv2d_2a_3x3", Conv(32, 32, 3)),
                      ("Conv2d_2b_3x3", Conv(32, 64, 3, padding=1)), ("maxpool1", nn.MaxPool2d(3, stride=2)),
                      ("Conv2d_3b_1x1", Conv(64, 80, 1)), ("Conv2d_4a_3x3", Conv(80, 192, 3)),
                      ("maxpool2", nn.MaxPool2d(3, stride=2)),
                      ("Mixed_5b", InceptionA(192, 32)), ("Mixed_5c", InceptionA(256, 64)), ("Mixed_5d", InceptionA(288, 64)),
                      ("Mixed_6a", InceptionB(288)), ("Mixed_6b", InceptionC(768, 128)), ("Mixed_6c", InceptionC(768, 160)),
                      ("Mixed_6d", InceptionC(768, 160)), ("Mixed_6e", InceptionC(768, 192)), ("Mixed_7a", InceptionD(768)),
                      ("Mixed_7b", InceptionE(1280)), ("Mixed_7c", InceptionE(2048)),
                      ("avgpool", nn.AvgPool2d(grid8, stride=1)), ("dropout", nn.Dropout(dropout)), ("flatten", nn.Flatten()),
                      ("fc", nn.Linear(2048, num_classes))]
            super().__init__("inception_v3", layers, in_channels, input_size)
            self.aux_logits = aux_logits
            if aux_logits:
                if pool_out_size(grid17, 5, 3, 0, False) < 5:
                    raise ValueError(f"inception_v3: input_size {input_size} leaves a {grid17}x{grid17} grid at Mixed_6e, "
                                     "too small for the auxiliary head's 5x5 convolution; use aux_logits=False or a larger "
                                     "input")
                self.AuxLogits = InceptionAux(768, (grid17, grid17), num_classes)
        _init(self)

    def forward(self, x):
        self.check_input(x)
        aux = None
        for name, layer in self.layers.named_children():
            x = layer(x)
            if name == "Mixed_6e" and self.aux_logits and self.training:
                aux = self.AuxLogits(x)
        return (x, aux) if aux is not None else x


def _init(model):
    """torchvision's initialisation: every convolution and linear weight from a normal distribution truncated
    at 2 standard deviations, of 0.1 (the auxiliary head's 5x5 0.01, its classifier 0.001); biases 0; batch
    normalisation's weights 1 and biases 0."""
    rng = minigrad.random.generator()
    special = {}
    if getattr(model, "aux_logits", False):
        special = {id(model.AuxLogits.conv1.conv): 0.01, id(model.AuxLogits.fc): 0.001}
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            std = special.get(id(m), 0.1)
            values = rng.standard_normal(m.weight.shape)
            outside = np.abs(values) > 2
            while outside.any():                                  # redrawn beyond 2 standard deviations
                values[outside] = rng.standard_normal(int(outside.sum()))
                outside = np.abs(values) > 2
            m.weight.data[...] = values * std
            if m.bias is not None:
                m.bias.data[...] = 0.0


def inception_v3(num_classes=1000, aux_logits=True, dropout=0.5, **kwargs):
    return InceptionV3(num_classes, aux_logits, dropout, **kwargs)
