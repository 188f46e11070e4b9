"""The networks GoogLeNet is compared with: AlexNet, a plain network of 3x3 convolutions
with GoogLeNet's stage widths, and a small GoogLeNet-style network for small images."""

from __future__ import annotations

from minigrad import nn

from .googlenet import INCEPTION_TABLE, inception_stages, stem
from .inception import ConvReLU, conv_unit
from .network import Network, check_network_args, classifier_head, grids, reference_init, stage_pool


def alexnet(num_classes=1000, input_size=224, in_channels=3, dropout=0.5):
    """AlexNet (Krizhevsky et al. 2012) as one tower (no grouped convolutions): 62.4M parameters,
    the "~60M" that the GoogLeNet paper compares with.  conv1 is padded by 2 so that a 224x224
    input gives the original 55x55 grid (the original needs 227x227 without padding)."""
    check_network_args("alexnet", num_classes, in_channels, input_size, dropout)
    with nn.skip_init():          # reference_init below sets every weight: none drawn twice
        lrn = lambda: nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)    # AlexNet's k = 2
        pool = lambda: nn.MaxPool2d(3, stride=2)
        layers = [("conv1", ConvReLU(in_channels, 96, 11, stride=4, padding=2)), ("norm1", lrn()), ("pool1", pool()),
                  ("conv2", ConvReLU(96, 256, 5, padding=2)), ("norm2", lrn()), ("pool2", pool()),
                  ("conv3", ConvReLU(256, 384, 3, padding=1)), ("conv4", ConvReLU(384, 384, 3, padding=1)),
                  ("conv5", ConvReLU(384, 256, 3, padding=1)), ("pool5", pool())]
        side = grids(input_size, layers, "alexnet")["pool5"]
        layers += [("flatten", nn.Flatten()),
                   ("fc6", nn.Linear(256 * side[0] * side[1], 4096)), ("relu6", nn.ReLU()), ("drop6", nn.Dropout(dropout)),
                   ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU()), ("drop7", nn.Dropout(dropout)),
                   ("fc8", nn.Linear(4096, num_classes))]
        model = Network("alexnet", layers, in_channels, input_size)
    reference_init(model, classifiers=[model.layers.fc8])
    return model


def plain_net(num_classes=1000, convs_per_stage=2, lrn=True, dropout=0.4, in_channels=3, input_size=224):
    """GoogLeNet with every Inception module replaced by `convs_per_stage` plain 3x3 convolutions
    of the module's output width: the same stem, stage widths, pools and head.  With 2 per stage
    it has GoogLeNet's depth (22 layers with weights)."""
    check_network_args("plain_net", num_classes, in_channels, input_size, dropout)
    if not isinstance(convs_per_stage, int) or convs_per_stage < 1:
        raise ValueError(f"plain_net: convs_per_stage must be a positive int, got {convs_per_stage!r}")
    with nn.skip_init():          # reference_init below sets every weight: none drawn twice
        modules, _ = inception_stages(192)
        widths = {name: m.out_channels for name, m in modules if hasattr(m, "out_channels")}
        layers, channels = stem(in_channels, lrn), 192
        for row in INCEPTION_TABLE:
            if isinstance(row, str):
                layers.append((row, stage_pool()))
                continue
            width = widths[row[0]]
            layers.append((row[0], nn.Sequential(*[ConvReLU(channels if i == 0 else width, width, 3, padding=1)
                                                   for i in range(convs_per_stage)])))
            channels = width
        grid = grids(input_size, layers, "plain_net")["5b"]
        model = Network("plain_net", layers + classifier_head(channels, grid, num_classes, dropout),
                        in_channels, input_size)
    reference_init(model, classifiers=[model.layers.fc])
    return model


# A GoogLeNet for small images (32x32 by default): a light 3x3 stem and three reduced modules
# at about a quarter of 3a, 3b and 4a's widths.
#   name   #1x1  #3x3 reduce  #3x3  #5x5 reduce  #5x5  pool proj
MINI_INCEPTION_TABLE = [
    ("3a",   16,   16,   24,    4,    8,    8),
    ("3b",   24,   24,   32,    8,    16,   16),
    "pool3",
    ("4a",   32,   32,   48,    8,    16,   16),
]


