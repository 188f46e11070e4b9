"""python -m benchmarks.onnx: a network built by minigrad against the same network exported to ONNX and loaded
back (minigrad.onnx.load), and against onnxruntime running the file: inference forward, and forward plus
backward for the two minigrad versions (fine-tuning an imported network).

All three are timed in turn, round after round (benchmarks.timing.measure_alternating), on the same batch;
ratios are medians against the network minigrad built.  onnxruntime runs with its defaults (all cores).
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

import minigrad
from benchmarks.timing import machine_header, measure_alternating
from minigrad import cli


def parse_args(argv):
    import models
    parser = cli.Parser(prog="python -m benchmarks.onnx", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=cli.name_list(list(models.MODELS), "model"), default=["googlenet"],
                        help="models to compare, comma-separated (default googlenet)")
    parser.add_argument("--batch", type=cli.integer(1, 256), default=8, help="images per batch (default 8)")
    parser.add_argument("--repeat", type=cli.integer(1, 1000), default=7, help="timed rounds (default 7)")
    args = parser.parse_args(argv)
    for name in args.models:
        try:
            models.memory.check_fits(name, args.batch, 1000, 3, 299 if name == "inception-v3" else 224,
                                     f"--models {name} with --batch {args.batch}")
        except ValueError as error:
            raise cli.CommandError(str(error)) from None
    return args


def compare(name, batch, repeat):
    """{case: median seconds} for one model."""
    import models
    model = models.get_model(name)
    size = model.input_size[0]
    x = minigrad.Tensor(np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, f"{name}.onnx")
        minigrad.onnx.export(model, x, path)
        imported = minigrad.onnx.load(path)
        fns = {}
        try:
            import onnxruntime
            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            feed = {session.get_inputs()[0].name: x.numpy()}
            fns["onnxruntime forward"] = lambda: session.run(None, feed)
        except ImportError:
            pass
    model.eval()

    def forward(net):
        def run():
            with minigrad.no_grad():
                net(x)
        return run

    def step(net):
        def run():
            net.zero_grad()
            net(x).sum().backward()
        return run

    fns = {"built forward": forward(model), "imported forward": forward(imported), **fns,
           "built forward+backward": step(model), "imported forward+backward": step(imported)}
    return measure_alternating(fns, repeat=repeat, warmup=1)


def main(argv=None):
    return cli.run("python -m benchmarks.onnx", _main, argv)


def _main(argv):
    args = parse_args(argv)
    print(machine_header())
    print(f"batch {args.batch}, float32, eval mode; medians of {args.repeat} alternating rounds\n")
    print("| model | case | ms | / built |")
    print("| --- | --- | ---: | ---: |")
    for name in args.models:
        times = compare(name, args.batch, args.repeat)
        for case, seconds in times.items():
            base = times["built forward+backward" if "backward" in case else "built forward"]
            print(f"| {name} | {case} | {seconds * 1e3:.0f} | {seconds / base:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
