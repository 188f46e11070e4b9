"""python -m benchmarks.roofline googlenet --out DIR: every convolution and pooling layer of a training step on
the machine's roofline.

A layer's arithmetic intensity (operations per byte it moves: a convolution's 2 flops per multiply-add, a pool's
one read per window tap) against the rate it achieved, under two roofs measured in the same run: the GEMM rate
(numpy.matmul of 2048x2048 float32 matrices: what a large product reaches here) and the copy bandwidth
(numpy.copyto of 256 MiB).  The layers of the reduced network's Inception modules and of the naive network's
are drawn in two colours: the 1x1 reductions divide the multiply-adds, but the small layers they create sit
low on the roofline (little work per byte, a fraction of the GEMM rate), so the time falls by less.  The
timings are benchmarks.profile's (the best of the profiled steps after a warm-up).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from benchmarks.timing import machine_header
from minigrad import cli

NAIVE = {"googlenet": "googlenet-naive", "mini-googlenet": "mini-googlenet-naive"}
MODULES = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")


def roofs(repeat=5):
    """(GEMM GFLOP/s, copy GB/s), the best of `repeat` runs each."""
    from benchmarks.kernels import copy_reference
    from benchmarks.timing import all_blas_threads
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    best = float("inf")
    product = all_blas_threads(np.matmul)
    for _ in range(repeat):
        start = time.perf_counter()
        product(a, a)
        best = min(best, time.perf_counter() - start)
    copy, moved = copy_reference()
    fastest = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        copy()
        fastest = min(fastest, time.perf_counter() - start)
    return 2 * 2048 ** 3 / best / 1e9, moved / fastest / 1e9


def module_of(layer):
    """The Inception module a profiler layer name belongs to (layers.3a.branch3x3.1.conv -> 3a), or None."""
    parts = layer.split(".")
    return next((p for p in parts if p in MODULES), None)


def points(rows, network):
    """One point per (layer, op, pass) of the convolutions and pools: work, bytes, seconds."""
    found = []
    for r in rows:
        if r["op"] in ("conv2d", "conv2d_relu"):
            work = {"forward": 2 * r["multiply_adds"], "backward": 4 * r["multiply_adds"]}
        elif r["op"] in ("max_pool2d", "avg_pool2d"):
            work = {"forward": r["window_reads"], "backward": r["window_reads"]}
        else:
            continue
        for direction in ("forward", "backward"):
            seconds, moved = r[f"{direction}_s"], r[f"{direction}_bytes"]
            if seconds and moved and work[direction]:
                found.append({"network": network, "layer": r["layer"], "op": r["op"], "pass": direction,
                              "module": module_of(r["layer"]), "work": work[direction], "bytes": moved,
                              "seconds": seconds, "intensity": work[direction] / moved,
                              "rate": work[direction] / seconds / 1e9})
    return found


def module_summary(found):
    """Per module: naive/reduced multiply-adds (the analytic saving) against naive/reduced time."""
    rows = []
    for module in MODULES:
        parts = {net: [p for p in found if p["module"] == module and p["network"] == net] for net in ("reduced", "naive")}
        if not all(parts.values()):
            continue
        work = {net: sum(p["work"] for p in ps if p["op"] != "max_pool2d" and p["pass"] == "forward")
                for net, ps in parts.items()}
        seconds = {net: sum(p["seconds"] for p in ps) for net, ps in parts.items()}
        rows.append((module, work["naive"] / work["reduced"], seconds["naive"] / seconds["reduced"]))
    return rows


def plot(found, gemm, bandwidth, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5.5))
    low = min(p["intensity"] for p in found) / 2
    high = max(p["intensity"] for p in found) * 2
    xs = np.logspace(np.log10(low), np.log10(high), 200)
    ax.plot(xs, np.minimum(gemm, bandwidth * xs), color="black", lw=1.5,
            label=f"roof: {bandwidth:.1f} GB/s copy, {gemm:.0f} GFLOP/s GEMM")
    styles = {("reduced", True): ("#1f77b4", "reduced modules"), ("naive", True): ("#ff7f0e", "naive modules"),
              ("reduced", False): ("#999999", "other layers")}
    for (network, in_module), (colour, label) in styles.items():
        for direction, marker in (("forward", "o"), ("backward", "^")):
            chosen = [p for p in found if p["network"] == network and (p["module"] is not None) == in_module
                      and p["pass"] == direction]
            if chosen:
                ax.scatter([p["intensity"] for p in chosen], [p["rate"] for p in chosen], c=colour, marker=marker,
                           s=18, alpha=0.8, label=f"{label}, {direction}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (flops or window reads per byte moved)")
    ax.set_ylabel("achieved G operations / s")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv):
    import models
    parser = cli.Parser(prog="python -m benchmarks.roofline", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help=f"a model of {', '.join(models.MODELS)}")
    parser.add_argument("--out", default="roofline", help="folder for roofline.png and roofline.md")
    parser.add_argument("--batch", type=cli.integer(1, 256), default=8, help="images per step (default 8)")
    parser.add_argument("--steps", type=cli.integer(1, 100), default=2, help="profiled steps, the best kept")
    args = parser.parse_args(argv)
    args.model = models.model_name(args.model)
    for name in (args.model, NAIVE.get(args.model)):
        if name:
            try:
                models.memory.check_fits(name, args.batch, 1000, 3, models.memory.SMALL_SIZE.get(name, 224) if
                                         name.startswith("mini") else 299 if name == "inception-v3" else 224,
                                         f"{name} with --batch {args.batch}")
            except ValueError as error:
                raise cli.CommandError(str(error)) from None
    cli.writable_folder("--out", args.out)
    return args


def main(argv=None):
    return cli.run("python -m benchmarks.roofline", _main, argv)


def _main(argv):
    from benchmarks.profile import run
    args = parse_args(argv)
    print(machine_header())
    gemm, bandwidth = roofs()
    print(f"roofs: GEMM {gemm:.0f} GFLOP/s (numpy.matmul, 2048^3), copy {bandwidth:.1f} GB/s (256 MiB); batch "
          f"{args.batch}, training step, best of {args.steps} profiled steps\n")
    found = points(run(args.model, args.batch, steps=args.steps)[0], "reduced")
    naive = NAIVE.get(args.model)
    if naive:
        found += [p for p in points(run(naive, args.batch, steps=args.steps)[0], "naive") if p["module"]]
    lines = ["| network | layer | op | pass | G ops | MB moved | ops/byte | G ops/s | of the roof |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for p in found:
        roof = min(gemm, bandwidth * p["intensity"])
        lines.append(f"| {p['network']} | {p['layer']} | {p['op']} | {p['pass']} | {p['work'] / 1e9:.3f} | "
                     f"{p['bytes'] / 1e6:.1f} | {p['intensity']:.1f} | {p['rate']:.1f} | {p['rate'] / roof:.0%} |")
    summary = module_summary(found)
    if summary:
        lines += ["", "| module | naive / reduced multiply-adds | naive / reduced time (its convolutions and pools) |",
                  "| --- | ---: | ---: |"]
        lines += [f"| {m} | {w:.1f}x | {t:.1f}x |" for m, w, t in summary]
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(args.out, "roofline.md"), "w") as f:
        f.write(f"roofs: GEMM {gemm:.0f} GFLOP/s, copy {bandwidth:.1f} GB/s\n\n{table}\n")
    try:
        plot(found, gemm, bandwidth, f"{args.model} training step, batch {args.batch}: convolutions and pools",
             os.path.join(args.out, "roofline.png"))
    except ImportError:
        print("(no plot: matplotlib is not installed)", file=sys.stderr)
    print(f"\nwrote roofline.png and roofline.md to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
