"""python -m benchmarks.kernels: the Numba CPU kernels against the machine's limits, side by side.

- memory-bound kernels (im2col, pooling, ReLU, concat, LRN): achieved GB/s, as a
  fraction of a large numpy.copyto timed in alternation with each kernel;
- convolutions: achieved GFLOP/s, as a fraction of numpy.matmul (the BLAS GEMM)
  at the layer's own GEMM shape, timed in alternation with each layer.  Where the layer's forward
  runs minigrad's own GEMM (in tiles with its im2col, or a thin product alone: kernels/cpu/gemm.py,
  conv.py), that GEMM alone on the same columns too, against numpy.matmul's.  A layer computed by
  Winograd's algorithm (kernels/cpu/winograd.py) does fewer multiply-adds than the GEMM it is compared
  with: its GFLOP/s count the direct convolution's, so it can pass 100% of the GEMM;
- GoogLeNet's inception (3a) module, forward+backward: Numba path vs the NumPy reference.

Sizes are GoogLeNet's at batch 8 (float32).  Each row says whether it meets the project's target
(memory-bound >= 50% of copy, 3x3 and 5x5 convolutions >= 60% of the GEMM, inception 3a >= 4x).
`--rounds N` repeats the whole measurement N times in one process and shows each figure's median
over the rounds, its range, and in how many rounds the target was met: on this shared machine one
round can land in a slow phase.  `--compile-time` also measures the first-call compile time of
every kernel, with an empty and with a warm cache.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

import kernels
import minigrad
from benchmarks.timing import all_blas_threads, machine_header, measure_alternating, verdict
from kernels.geometry import conv_out_size
from minigrad import cli
from minigrad.nn import stored_filters


def steady_state_allocation():
    """A line for the header saying whether freed memory is reused, as `import minigrad` sets glibc's malloc
    to do (kernels.ALLOCATOR_KEEPS_MEMORY), so that a loop of same-size calls times the kernel, not the
    allocator: with glibc's defaults each call's output may be mapped afresh, or the heap trimmed and
    faulted back in, and the loop would time page faults (~4 us each on this VM)."""
    if kernels.ALLOCATOR_KEEPS_MEMORY:
        return "allocator in this benchmark: glibc's malloc keeps freed memory for reuse (minigrad's setting)"
    return "allocator in this benchmark: glibc's defaults (MINIGRAD_ALLOCATOR_SETTINGS=off, or not glibc)"


def copy_reference():
    """numpy.copyto of 256 MiB, far beyond the caches: the machine's practical memory bandwidth.
    Returns (callable, bytes moved: read + write).  Source and destination both start on a page: a
    copy between addresses a few bytes apart modulo 4 KiB runs at a quarter of the rate here (loads
    falsely wait on the stores before them), and two arrays from the heap lie just so."""
    n, page = 64 * 2**20, 4096 // 4
    buffer = np.empty(2 * n + page, np.float32)
    start = (-buffer.ctypes.data % 4096) // 4
    src, dst = buffer[start:start + n], buffer[start + n:start + 2 * n]
    src[...] = 1.0
    return (lambda: np.copyto(dst, src)), 2 * src.nbytes


def memory_bound_rows(cpu, batch, repeat, rng):
    """(name, bytes moved, callable) for each memory-bound kernel at a GoogLeNet size."""
    def normal(*shape):
        """NCHW-shaped, channels-last in memory: what the kernels receive inside a network."""
        n, c, h, w = shape
        return rng.standard_normal((n, h, w, c), dtype=np.float32).transpose(0, 3, 1, 2)

    rows = []
    x3 = normal(batch, 96, 28, 28)                                  # 3a's 3x3 branch, after its reduction
    out = (28, 28)
    cols_bytes = batch * 96 * 9 * 28 * 28 * 4
    # into reused buffers (a fresh 21 MB array each call would time the page faults, not the kernel)
    columns, flat = cpu.conv.columns, x3.transpose(0, 2, 3, 1).reshape(-1)
    cols = np.empty(batch * 28 * 28 * 9 * 96, np.float32)
    rows.append(("im2col 3x3 pad 1, 96x28x28", x3.nbytes + cols_bytes,
                 lambda: columns.im2col_rows(flat, 28, 28, 96, 3, 3, 1, 1, 1, 1, *out, 0, batch * 28, cols)))
    image = np.empty(batch * 28 * 28 * 96, np.float32)

    def col2im():
        image[...] = 0                                              # col2im adds into the image
        columns.col2im_rows(cols, 28, 28, 96, 3, 3, 1, 1, 1, 1, *out, 0, batch * 28, image)
    rows.append(("col2im 3x3 pad 1, 96x28x28", x3.nbytes + cols_bytes, col2im))
    x = normal(batch, 64, 112, 112)                                 # after the stem convolution
    y, argmax = cpu.max_pool2d_forward(x, (3, 3), (2, 2), (0, 0), True)
    moved = x.nbytes + y.nbytes + argmax.nbytes                     # read x, write y and the argmax
    rows.append(("max-pool 3x3/2 ceil, 64x112x112 (+argmax)", moved,
                 lambda: cpu.max_pool2d_forward(x, (3, 3), (2, 2), (0, 0), True)))
    rows.append(("max-pool backward, 64x112x112", moved,              # read grad and argmax, write grad_x
                 lambda: cpu.max_pool2d_backward(y, argmax, x.shape, (3, 3), (2, 2), (0, 0), True)))
    x480 = normal(batch, 480, 14, 14)
    y480, argmax480 = cpu.max_pool2d_forward(x480, (3, 3), (1, 1), (1, 1), False)
    rows.append(("max-pool 3x3/1 pad 1, 480x14x14", x480.nbytes + y480.nbytes + argmax480.nbytes,
                 lambda: cpu.max_pool2d_forward(x480, (3, 3), (1, 1), (1, 1), False)))
    rows.append(("avg-pool 5x5/3, 512x14x14 (aux head)", x480.nbytes * 512 // 480,
                 lambda: cpu.avg_pool2d_forward(normal_512, (5, 5), (3, 3), (0, 0), False, True)))
    normal_512 = normal(batch, 512, 14, 14)
    rows.append(("relu, 64x112x112", 2 * x.nbytes, lambda: cpu.relu_forward(x)))
    rows.append(("relu backward, 64x112x112", 3 * x.nbytes, lambda: cpu.relu_backward(x, x)))
    branches = [normal(batch, c, 28, 28) for c in (64, 128, 32, 32)]
    merged_bytes = 2 * sum(b.nbytes for b in branches)
    rows.append(("concat 3a branches, 256x28x28", merged_bytes, lambda: cpu.concat(branches, 1)))
    merged = cpu.concat(branches, 1)
    rows.append(("split 3a gradient, 256x28x28", merged_bytes, lambda: cpu.split(merged, [64, 128, 32, 32], 1)))
    x192 = normal(batch, 192, 56, 56)
    rows.append(("LRN size 5, 192x56x56", 3 * x192.nbytes, lambda: cpu.lrn_forward(x192, 5, 1e-4, 0.75, 1.0)))
    y192, scale = cpu.lrn_forward(x192, 5, 1e-4, 0.75, 1.0)
    rows.append(("LRN backward, 192x56x56", 5 * x192.nbytes,
                 lambda: cpu.lrn_backward(x192, y192, scale, y192, 5, 1e-4, 0.75, 1.0)))
    # BN-GoogLeNet's conv2 output, training: one pass for the statistics, one to normalise (+ReLU)
    gamma, beta = np.ones(192, np.float32), np.zeros(192, np.float32)
    mean, var = np.zeros(192, np.float32), np.ones(192, np.float32)
    rows.append(("batch norm+ReLU, training, 192x56x56", 3 * x192.nbytes,
                 lambda: cpu.batch_norm_forward(x192, gamma, beta, mean, var, True, 0.1, 1e-5, True)))
    y_bn, batch_mean, invstd = cpu.batch_norm_forward(x192, gamma, beta, mean, var, True, 0.1, 1e-5, True)
    # the backward reads the gradient and x for the sums, then both again for the result: 5 passes
    rows.append(("batch norm+ReLU backward, 192x56x56", 5 * x192.nbytes,
                 lambda: cpu.batch_norm_backward(y_bn, x192, gamma, batch_mean, invstd, True, y_bn)))
    return rows


# The targets: memory-bound kernels at >= 50% of the copy rate, 3x3 and 5x5 convolutions (forward
# and backward) at >= 60% of their GEMM's rate, inception 3a's forward+backward >= 4x the NumPy reference.
MEMORY_TARGET, CONV_TARGET, CONV_TARGET_KERNELS, INCEPTION_TARGET = 0.5, 0.6, (3, 5), 4.0

CONV_LAYERS = [  # name, in channels, out channels, kernel, stride, padding, input side
    ("stem 7x7/2, 3->64, 224", 3, 64, 7, 2, 3, 224),
    ("conv2 3x3, 64->192, 56", 64, 192, 3, 1, 1, 56),
    ("3a 3x3, 96->128, 28", 96, 128, 3, 1, 1, 28),
    ("3a 5x5, 16->32, 28", 16, 32, 5, 1, 2, 28),
    ("4a 3x3, 96->208, 14", 96, 208, 3, 1, 1, 14),
    ("5b 3x3, 192->384, 7", 192, 384, 3, 1, 1, 7),
    ("3a 1x1, 192->64, 28", 192, 64, 1, 1, 0, 28),
]


def conv_rows(cpu, batch, repeat, rng):
    """Each layer's forward and backward (with its fused ReLU, inputs channels-last as in the network,
    a backward to follow: columns of up to 16 MiB are kept by the forward and reused by the backward)
    against numpy.matmul at the layer's GEMM shape: columns (N*OH*OW, C*KH*KW) @ weights (C*KH*KW, O).
    The three alternate (measure_alternating), so that a slow phase cannot land on one alone, and each is
    timed after three untimed calls of itself.  Measured: alternated after only one such call, the GEMM
    ran about 30% slower than in a loop of itself, which flattered the ratio by ~15 points; after three
    it matches the loop (BENCHMARKS.md)."""
    rows = []
    for name, c, o, k, s, p, side in CONV_LAYERS:
        x = rng.standard_normal((batch, side, side, c), dtype=np.float32).transpose(0, 3, 1, 2)
        w = stored_filters(rng.standard_normal((o, c, k, k), dtype=np.float32))     # as nn.Conv2d stores them
        b = rng.standard_normal(o, dtype=np.float32)
        out = conv_out_size(side, k, s, p)
        flops = 2 * batch * o * c * k * k * out * out
        w_rows = rng.standard_normal((o, c * k * k), dtype=np.float32)
        cols = rng.standard_normal((batch * out * out, c * k * k), dtype=np.float32)
        saved = {}                                  # as in training: small columns kept for the backward
        y = cpu.conv2d_forward(x, w, b, (s, s), (p, p), True, saved)
        g = rng.standard_normal((batch, out, out, o), dtype=np.float32).transpose(0, 3, 1, 2)
        calls = {"gemm": lambda: all_blas_threads(np.matmul)(cols, w_rows.T),
                 "forward": lambda: cpu.conv2d_forward(x, w, b, (s, s), (p, p), True, {}),
                 "backward": lambda: cpu.conv2d_backward(x, w, g, (s, s), (p, p), True, y, saved)}
        forward = cpu.conv.plan_for(np.float32, x.shape, w.shape, (s, s), (p, p)).forward
        path = (f"Winograd F({forward.winograd[0]}x{forward.winograd[0]}, {forward.winograd[1]}x{forward.winograd[1]})"
                if forward.algorithm == "winograd" else "tiles" if forward.algorithm == "tiles" else
                "minigrad's GEMM" if forward.gemm == "minigrad" else "numpy.matmul")
        own = path != "numpy.matmul"
        if own:
            calls["own_gemm"] = lambda: cpu.gemm.matmul(cols, w_rows.T)
        times = measure_alternating(calls, repeat, settle=3)
        gemm, conv, backward = times["gemm"], times["forward"], times["backward"]
        rows.append({"layer": name, "gemm_gflops": flops / gemm / 1e9, "conv_gflops": flops / conv / 1e9,
                     "ratio": gemm / conv, "backward_gflops": 2 * flops / backward / 1e9,
                     "backward_ratio": 2 * gemm / backward, "has_target": k in CONV_TARGET_KERNELS,
                     "forward_path": path, "own_gemm_vs_numpy": gemm / times["own_gemm"] if own else 0.0})
    return rows


def inception_3a(batch, repeat):
    """Median seconds of a forward+backward of inception (3a) on each path.  The paths alternate step
    by step (after a warm-up of each), so that the machine's drift falls on both alike."""
    from models import Inception

    minigrad.manual_seed(0)
    module = Inception(192, 64, 96, 128, 16, 32, 32)
    data = np.random.default_rng(0).standard_normal((batch, 28, 28, 192)).astype(np.float32)
    layout = (0, 3, 1, 2)

    def step_on(path):                              # each path with its own layout: channels-last / NCHW
        x = data.transpose(layout) if path == "numba" else np.ascontiguousarray(data.transpose(layout))
        x = minigrad.Tensor(x, requires_grad=True)
        ones = np.ones((batch, 28, 28, 256), np.float32).transpose(layout)

        def step():
            os.environ["MINIGRAD_KERNELS"] = path
            module(x).backward(ones)
        return step

    try:
        return measure_alternating({path: step_on(path) for path in ("numba", "reference")}, repeat)
    finally:
        os.environ.pop("MINIGRAD_KERNELS", None)


