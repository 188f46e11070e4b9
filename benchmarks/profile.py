"""python -m benchmarks.profile googlenet: where the time of one training step goes, op by op.

One warm-up step, then one profiled step (forward, loss, backward): a row per
(layer, op) with its output shape, forward and backward ms, share of the step,
multiply-adds and GFLOP/s for convolutions and linear layers, bytes moved and GB/s
for the memory-bound ops.  Sorted by time.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import minigrad
import models
from benchmarks.__main__ import training_step
from benchmarks.timing import machine_header
from minigrad.profiler import profile


def run(model_name, batch, input_size=None):
    minigrad.manual_seed(0)
    kwargs = {"input_size": input_size} if input_size else {}
    net = models.get_model(model_name, **kwargs)
    x = minigrad.randn(batch, net.in_channels, *net.input_size)
    target = np.arange(batch) % net.layers.fc.weight.shape[0] if hasattr(net.layers, "fc") else np.zeros(batch, int)
    step = training_step(net, x, target)
    step()                                       # warm-up: compiled kernels loaded, buffers touched
    with profile(net) as prof:
        step()
    return prof


def format_profile(prof, top=None):
    rows = prof.table()
    lines = [f"one training step: {prof.wall_seconds * 1e3:.0f} ms wall, "
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
    lines.append("\nby op: " + ", ".join(f"{op} {s * 1e3:.0f} ms ({s / prof.wall_seconds:.0%})"
                                         for op, s in sorted(by_op.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=list(models.MODELS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--input-size", type=int, help="input height and width (default: the model's)")
    parser.add_argument("--top", type=int, help="show only the slowest N rows")
    args = parser.parse_args(argv)
    if args.batch < 1:
        print("python -m benchmarks.profile: error: --batch must be a positive integer", file=sys.stderr)
        return 2
    try:
        prof = run(args.model, args.batch, args.input_size)
    except ValueError as error:
        print(f"python -m benchmarks.profile: error: {error}", file=sys.stderr)
        return 2
    print(machine_header())
    print(f"{args.model}, float32, batch {args.batch}")
    print(format_profile(prof, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
