"""python -m benchmarks.googlenet: minigrad against PyTorch on GoogLeNet, and its targets.

GoogLeNet (the paper's, auxiliary heads in training) at batch 8 and 32: the forward pass (eval mode,
no gradients) and the training step (forward, the loss with 0.3 x each auxiliary loss, backward,
SGD), and the peak resident memory of a training step; then the reduced Inception modules 3a-5b,
forward+backward; then each op of one module (3a by default) alone in both libraries, beside each
convolution's three GEMMs timed bare at its shapes (how much of the op is OpenBLAS's share).  Every
measurement runs in a fresh child process holding one library, the two libraries alternating round
after round (this machine is shared and its speed drifts); each figure is the median over rounds of
each round's median after WARM_UP untimed steps (the per-op times: the fastest), PyTorch's in its
faster layout (NCHW or channels_last).  Both get their preferred layout outside the timed region:
channels-last inputs for minigrad's CPU kernels and for PyTorch's channels_last runs.  Each target row also says in how many
rounds its ratio (that round's minigrad / that round's PyTorch) met the target, and their range.

Peak memory: the high-water mark of resident memory (VmHWM) over one training step, in a process that
has built the model and warmed up (its peak reset through /proc/self/clear_refs before the step);
beside it, the resident memory right after building the model and its input, before any step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np

MODULES = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")


# The targets are all "minigrad / PyTorch <= 1.0x": verdict()'s test and format for a ratio.
AT_MOST_PARITY = (lambda ratio: ratio <= 1.0), (lambda ratio: f"{ratio:.2f}x")


# Untimed steps before the timed ones, the same in both libraries: each settles over its first steps
# (glibc's heap thresholds, thread pools, caches).  Measured on inception 3a (batch 8): minigrad's second
# and third steps 55-108 ms, the fourth and later 43-55; PyTorch's second 37-63 ms, then 37-59.  A
# training loop runs thousands of steps, so the steady ones are what is compared.
WARM_UP = 3


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")


def _channels_last(shape, seed):
    n, c, h, w = shape
    return np.random.default_rng(seed).standard_normal((n, h, w, c)).astype(np.float32).transpose(0, 3, 1, 2)


def _peak_memory(step):
    """High-water resident MB over one step (after warm-up)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return float("nan")
    step()
    return _status("VmHWM")


def module_ops(name, batch):
    """(label, kind, in channels, out channels, kernel, side) of every op of a reduced module, in order:
    its six convolutions (each with its ReLU), the pool branch's max-pool and the merge."""
    from benchmarks.__main__ import CONFIGS, INPUT_SIZES

    c, side = INPUT_SIZES[name]
    n1, n3r, n3, n5r, n5, proj = CONFIGS[name]
    return [(f"1x1 {c}->{n1}", "conv", c, n1, 1, side), (f"1x1 {c}->{n3r} (3x3 reduce)", "conv", c, n3r, 1, side),
            (f"3x3 {n3r}->{n3}", "conv", n3r, n3, 3, side), (f"1x1 {c}->{n5r} (5x5 reduce)", "conv", c, n5r, 1, side),
            (f"5x5 {n5r}->{n5}", "conv", n5r, n5, 5, side), (f"1x1 {c}->{proj} (pool proj)", "conv", c, proj, 1, side),
            (f"max-pool 3x3/1, {c} channels", "pool", c, c, 3, side),
            (f"concat to {n1 + n3 + n5 + proj} channels", "cat", (n1, n3, n5, proj), n1 + n3 + n5 + proj, 0, side)]


def _time_ops(task, make):
    """{label: [forward s, forward+backward s, ...]} for every op of the task's module; `make(kind, ...)`
    returns the library's (forward, step) callables for one op, and minigrad's a third for a convolution
    (its GEMMs alone; None for the other ops)."""
    from benchmarks.timing import measure

    result = {}
    for label, kind, c, o, k, side in module_ops(task["module"], task["batch"]):
        result[label] = [None if f is None else measure(f, task["repeat"])["min"] for f in make(kind, c, o, k, side)]
    return result