def compile_times():
    """Seconds to import the CPU kernels and call each once, in a fresh process: empty cache, then warm."""
    script = (
        "import time; t = time.perf_counter(); import numpy as np; import kernels.cpu as k\n"
        "x = np.ones((1, 2, 5, 5), np.float32); w = np.ones((2, 2, 3, 3), np.float32)\n"
        "for dt in (np.float32, np.float64):\n"
        "    x, w = x.astype(dt), w.astype(dt)\n"
        "    y = k.conv2d_forward(x, w, w[:, 0, 0, 0], (1, 1), (1, 1)); k.conv2d_backward(x, w, y, (1, 1), (1, 1))\n"
        "    y, a = k.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1), True)\n"
        "    k.max_pool2d_backward(y, a, x.shape, (3, 3), (2, 2), (1, 1), True)\n"
        "    y = k.conv2d_forward(x, w, None, (1, 1), (1, 1), True); k.conv2d_backward(x, w, y, (1, 1), (1, 1), True, y)\n"
        "    y = k.avg_pool2d_forward(x, (3, 3), (2, 2), (1, 1), True, True)\n"
        "    k.avg_pool2d_backward(y, x.shape, (3, 3), (2, 2), (1, 1), True, True)\n"
        "    y = k.relu_forward(x); k.relu_backward(y, y)\n"
        "    y, s = k.lrn_forward(x, 5, 1e-4, 0.75, 1.0); k.lrn_backward(x, y, s, y, 5, 1e-4, 0.75, 1.0)\n"
        "    k.split(k.concat([x, x], 1), [2, 2], 1)\n"
        "    for parts in (2, 3, 4, 5):                  # add_n compiles once per number of parts\n"
        "        k.add_n([np.zeros((64, 64), dt)] * parts)\n"
        "    for n in (8192, 2**17):                     # sgd_update's one-core and parallel kernels\n"
        "        k.sgd_update(np.zeros(n, dt), np.ones(n, dt), None, 0.1, 0.9, 1e-4, False)\n"
        "print(time.perf_counter() - t)\n")
    result = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("empty cache", "warm cache"):
            out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
            result[label] = float(out.stdout.strip().splitlines()[-1])
    return result


