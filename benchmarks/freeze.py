"""python -m benchmarks.freeze: frozen weights (Module.freeze) against the same weights unfrozen, in one
process, their calls interleaved: single convolutions, then GoogLeNet's forward.

Frozen, the CPU kernels transform each Winograd layer's filters once and read them after (docs/design.md,
"Frozen weights"); unfrozen, they transform them at every call.  The difference is a few percent of a
network's time, less than whole processes on this shared machine drift apart, so both versions live in
one process with the same weights, and each pair of calls, one of each (which goes first alternates; each
timed right after an untimed one of its own, as in a loop of itself), gives one ratio; a figure is the
median ratio over --pairs pairs.  The layers are float32 convolutions with ReLU at stride 1, padding
k // 2 (as benchmarks.ab's), their forward, on Numba's kernels with and without a weight_cache; the network
is the paper's GoogLeNet (seed 0), eval mode, without gradients, its outputs checked to be the same bits.
"""

from __future__ import annotations

import statistics
import sys

import numpy as np

# 3a's 3x3 (F(4x4, 3x3) at 28x28), 4e's and 5b's 3x3 (F(2x2, 3x3) at 14x14 and 7x7), 4e's 5x5 (F(2x2, 5x5)
# at 14x14; a 7x7 image's 5x5 layers run in tiles, not by Winograd)
DEFAULT_LAYERS = "96,128,3,28;160,320,3,14;192,384,3,7;32,128,5,14"


def parse_args(argv):
    from benchmarks.ab import parse_layers
    from minigrad import cli
    parser = cli.Parser(prog="python -m benchmarks.freeze", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", default=DEFAULT_LAYERS, help=f"C,O,K,SIDE;... (default {DEFAULT_LAYERS}); "
                        "'none' for none")
    parser.add_argument("--batches", type=cli.integer_list(1, 64), default=[1, 8, 32], help="batch sizes (default 1,8,32)")
    parser.add_argument("--pairs", type=cli.integer(1, 1000), default=41, help="timed pairs per figure (default 41)")
    parser.add_argument("--no-googlenet", action="store_true", help="the layers only")
    args = parser.parse_args(argv)
    try:
        args.layers = [] if args.layers == "none" else parse_layers(args.layers)
    except ValueError as e:
        raise cli.CommandError(str(e)) from None
    return args


def _row(label, ratios, unfrozen, frozen):
    return (f"| {label} | {statistics.median(unfrozen) * 1e3:.2f} | {statistics.median(frozen) * 1e3:.2f} | "
            f"{statistics.median(ratios):.3f}x ({min(ratios):.2f}-{max(ratios):.2f}) |")


def layer_rows(layers, batches, pairs):
    import kernels.cpu as cpu
    from benchmarks.ab import layer_arrays, layer_name
    from benchmarks.timing import paired
    from minigrad.nn import stored_filters
    for batch in batches:
        for c, o, k, side in layers:
            x, w, b, _, pad = layer_arrays(c, o, k, side, batch)
            w, cache = stored_filters(w), {}
            ratios, frozen, unfrozen = paired(lambda: cpu.conv2d_forward(x, w, b, (1, 1), pad, True, None, cache),
                                              lambda: cpu.conv2d_forward(x, w, b, (1, 1), pad, True), pairs, settle=True)
            yield _row(f"{layer_name(c, o, k, side)}, batch {batch}", ratios, unfrozen, frozen)


def network_rows(batches, pairs):
    import minigrad
    from benchmarks.__main__ import build_model
    from benchmarks.googlenet import _channels_last
    from benchmarks.timing import paired
    spec = {"kind": "network", "name": "googlenet", "input_size": 224}
    unfrozen, frozen = build_model(spec).eval(), build_model(spec).freeze()
    for batch in batches:
        x = minigrad.Tensor(_channels_last((batch, 3, 224, 224), 0))
        outputs = {}

        def forward(net, name):
            def run():
                with minigrad.no_grad():
                    outputs[name] = net(x).numpy()
            return run
        ratios, kept, plain = paired(forward(frozen, "frozen"), forward(unfrozen, "unfrozen"), pairs, settle=True)
        if not np.array_equal(outputs["unfrozen"], outputs["frozen"]):
            raise AssertionError(f"benchmarks.freeze: the frozen network's output differs at batch {batch}")
        yield _row(f"GoogLeNet, batch {batch}", ratios, plain, kept)


def _main(argv):
    args = parse_args(argv)
    from benchmarks.timing import machine_header
    print(machine_header())
    print(f"float32, forward; {args.pairs} interleaved pairs a figure, one process; ms: medians\n")
    print("| what | unfrozen, ms | frozen, ms | frozen / unfrozen, median of pairs (range) |")
    print("| --- | ---: | ---: | --- |")
    for row in layer_rows(args.layers, args.batches, args.pairs):
        print(row, flush=True)
    if not args.no_googlenet:
        for row in network_rows(args.batches, args.pairs):
            print(row, flush=True)
        print("\nGoogLeNet's outputs, frozen and unfrozen: the same bits")
    return 0


def main(argv=None):
    from minigrad import cli
    return cli.run("python -m benchmarks.freeze", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
