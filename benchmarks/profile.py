"""python -m benchmarks.profile googlenet: where the time of one training step goes, op by op.

Three warm-up steps, then three profiled steps (forward, loss, backward; with --forward, the forward pass
alone in eval mode without gradients, as inference runs it, at batch 1 the latency case): a row per
(layer, op) with its output shape, forward and backward ms (each the best of the
profiled steps: this machine is shared, and the best is the steadiest estimate), share
of the step, multiply-adds and GFLOP/s for convolutions and linear layers, bytes moved
and GB/s for the memory-bound ops.  Sorted by time.
"""

from __future__ import annotations

import sys

import numpy as np

import minigrad
import models
from benchmarks.__main__ import training_step
from benchmarks.timing import machine_header
from minigrad import cli
from minigrad.profiler import profile, with_rates
from models import memory

# Untimed steps first: the first loads Numba's kernels, and the first ones grow the heap to a step's
# peak (page faults that later steps, reusing it, do not take).
WARM_UP_STEPS = 3


def run(model_name, batch, input_size=None, steps=3, forward_only=False):
    """(rows, wall seconds): profiler rows of one training step (forward_only: one eval-mode forward without
    gradients), each (layer, op)'s forward and backward time the best of `steps` profiled steps after the
    warm-up, and the shortest step's wall time."""
    minigrad.manual_seed(0)
    kwargs = {"input_size": input_size} if input_size else {}
    net = models.get_model(model_name, **kwargs)
    x = minigrad.randn(batch, net.in_channels, *net.input_size)
    target = np.arange(batch) % net.layers.fc.weight.shape[0] if hasattr(net.layers, "fc") else np.zeros(batch, int)
    step = training_step(net, x, target)
    if forward_only:
        net.eval()

        def step():
            with minigrad.no_grad():
                net(x)
    for _ in range(WARM_UP_STEPS):               # compiled kernels loaded, the allocator settled
        step()
    best, wall = {}, float("inf")
    for _ in range(steps):
        with profile(net) as prof:
            step()
        wall = min(wall, prof.wall_seconds)
        for r in prof.table():
            kept = best.setdefault((r["layer"], r["op"]), r)
            for k in ("forward_s", "backward_s"):
                kept[k] = min(kept[k], r[k])
    return sorted((with_rates(r, wall) for r in best.values()), key=lambda r: -r["seconds"]), wall


def format_profile(rows, wall_seconds, top=None, what="one training step"):
    lines = [f"{what}: {wall_seconds * 1e3:.0f} ms wall, "
             f"{sum(r['seconds'] for r in rows) * 1e3:.0f} ms inside ops",
             "| op | layer | output shape | fwd ms | bwd ms | share | M mult-adds | GFLOP/s | MB moved | GB/s |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows[:top]:
        if r["multiply_adds"]:          # compute-bound: the rate of its multiply-adds
            work = f"{r['multiply_adds'] / 1e6:.0f} | {r['gflops']:.0f} | | "
        else:                           # memory-bound: the rate of the bytes it moves
            moved = (r["forward_bytes"] + r["backward_bytes"]) / 1e6
            work = f" | | {moved:.1f} | {r['gbps'] or 0:.1f} "
        lines.append(f"| {r['op']} | {r['layer']} | {'x'.join(map(str, r['shape']))} | {r['forward_s'] * 1e3:.2f} | "
                     f"{r['backward_s'] * 1e3:.2f} | {r['share']:.1%} | {work}|")
    by_op = {}
    for r in rows:
        by_op[r["op"]] = by_op.get(r["op"], 0.0) + r["seconds"]
    lines.append("\nby op: " + ", ".join(f"{op} {s * 1e3:.0f} ms ({s / wall_seconds:.0%})"
                                         for op, s in sorted(by_op.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)


def parse_args(argv):
    parser = cli.Parser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=list(models.MODELS))
    parser.add_argument("--batch", type=cli.integer(1, 4096), default=8)
    parser.add_argument("--input-size", type=cli.integer(1, 4096), help="input height and width (default: the model's)")
    parser.add_argument("--top", type=cli.integer(1), help="show only the slowest N rows")
    parser.add_argument("--forward", action="store_true",
                        help="profile the forward pass alone (eval mode, no gradients) instead of a training step")
    args = parser.parse_args(argv)
    size = args.input_size or memory.DEFAULT_SIZE[args.model]
    try:
        memory.check_fits(args.model, args.batch, 1000, 3, size, f"--batch {args.batch} at --input-size {size}")
    except ValueError as error:
        raise cli.CommandError(str(error)) from None
    return args


def main(argv=None):
    return cli.run("python -m benchmarks.profile", _main, argv)


def _main(argv):
    args = parse_args(argv)
    try:
        rows, wall_seconds = run(args.model, args.batch, args.input_size, forward_only=args.forward)
    except ValueError as error:
        raise cli.CommandError(str(error)) from None
    print(machine_header())
    print(f"{args.model}, float32, batch {args.batch}")
    what = "one forward pass (eval mode, no gradients)" if args.forward else "one training step"
    print(format_profile(rows, wall_seconds, args.top, what))
    return 0


if __name__ == "__main__":
    sys.exit(main())