def measure_round(cpu, batch, repeat, rng):
    """One round of every measurement: {"memory_bound": [...], "conv": [...], "inception_3a": {...}}."""
    # Each kernel alternates with the copy (as the convolutions with their GEMM), so that its ratio
    # compares two figures taken in the same few seconds of this shared machine.
    copy, copy_bytes = copy_reference()
    memory = []
    for name, nbytes, fn in memory_bound_rows(cpu, batch, repeat, rng):
        times = measure_alternating({"copy": copy, "kernel": fn}, repeat, settle=3)
        gbps, copy_gbps = nbytes / times["kernel"] / 1e9, copy_bytes / times["copy"] / 1e9
        memory.append({"kernel": name, "ms": times["kernel"] * 1e3, "gbps": gbps, "copy_gbps": copy_gbps,
                       "of_copy": gbps / copy_gbps})
    conv = conv_rows(cpu, batch, repeat, rng)
    times = inception_3a(batch, repeat)
    return {"memory_bound": memory, "conv": conv, "inception_3a": dict(times, speedup=times["reference"] / times["numba"])}


def over_rounds(rounds):
    """The rounds' figures combined: each number the median over the rounds, and for each ratio with a
    target its per-round values under "<key>_rounds"."""
    def combine(rows):
        first = rows[0]
        out = {}
        for key, value in first.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values = [r[key] for r in rows]
                out[key] = statistics.median(values)
                if key in ("of_copy", "ratio", "backward_ratio", "speedup"):
                    out[key + "_rounds"] = values
            else:
                out[key] = value
        return out
    return {"memory_bound": [combine(rows) for rows in zip(*(r["memory_bound"] for r in rounds))],
            "conv": [combine(rows) for rows in zip(*(r["conv"] for r in rounds))],
            "inception_3a": combine([r["inception_3a"] for r in rounds])}