def _gemms_alone(n, c, o, k, side):
    """The three GEMMs of a convolution's forward and backward at its shapes, as minigrad's CPU kernel runs
    them (the weight gradient in the kernel's order), on random operands: what OpenBLAS alone takes."""
    from benchmarks.timing import all_blas_threads
    from kernels.cpu import tuning
    from kernels.cpu.conv import _weight_grad_matrix

    rng = np.random.default_rng(2)
    cols = rng.standard_normal((n * side * side, c * k * k), dtype=np.float32)
    weight_rows = rng.standard_normal((o, c * k * k), dtype=np.float32)
    grad_rows = rng.standard_normal((n * side * side, o), dtype=np.float32)

    @all_blas_threads
    def gemms():
        np.matmul(cols, weight_rows.T)
        _weight_grad_matrix(grad_rows, cols, tuning.current().swap_weight_grad_max_o)
        np.matmul(grad_rows, weight_rows)
    return gemms


def child_minigrad(task):
    import minigrad
    from benchmarks.__main__ import build_model, training_step
    from benchmarks.timing import measure

    if task["kind"] == "ops":
        import minigrad.functional as F
        n = task["batch"]

        def make(kind, c, o, k, side):
            if kind == "cat":
                parts = [minigrad.Tensor(_channels_last((n, p, side, side), i), requires_grad=True) for i, p in enumerate(c)]
                grad = _channels_last((n, o, side, side), 9)
                return (lambda: minigrad.cat(parts, 1)), (lambda: minigrad.cat(parts, 1).backward(grad)), None
            x = minigrad.Tensor(_channels_last((n, c, side, side), 0), requires_grad=True)
            grad = _channels_last((n, o, side, side), 9)
            if kind == "pool":
                return (lambda: F.max_pool2d(x, 3, 1, 1)), (lambda: F.max_pool2d(x, 3, 1, 1).backward(grad)), None
            layer = minigrad.nn.Conv2d(c, o, k, padding=k // 2)                # its weight stored as it stores it
            layer.weight.data[...] = np.random.default_rng(1).standard_normal((o, c, k, k)).astype(np.float32) * 0.1
            layer.bias.data[...] = 0
            w, b = layer.weight, layer.bias

            def forward():
                with minigrad.no_grad():
                    F.conv2d_relu(x, w, b, 1, k // 2)
            return (forward, (lambda: F.conv2d_relu(x, w, b, 1, k // 2).backward(grad)),
                    _gemms_alone(n, c, o, k, side))
        return _time_ops(task, make)
    if task["kind"] in ("network", "memory"):
        size = task["input_size"]
        net = build_model({"kind": "network", "name": "googlenet", "input_size": size})
        x = minigrad.Tensor(_channels_last((task["batch"], 3, size, size), 0))
        target = np.arange(task["batch"]) % 1000
        built = _status("VmRSS")

        def forward():
            net.eval()
            with minigrad.no_grad():
                net(x)
        step = training_step(net, x, target)

        def train():
            net.train()
            step()
        if task["kind"] == "memory":
            train()
            train()
            return {"built": built, "peak": _peak_memory(train)}
        return {"forward": measure(forward, task["repeat"], WARM_UP)["median"],
                "step": measure(train, task["repeat"], WARM_UP)["median"]}
    result = {}
    for name in task["modules"]:
        from benchmarks.__main__ import INPUT_SIZES
        module = build_model({"kind": "inception", "config": name, "naive": False})
        c, side = INPUT_SIZES[name]
        x = minigrad.Tensor(_channels_last((task["batch"], c, side, side), 0), requires_grad=True)
        ones = np.ones((task["batch"], side, side, module.out_channels), np.float32).transpose(0, 3, 1, 2)

        def step():
            module(x).backward(ones)
        result[name] = measure(step, task["repeat"], WARM_UP)["median"]
    return result


def child_torch(task):
    import torch

    import minigrad
    from benchmarks.__main__ import build_model, torch_loss
    from benchmarks.timing import measure
    from benchmarks.torch_reference import to_torch

    torch.set_num_threads(os.cpu_count() or 1)
    layouts = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
    if task["kind"] == "ops":
        n, fn = task["batch"], torch.nn.functional

        def tensor(shape, seed, grad=False):
            return torch.from_numpy(np.ascontiguousarray(_channels_last(shape, seed).transpose(0, 2, 3, 1))
                                    ).permute(0, 3, 1, 2).requires_grad_(grad)

        def make(kind, c, o, k, side):
            grad = tensor((n, o, side, side), 9)
            if kind == "cat":
                parts = [tensor((n, p, side, side), i, True) for i, p in enumerate(c)]
                return (lambda: torch.cat([p.detach() for p in parts], 1)), (lambda: torch.cat(parts, 1).backward(grad))
            x = tensor((n, c, side, side), 0, True)
            if kind == "pool":
                return (lambda: fn.max_pool2d(x.detach(), 3, 1, 1)), (lambda: fn.max_pool2d(x, 3, 1, 1).backward(grad))
            w = torch.from_numpy(np.random.default_rng(1).standard_normal((o, c, k, k)).astype(np.float32) * 0.1
                                 ).contiguous(memory_format=torch.channels_last).requires_grad_(True)
            b = torch.zeros(o, requires_grad=True)

            def forward():
                with torch.no_grad():
                    torch.relu(fn.conv2d(x, w, b, 1, k // 2))
            return forward, (lambda: torch.relu(fn.conv2d(x, w, b, 1, k // 2)).backward(grad))
        return _time_ops(task, make)
    if task["kind"] == "memory":                     # only the layout measured, nothing else in the process
        layouts = {"channels_last": torch.channels_last}
    if task["kind"] in ("network", "memory"):
        size = task["input_size"]
        model = build_model({"kind": "network", "name": "googlenet", "input_size": size})
        result = {}
        for layout, memory_format in layouts.items():
            twin = to_torch(model).to(memory_format=memory_format)
            x = torch.from_numpy(np.ascontiguousarray(_channels_last((task["batch"], 3, size, size), 0))
                                 ).contiguous(memory_format=memory_format)
            labels = torch.arange(task["batch"]) % 1000
            built = _status("VmRSS")
            optimizer = torch.optim.SGD(twin.parameters(), lr=1e-3)

            def forward():
                twin.eval()
                with torch.no_grad():
                    twin(x)

            def step():
                twin.train()
                loss = torch_loss(twin(x), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if task["kind"] == "memory":
                step()
                step()
                return {"built": built, "peak": _peak_memory(step)}
            result[layout] = {"forward": measure(forward, task["repeat"], WARM_UP)["median"],
                              "step": measure(step, task["repeat"], WARM_UP)["median"]}
        return result
    from benchmarks.__main__ import INPUT_SIZES
    result = {}
    for name in task["modules"]:
        minigrad.manual_seed(0)
        module = build_model({"kind": "inception", "config": name, "naive": False})
        c, side = INPUT_SIZES[name]
        times = {}
        for layout, memory_format in layouts.items():
            twin = to_torch(module).to(memory_format=memory_format)
            x = torch.from_numpy(np.ascontiguousarray(_channels_last((task["batch"], c, side, side), 0))
                                 ).contiguous(memory_format=memory_format).requires_grad_(True)

            def step():
                twin(x).sum().backward()
            times[layout] = measure(step, task["repeat"], WARM_UP)["median"]
        result[name] = min(times.values())
    return result


def run_child(library, task):
    env = dict(os.environ)
    if library == "torch":               # PyTorch's OpenMP threads keep their own defaults (see torch_reference)
        from benchmarks.timing import other_library_environment
        env = other_library_environment()
    out = subprocess.run([sys.executable, "-m", "benchmarks.googlenet", "--child", library, json.dumps(task)],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{library} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median(values):
    return statistics.median(values)


def parse_args(argv):
    """The options, each checked before any work (sizes, names, --json writable, the memory of the batches)."""
    from minigrad import cli
    from models import memory

    parser = cli.Parser(prog="python -m benchmarks.googlenet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=cli.integer_list(1, 4096), default=[8, 32],
                        help="GoogLeNet batch sizes (default 8,32)")
    parser.add_argument("--rounds", type=cli.integer(1, 1000), default=3,
                        help="rounds of alternating child processes (default 3)")
    parser.add_argument("--repeat", type=cli.integer(1, 1000), default=3,
                        help="timed runs per child after a warm-up (default 3)")
    parser.add_argument("--modules", type=cli.name_list(MODULES, "module", none=True), default=list(MODULES),
                        help="reduced Inception modules, or 'none'")
    parser.add_argument("--module-batch", type=cli.integer(1, 4096), default=8)
    parser.add_argument("--input-size", type=cli.integer(1, 4096), default=224,
                        help="GoogLeNet's input height and width (default 224, the paper's)")
    parser.add_argument("--per-op", type=cli.name_list(MODULES, "module", none=True), default=["3a"], metavar="MODULE",
                        help="time each op of this reduced module in both libraries (default 3a; 'none' to skip)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return args
    if len(args.per_op) > 1:
        raise cli.CommandError(f"--per-op takes one module, got {','.join(args.per_op)}")
    args.per_op = args.per_op[0] if args.per_op else None
    if args.json:
        cli.writable_folder("--json", os.path.dirname(os.path.abspath(args.json)))
    try:
        for batch in args.batches:
            memory.check_fits("googlenet", batch, 1000, 3, args.input_size, f"--batches {batch}")
    except ValueError as error:                      # an input too small for GoogLeNet's grids
        raise cli.CommandError(f"--input-size {args.input_size}: {error}") from None
    memory.check_fits("googlenet", args.module_batch, 1000, 3, 224, f"--module-batch {args.module_batch}")
    return args


def main(argv=None):
    from minigrad import cli
    return cli.run("python -m benchmarks.googlenet", _main, argv)


def _main(argv):
    args = parse_args(argv)
    if args.child:
        library, task = args.child[0], json.loads(args.child[1])
        print(json.dumps((child_torch if library == "torch" else child_minigrad)(task)))
        return 0
    batches, modules = args.batches, args.modules

    from benchmarks.timing import machine_header, verdict
    print(machine_header())
    print(f"GoogLeNet at {args.input_size}x{args.input_size}, float32; {args.rounds} rounds of fresh processes, "
          "minigrad and PyTorch alternating; "
          f"{args.repeat} timed runs each ({2 * args.repeat + 1} for a module or an op) after {WARM_UP} untimed; medians")
    networks = {b: {"minigrad": [], "torch": []} for b in batches}
    memory = {b: {"minigrad": [], "torch": []} for b in batches}
    module_times = {"minigrad": [], "torch": []}
    op_times = {"minigrad": [], "torch": []}
    for _ in range(args.rounds):
        for batch in batches:
            for library in ("minigrad", "torch"):
                networks[batch][library].append(run_child(library, {"kind": "network", "batch": batch,
                                                                    "repeat": args.repeat,
                                                                    "input_size": args.input_size}))
                memory[batch][library].append(run_child(library, {"kind": "memory", "batch": batch,
                                                                  "input_size": args.input_size}))
        if args.per_op:
            task = {"kind": "ops", "module": args.per_op, "batch": args.module_batch, "repeat": 2 * args.repeat + 1}
            for library in ("minigrad", "torch"):
                op_times[library].append(run_child(library, task))
        if modules:
            task = {"kind": "modules", "modules": modules, "batch": args.module_batch, "repeat": 2 * args.repeat + 1}
            module_times["minigrad"].append(run_child("minigrad", task))
            module_times["torch"].append(run_child("torch", task))

    results = {"networks": {}, "modules": {}}
    print("\n| GoogLeNet | minigrad ms | PyTorch ms (best layout) | minigrad / PyTorch | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    for batch, runs in networks.items():
        row = {}
        for what in ("forward", "step"):
            ours = median([r[what] for r in runs["minigrad"]])
            layouts = {layout: median([r[layout][what] for r in runs["torch"]]) for layout in runs["torch"][0]}
            best = min(layouts, key=layouts.get)
            ratio = ours / layouts[best]
            per_round = [m[what] / t[best][what] for m, t in zip(runs["minigrad"], runs["torch"])]
            row[what] = {"minigrad_ms": ours * 1e3, "torch_ms": layouts[best] * 1e3, "torch_layout": best,
                         "ratio": ratio, "ratio_rounds": per_round,
                         "torch_layouts_ms": {k: v * 1e3 for k, v in layouts.items()}}
            label = "forward" if what == "forward" else "training step"
            print(f"| {label}, batch {batch} | {ours * 1e3:.0f} | {layouts[best] * 1e3:.0f} ({best}) | {ratio:.2f}x | "
                  f"<= 1.0x: {verdict(per_round, *AT_MOST_PARITY)} |")
        peak = {lib: median([r["peak"] for r in memory[batch][lib]]) for lib in ("minigrad", "torch")}
        built = {lib: median([r["built"] for r in memory[batch][lib]]) for lib in ("minigrad", "torch")}
        per_round = [m["peak"] / t["peak"] for m, t in zip(memory[batch]["minigrad"], memory[batch]["torch"])]
        row["memory"] = {"peak_mb": peak, "built_mb": built, "ratio_rounds": per_round}
        results["networks"][batch] = row
        print(f"| peak memory of a step, batch {batch} (MB) | {peak['minigrad']:.0f} | {peak['torch']:.0f} "
              f"(channels_last) | {peak['minigrad'] / peak['torch']:.2f}x | <= 1.0x: "
              f"{verdict(per_round, *AT_MOST_PARITY)} |")
    for batch, row in results["networks"].items():
        m = row["memory"]
        print(f"batch {batch}: resident after building model and input: {m['built_mb']['minigrad']:.0f} MB (minigrad), "
              f"{m['built_mb']['torch']:.0f} MB (PyTorch); training takes it to the peaks above")
    if modules:
        print(f"\n| reduced module, fwd+bwd, batch {args.module_batch} | minigrad ms | PyTorch ms (best layout) | "
              "minigrad / PyTorch | target |")
        print("| --- | ---: | ---: | ---: | --- |")
        for name in modules:
            ours = median([r[name] for r in module_times["minigrad"]])
            theirs = median([r[name] for r in module_times["torch"]])
            per_round = [m[name] / t[name] for m, t in zip(module_times["minigrad"], module_times["torch"])]
            results["modules"][name] = {"minigrad_ms": ours * 1e3, "torch_ms": theirs * 1e3, "ratio": ours / theirs,
                                        "ratio_rounds": per_round}
            print(f"| {name} | {ours * 1e3:.1f} | {theirs * 1e3:.1f} | {ours / theirs:.2f}x | "
                  f"<= 1.0x: {verdict(per_round, *AT_MOST_PARITY)} |")
    if args.per_op:
        results["ops"] = {}
        print(f"\nwhat {args.per_op}'s gap is made of: each op alone, channels-last inputs, batch {args.module_batch}, "
              "fastest of the runs")
        print("(GEMMs alone: a convolution's three OpenBLAS GEMMs, forward, weight and input gradient, at its shapes, "
              "bare, in the minigrad process)")
        print("| op | minigrad fwd ms | minigrad fwd+bwd ms | PyTorch fwd ms | PyTorch fwd+bwd ms | fwd+bwd ratio | "
              "GEMMs alone ms | GEMMs alone / PyTorch fwd+bwd |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        totals = np.zeros(4)
        for label in op_times["minigrad"][0]:
            ours = [min(r[label][i] for r in op_times["minigrad"]) for i in (0, 1)]
            theirs = [min(r[label][i] for r in op_times["torch"]) for i in (0, 1)]
            gemms = None if op_times["minigrad"][0][label][2] is None else min(r[label][2] for r in op_times["minigrad"])
            totals += np.array(ours + theirs)
            results["ops"][label] = {"minigrad_ms": [v * 1e3 for v in ours], "torch_ms": [v * 1e3 for v in theirs],
                                     "gemms_alone_ms": None if gemms is None else gemms * 1e3}
            alone = "| |" if gemms is None else f"| {gemms * 1e3:.2f} | {gemms / theirs[1]:.2f}x |"
            print(f"| {label} | {ours[0] * 1e3:.2f} | {ours[1] * 1e3:.2f} | {theirs[0] * 1e3:.2f} | "
                  f"{theirs[1] * 1e3:.2f} | {ours[1] / theirs[1]:.2f}x {alone}")
        print(f"| all ops | {totals[0] * 1e3:.1f} | {totals[1] * 1e3:.1f} | {totals[2] * 1e3:.1f} | "
              f"{totals[3] * 1e3:.1f} | {totals[1] / totals[3]:.2f}x | | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
