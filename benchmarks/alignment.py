"""python -m benchmarks.alignment: a convolution's forward with its filters 16, 32 and 48 bytes past a
cache line, against the same filters on one, in one process, their calls interleaved.

nn.Conv2d stores its filters on a 64-byte boundary (kernels/memory.py); NumPy alone would put them wherever
its allocator happened to be, 16 bytes apart, which differs from process to process (with the imports,
among other things).  Each figure is the median ratio, misaligned over aligned, of --pairs interleaved
pairs (each call timed right after an untimed one of its own).  The layers are float32 convolutions with
ReLU at stride 1, padding k // 2 (as benchmarks.ab's), on Numba's kernels.
"""

from __future__ import annotations

import statistics
import sys

import numpy as np

# 5b's widest 1x1, 4d's 1x1 at 14x14, 3a's at 28x28 and 3a's 5x5 (in tiles)
DEFAULT_LAYERS = "832,384,1,7;512,112,1,14;192,64,1,28;16,32,5,28"
OFFSETS = (16, 32, 48)


def parse_args(argv):
    from benchmarks.ab import parse_layers
    from minigrad import cli
    parser = cli.Parser(prog="python -m benchmarks.alignment", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", default=DEFAULT_LAYERS, help=f"C,O,K,SIDE;... (default {DEFAULT_LAYERS})")
    parser.add_argument("--batch", type=cli.integer(1, 64), default=8, help="images (default 8)")
    parser.add_argument("--pairs", type=cli.integer(1, 1000), default=41, help="timed pairs per figure (default 41)")
    args = parser.parse_args(argv)
    try:
        args.layers = parse_layers(args.layers)
    except ValueError as e:
        raise cli.CommandError(str(e)) from None
    return args


def filters_at(values, offset):
    """values (O, C, KH, KW) stored as nn.Conv2d stores them, (KH, KW, C, O), `offset` bytes past a cache line."""
    from kernels.memory import ALIGNMENT, aligned_empty
    o, c, kh, kw = values.shape
    raw = aligned_empty(values.size * 4 + ALIGNMENT, np.uint8)
    stored = raw[offset:offset + values.size * 4].view(np.float32).reshape(kh, kw, c, o).transpose(3, 2, 0, 1)
    stored[...] = values
    return stored


def _main(argv):
    args = parse_args(argv)
    import kernels.cpu as cpu
    from benchmarks.ab import layer_arrays, layer_name
    from benchmarks.timing import machine_header, paired
    print(machine_header())
    print(f"float32 forward, batch {args.batch}; {args.pairs} interleaved pairs a figure, one process\n")
    print("| layer | aligned, ms | " + " | ".join(f"{offset} bytes past, over aligned" for offset in OFFSETS) + " |")
    print("| --- | ---: |" + " ---: |" * len(OFFSETS))
    for c, o, k, side in args.layers:
        x, w, b, _, pad = layer_arrays(c, o, k, side, args.batch)
        aligned = filters_at(w, 0)
        cells, times = [], []
        for offset in OFFSETS:
            shifted = filters_at(w, offset)
            ratios, _, on_line = paired(lambda: cpu.conv2d_forward(x, shifted, b, (1, 1), pad, True),
                                        lambda: cpu.conv2d_forward(x, aligned, b, (1, 1), pad, True), args.pairs,
                                        settle=True)
            cells.append(f"{statistics.median(ratios):.3f}x")
            times += on_line
        print(f"| {layer_name(c, o, k, side)} | {statistics.median(times) * 1e3:.2f} | " + " | ".join(cells) + " |",
              flush=True)
    return 0


def main(argv=None):
    from minigrad import cli
    return cli.run("python -m benchmarks.alignment", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