def mini_googlenet(num_classes=10, in_channels=3, input_size=32, naive=False, dropout=0.2, batch_norm=False,
                   factorized=False):
    """conv 3x3 (32) -> max-pool 3x3/2 -> 3a, 3b -> max-pool -> 4a -> global avg-pool -> dropout -> linear.
    naive: Figure 2a's modules; batch_norm: a BN after every convolution; factorized: each 5x5 as two 3x3."""
    check_network_args("mini_googlenet", num_classes, in_channels, input_size, dropout)
    if naive and factorized:
        raise ValueError("mini_googlenet: factorized applies to the reduced modules, not naive=True")
    with nn.skip_init():          # reference_init below sets every weight: none drawn twice
        layers = [("conv1", conv_unit(batch_norm)(in_channels, 32, 3, padding=1)), ("pool1", stage_pool())]
        modules, channels = inception_stages(32, naive, MINI_INCEPTION_TABLE, batch_norm, factorized)
        layers += modules
        grid = grids(input_size, layers, "mini_googlenet")["4a"]
        model = Network("mini_googlenet", layers + classifier_head(channels, grid, num_classes, dropout),
                        in_channels, input_size)
    reference_init(model, classifiers=[model.layers.fc])
    return model


def mini_plain_net(num_classes=10, in_channels=3, input_size=32, width_scale=None, dropout=0.2):
    """mini_googlenet's layout with each Inception module replaced by two plain 3x3 convolutions (the same
    depth: 8 layers with weights), each of the module's output width times `width_scale`.  None: the scale at
    which the network's multiply-adds at 32x32 match the reduced mini_googlenet's (MATCHED_PLAIN_SCALE,
    found by bisection on the count, within 1%): a plain network at the same cost."""
    check_network_args("mini_plain_net", num_classes, in_channels, input_size, dropout)
    scale = MATCHED_PLAIN_SCALE if width_scale is None else width_scale
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 0 < scale <= 64:
        raise ValueError(f"mini_plain_net: width_scale must be a number in (0, 64], got {width_scale!r}")
    with nn.skip_init():          # reference_init below sets every weight: none drawn twice
        modules, _ = inception_stages(32, table=MINI_INCEPTION_TABLE)
        layers, channels = [("conv1", ConvReLU(in_channels, 32, 3, padding=1)), ("pool1", stage_pool())], 32
        for name, module in modules:
            if not hasattr(module, "out_channels"):
                layers.append((name, module))
                continue
            width = max(1, round(module.out_channels * scale))
            layers.append((name, nn.Sequential(ConvReLU(channels, width, 3, padding=1),
                                               ConvReLU(width, width, 3, padding=1))))
            channels = width
        grid = grids(input_size, layers, "mini_plain_net")["4a"]
        model = Network("mini_plain_net", layers + classifier_head(channels, grid, num_classes, dropout),
                        in_channels, input_size)
    reference_init(model, classifiers=[model.layers.fc])
    return model


def _convolution_multiply_adds(model, size=32):
    """Multiply-adds of a network's convolutions and linear layers for one size x size image, from its
    layer shapes (the grid of each stage follows from the pools)."""
    from .summary import summary
    return next(r["multiply_adds"] for r in summary(model, (1, model.in_channels, size, size))
                if r["name"] == "total (inference)")


def matched_plain_scale(tolerance=0.01):
    """The width scale at which mini_plain_net's multiply-adds equal the reduced mini_googlenet's (bisection
    on the scale; the widths are rounded to whole channels, so the match is within `tolerance`)."""
    target = _convolution_multiply_adds(mini_googlenet())
    low, high = 0.05, 4.0
    for _ in range(40):
        middle = (low + high) / 2
        cost = _convolution_multiply_adds(mini_plain_net(width_scale=middle))
        if abs(cost - target) <= tolerance * target:
            return round(middle, 4)
        low, high = (middle, high) if cost < target else (low, middle)
    raise ValueError(f"matched_plain_scale: no scale within {tolerance:.0%} of {target:,} multiply-adds")


# Computed by matched_plain_scale() (tests/test_models.py recomputes it): the widths at which the plain
# network costs what the reduced mini_googlenet costs.
MATCHED_PLAIN_SCALE = 0.3277
