"""python -m benchmarks: forward and backward of a convolution, a max-pool and GoogLeNet's
Inception 3a module (naive vs 1x1-reduced) at its real size, with shapes and timings.

(The full naive-vs-reduced benchmark over all nine modules and whole networks is issue 5.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import kernels
import minigrad
import minigrad.functional as F
from models import Inception, InceptionNaive


def median_ms(fn, repeat):
    fn()                                   # warm-up (and first-call compilation)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def forward_backward(make_output):
    def step():
        out = make_output()
        out.backward(np.ones(out.shape, out.dtype))
        return out
    return step


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4, help="batch size (default 4)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per row; the median is shown (default 3)")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeat < 1:
        parser.exit(2, "python -m benchmarks: error: --batch and --repeat must be >= 1\n")

    minigrad.manual_seed(0)
    n = args.batch
    x3a = minigrad.randn(n, 192, 28, 28, requires_grad=True)
    rows = []

    def add(name, make_output):
        with minigrad.no_grad():
            shape = make_output().shape
            forward = median_ms(make_output, args.repeat)
        rows.append((name, shape, forward, median_ms(forward_backward(make_output), args.repeat)))

    stem_x = minigrad.randn(n, 3, 224, 224, requires_grad=True)
    stem = minigrad.nn.Conv2d(3, 64, 7, stride=2, padding=3)
    add("conv 7x7/2, 3->64, 224x224", lambda: stem(stem_x))
    pool_x = minigrad.randn(n, 64, 112, 112, requires_grad=True)
    add("max-pool 3x3/2 ceil, 64x112x112", lambda: F.max_pool2d(pool_x, 3, 2, ceil_mode=True))
    naive = InceptionNaive(192, 64, 128, 32)
    reduced = Inception(192, 64, 96, 128, 16, 32, 32)
    add("inception 3a naive, 192x28x28", lambda: naive(x3a))
    add("inception 3a reduced, 192x28x28", lambda: reduced(x3a))

    print(f"minigrad {minigrad.__version__}, CPU kernels: {kernels.cpu_backend_name()}, float32, batch {n}, "
          f"median of {args.repeat}")
    print(f"{'op':34s} {'output shape':>20s} {'forward ms':>11s} {'fwd+bwd ms':>11s}")
    for name, shape, forward, both in rows:
        print(f"{name:34s} {str(shape):>20s} {forward:11.1f} {both:11.1f}")
    ratio = rows[2][3] / rows[3][3]
    print(f"naive / reduced 3a, forward+backward time: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
