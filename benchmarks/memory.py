"""python -m benchmarks.memory: resident memory over many training steps.

Trains the small GoogLeNet-style network (batch 32, 32x32, 3 channels, random data) for
--steps steps and reports the resident set size (RSS) after step 20 and at the end: the
graph and its buffers are freed every step, so memory must stay flat.
"""

from __future__ import annotations

import gc
import os
import sys

import numpy as np

import minigrad
import minigrad.functional as F
import models
from minigrad import cli, optim


def resident_mb():
    """This process's resident memory, from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def train_steps(steps, batch=32, size=32, on_step=None):
    """Run `steps` SGD steps of mini_googlenet; on_step(step, rss_mb) after each."""
    minigrad.manual_seed(0)
    net = models.mini_googlenet(num_classes=10, input_size=size)
    optimizer = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    for step in range(1, steps + 1):
        loss = F.cross_entropy(net(minigrad.Tensor(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if on_step is not None:
            gc.collect()
            on_step(step, resident_mb())


def parse_args(argv):
    parser = cli.Parser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=cli.integer(21, 10**7), default=300, help="training steps, at least 21")
    return parser.parse_args(argv)


def main(argv=None):
    return cli.run("python -m benchmarks.memory", _main, argv)


def _main(argv):
    args = parse_args(argv)
    rss = {}
    train_steps(args.steps, on_step=lambda step, mb: rss.__setitem__(step, mb))
    base, last, peak = rss[20], rss[args.steps], max(v for k, v in rss.items() if k >= 20)
    print(f"mini_googlenet, batch 32, 32x32: RSS after step 20 {base:.1f} MB, after step {args.steps} {last:.1f} MB "
          f"({(last - base) / base:+.2%}), highest after step 20 {peak:.1f} MB ({(peak - base) / base:+.2%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
