"""GoogLeNet, as in "Going Deeper with Convolutions" (Table 1, Figure 3) and its Caffe
reference model (bvlc_googlenet): LRN in the stem, ceil-mode max-pools, real 5x5
kernels, 40% dropout, auxiliary classifiers on 4a and 4d.  Table 1 as printed: models/summary/table1.json.
"""

from __future__ import annotations

import minigrad.functional as F
from kernels.geometry import pool_out_size
from minigrad import nn

from .inception import Inception, InceptionNaive, conv_unit
from .network import Network, as_pair, check_network_args, classifier_head, grids, reference_init, stage_pool

# Table 1 of the paper: the Inception modules and the max-pools between them.
#   name   #1x1  #3x3 reduce  #3x3  #5x5 reduce  #5x5  pool proj
INCEPTION_TABLE = [
    ("3a",   64,   96,   128,   16,   32,   32),
    ("3b",   128,  128,  192,   32,   96,   64),
    "pool3",
    ("4a",   192,  96,   208,   16,   48,   64),
    ("4b",   160,  112,  224,   24,   64,   64),
    ("4c",   128,  128,  256,   24,   64,   64),
    ("4d",   112,  144,  288,   32,   64,   64),
    ("4e",   256,  160,  320,   32,   128,  128),
    "pool4",
    ("5a",   256,  160,  320,   32,   128,  128),
    ("5b",   384,  192,  384,   48,   128,  128),
]
AUX_AFTER = ("4a", "4d")      # where the auxiliary classifiers branch off


def stem(in_channels=3, lrn=True, batch_norm=False):
    """conv 7x7/2 (64) -> max-pool 3x3/2 -> LRN -> conv 1x1 (64) -> conv 3x3 (192) -> LRN -> max-pool 3x3/2."""
    unit = conv_unit(batch_norm)
    layers = [("conv1", unit(in_channels, 64, 7, stride=2, padding=3)), ("pool1", stage_pool()),
              ("norm1", nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)),
              ("conv2", nn.Sequential(unit(64, 64, 1), unit(64, 192, 3, padding=1))),
              ("norm2", nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)), ("pool2", stage_pool())]
    return [(n, m) for n, m in layers if lrn or not isinstance(m, nn.LocalResponseNorm)]


def inception_stages(in_channels, naive=False, table=INCEPTION_TABLE, batch_norm=False, factorized=False):
    """(name, layer) for each row of `table` (modules and stage max-pools), and the output width.
    The naive version keeps the #1x1, #3x3 and #5x5 counts and passes the pool branch through,
    so its width grows module by module; factorized modules have two 3x3 convolutions for the 5x5."""
    stages, channels = [], in_channels
    for row in table:
        if isinstance(row, str):
            stages.append((row, stage_pool()))
            continue
        name, n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_proj = row
        module = (InceptionNaive(channels, n1x1, n3x3, n5x5, batch_norm) if naive
                  else Inception(channels, n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_proj, batch_norm, factorized))
        stages.append((name, module))
        channels = module.out_channels
    return stages, channels


class AuxClassifier(nn.Module):
    """avg-pool 5x5/3 -> conv 1x1 (128) + ReLU -> linear 1024 + ReLU -> dropout 70% -> linear."""

    def __init__(self, in_channels, grid, num_classes, batch_norm=False):
        super().__init__()
        side = [pool_out_size(g, 5, 3, 0, False) for g in grid]
        self.pool = nn.AvgPool2d(5, stride=3)
        self.conv = conv_unit(batch_norm)(in_channels, 128, 1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(128 * side[0] * side[1], 1024)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.7)
        self.classifier = nn.Linear(1024, num_classes)

    def forward(self, x):
        return self.classifier(self.dropout(self.relu(self.fc(self.flatten(self.conv(self.pool(x)))))))


class GoogLeNet(Network):
    """The network of Table 1.  In training mode with aux_logits it returns (logits, aux1, aux2);
    otherwise the logits.  `naive=True` builds it from naive modules (Figure 2a) to measure the
    blow-up that the 1x1 reductions avoid.  `batch_norm=True`: BN-GoogLeNet, every convolution followed
    by batch normalisation (no bias, eps 0.001, as torchvision's) and no LRN, as the BatchNorm paper's
    Inception did (which also changed the module widths and 5x5s; these keep Table 1's)."""

    def __init__(self, num_classes=1000, aux_logits=True, lrn=True, naive=False, dropout=0.4,
                 in_channels=3, input_size=224, batch_norm=False):
        check_network_args("GoogLeNet", num_classes, in_channels, input_size, dropout)
        with nn.skip_init():          # reference_init below sets every weight: none drawn twice
            modules, channels = inception_stages(192, naive, batch_norm=batch_norm)
            layers = stem(in_channels, lrn and not batch_norm, batch_norm) + modules
            grid = grids(input_size, layers, "GoogLeNet")
            super().__init__("BN-GoogLeNet" if batch_norm else "GoogLeNet",
                             layers + classifier_head(channels, grid["5b"], num_classes, dropout), in_channels, input_size)
            self.aux_logits = aux_logits
            if aux_logits:
                widths = {name: m.out_channels for name, m in modules if hasattr(m, "out_channels")}
                for index, name in enumerate(AUX_AFTER, 1):
                    if min(grid[name]) < 5:
                        raise ValueError(f"GoogLeNet: input_size {as_pair(input_size)} leaves a {grid[name]} grid at "
                                         f"{name}, too small for the auxiliary classifier's 5x5 pool; "
                                         "use aux_logits=False or a larger input")
                    setattr(self, f"aux{index}", AuxClassifier(widths[name], grid[name], num_classes, batch_norm))
        reference_init(self, classifiers=[self.layers.fc] + [getattr(self, f"aux{i}").classifier
                                                             for i in (1, 2) if aux_logits])

    def forward(self, x):
        self.check_input(x)
        aux = []
        for name, layer in self.layers.named_children():
            x = layer(x)
            if self.aux_logits and self.training and name in AUX_AFTER:
                aux.append(getattr(self, f"aux{AUX_AFTER.index(name) + 1}")(x))
        return (x, *aux) if aux else x


def training_loss(outputs, target):
    """GoogLeNet's training loss: the main loss plus 0.3 x each auxiliary loss (plain cross-entropy
    for a network that returns only logits)."""
    if isinstance(outputs, tuple):
        return F.cross_entropy(outputs[0], target) + 0.3 * sum(F.cross_entropy(a, target) for a in outputs[1:])
    return F.cross_entropy(outputs, target)


def googlenet(num_classes=1000, aux_logits=True, lrn=True, naive=False, dropout=0.4, batch_norm=False, **kwargs):
    return GoogLeNet(num_classes, aux_logits, lrn, naive, dropout, batch_norm=batch_norm, **kwargs)
