"""The Inception module of "Going Deeper with Convolutions", both versions (Figure 2).

Four parallel branches over the same input, concatenated along channels in the
order 1x1, 3x3, 5x5, pool.  The naive module (Figure 2a) applies the 3x3 and 5x5
convolutions to all input channels; the reduced module (Figure 2b) first shrinks
the channels with 1x1 convolutions, which is what makes GoogLeNet affordable.
"""

from __future__ import annotations

import minigrad
from minigrad import nn


class ConvReLU(nn.Module):
    """A convolution followed by ReLU (every convolution in GoogLeNet has one), run as one op
    (F.conv2d_relu): the ReLU is applied in the pass that adds the bias."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)

    def forward(self, x):
        return self.conv(x, relu=True)


class ConvBNReLU(nn.Module):
    """A convolution without bias, batch normalisation and ReLU (torchvision's BasicConv2d, BN-Inception's and
    Inception-v3's unit); the ReLU fused into the normalisation's pass.  eps 0.001, as those networks use."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, eps=1e-3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps)

    def forward(self, x):
        return self.bn(self.conv(x), relu=True)


def conv_unit(batch_norm):
    """The convolution unit of a network: ConvBNReLU with batch normalisation, else ConvReLU."""
    return ConvBNReLU if batch_norm else ConvReLU


class InceptionNaive(nn.Module):
    """Figure 2a: [1x1] [3x3 pad 1] [5x5 pad 2] [3x3 max-pool stride 1 pad 1], concatenated.

    The pool branch passes its input's channels straight through, so the output has
    ch1x1 + ch3x3 + ch5x5 + in_channels channels.
    """

    def __init__(self, in_channels, ch1x1, ch3x3, ch5x5, batch_norm=False):
        super().__init__()
        unit = conv_unit(batch_norm)
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + in_channels
        self.branch1x1 = unit(in_channels, ch1x1, 1)
        self.branch3x3 = unit(in_channels, ch3x3, 3, padding=1)
        self.branch5x5 = unit(in_channels, ch5x5, 5, padding=2)
        self.branch_pool = nn.MaxPool2d(3, stride=1, padding=1)

    def forward(self, x):
        return minigrad.cat([self.branch1x1(x), self.branch3x3(x), self.branch5x5(x), self.branch_pool(x)], 1)


class Inception(nn.Module):
    """Figure 2b: 1x1 reductions before the 3x3 and 5x5 convolutions, and a 1x1
    projection after the pool; ReLU after every convolution.  factorized=True: the 5x5 as two
    stacked 3x3 convolutions ("Rethinking the Inception Architecture", Figure 5; 18 weights per
    channel pair where the 5x5 has 25)."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, batch_norm=False,
                 factorized=False):
        super().__init__()
        unit = conv_unit(batch_norm)
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.branch1x1 = unit(in_channels, ch1x1, 1)
        self.branch3x3 = nn.Sequential(unit(in_channels, ch3x3red, 1), unit(ch3x3red, ch3x3, 3, padding=1))
        wide = [unit(ch5x5red, ch5x5, 3, padding=1), unit(ch5x5, ch5x5, 3, padding=1)] if factorized else \
            [unit(ch5x5red, ch5x5, 5, padding=2)]
        self.branch5x5 = nn.Sequential(unit(in_channels, ch5x5red, 1), *wide)
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), unit(in_channels, pool_proj, 1))

    def forward(self, x):
        return minigrad.cat([self.branch1x1(x), self.branch3x3(x), self.branch5x5(x), self.branch_pool(x)], 1)