def at_least(target, unit="%"):
    """verdict()'s two functions for a target that a figure must reach."""
    return (lambda v: v >= target), ((lambda v: f"{v:.0%}") if unit == "%" else (lambda v: f"{v:.1f}x"))


def parse_args(argv):
    parser = cli.Parser(prog="python -m benchmarks.kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=cli.integer(1, 256), default=8)
    parser.add_argument("--repeat", type=cli.integer(1, 1000), default=7, help="timed runs per row (median shown)")
    parser.add_argument("--rounds", type=cli.integer(1, 1000), default=1,
                        help="repeat the whole measurement; show medians, ranges and rounds meeting the target")
    parser.add_argument("--compile-time", action="store_true", help="also measure first-call compile time")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.json:
        cli.writable_folder("--json", os.path.dirname(os.path.abspath(args.json)))
    # its largest arrays: the stem's input and columns, a 64x112x112 pool's input and output, per image
    cli.check_memory(f"--batch {args.batch}", args.batch * 6 * 2**20 * 8)
    return args


def main(argv=None):
    return cli.run("python -m benchmarks.kernels", _main, argv)


def _main(argv):
    args = parse_args(argv)

    cpu = kernels.cpu_backend("numba")
    rng = np.random.default_rng(0)
    allocation = steady_state_allocation()
    print(machine_header())
    print(allocation)
    print(f"float32, batch {args.batch}, inputs channels-last as in a network, median of {args.repeat} runs "
          f"after a warm-up{'' if args.rounds == 1 else f'; {args.rounds} rounds, each figure their median'}\n")
    rounds = []
    for number in range(args.rounds):
        rounds.append(measure_round(cpu, args.batch, args.repeat, rng))
        if args.rounds > 1:
            print(f"round {number + 1} of {args.rounds} done", file=sys.stderr)
    results = dict(over_rounds(rounds), batch=args.batch, rounds=rounds)

    print(f"| memory-bound kernel | ms | GB/s | copy GB/s (timed alternately) | of copy | >= {MEMORY_TARGET:.0%} of copy |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for r in results["memory_bound"]:
        print(f"| {r['kernel']} | {r['ms']:.2f} | {r['gbps']:.1f} | {r['copy_gbps']:.1f} | {r['of_copy']:.0%} | "
              f"{verdict(r['of_copy_rounds'], *at_least(MEMORY_TARGET))} |")

    print("\n| convolution | GEMM GFLOP/s | conv forward GFLOP/s | of GEMM | conv backward GFLOP/s | of GEMM | "
          f">= {CONV_TARGET:.0%} of GEMM | forward runs |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for r in results["conv"]:
        target = (f"forward {verdict(r['ratio_rounds'], *at_least(CONV_TARGET))}, backward "
                  f"{verdict(r['backward_ratio_rounds'], *at_least(CONV_TARGET))}" if r["has_target"] else "(no target)")
        own = {"tiles": "in tiles with its im2col, minigrad's GEMM", "minigrad's GEMM": "minigrad's GEMM"}.get(
            r["forward_path"], "numpy.matmul")
        if r["forward_path"].startswith("Winograd"):        # fewer multiply-adds: its GFLOP/s count im2col's
            own = f"by {r['forward_path']}, its products in minigrad's GEMM"
        if r["own_gemm_vs_numpy"]:
            own += f" (alone {r['own_gemm_vs_numpy']:.2f}x numpy.matmul's speed)"
        print(f"| {r['layer']} | {r['gemm_gflops']:.0f} | {r['conv_gflops']:.0f} | {r['ratio']:.0%} | "
              f"{r['backward_gflops']:.0f} | {r['backward_ratio']:.0%} | {target} | {own} |")

    times = results["inception_3a"]
    print(f"\ninception 3a forward+backward: Numba {times['numba'] * 1e3:.0f} ms, NumPy reference "
          f"{times['reference'] * 1e3:.0f} ms: {times['speedup']:.1f}x faster; >= {INCEPTION_TARGET:.0f}x: "
          f"{verdict(times['speedup_rounds'], *at_least(INCEPTION_TARGET, 'x'))}")

    if args.compile_time:
        results["compile_seconds"] = compile_times()
        print("first call of every kernel (float32 and float64), fresh process: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in results["compile_seconds"].items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
