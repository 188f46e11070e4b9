"""python -m benchmarks: the cost of Inception modules, naive vs 1x1-reduced, and of whole networks.

For each of GoogLeNet's nine Inception configurations (3a-5b) at its real input size:
output channels, parameters and multiply-adds (from models.summary), forward and
forward+backward time, peak memory of the step, achieved GFLOP/s, and the naive/reduced
ratios.  Then whole networks at 224x224: GoogLeNet, GoogLeNet from naive modules, the
plain baseline and AlexNet (parameters, multiply-adds, forward and training-step time).
`--compare torch` times the same modules and networks in PyTorch with the same weights
(NCHW and channels_last; the faster is the reference), after checking the outputs agree.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import sys
import tracemalloc

import numpy as np

import minigrad
import models
from benchmarks.timing import machine_header, measure, measure_alternating
from benchmarks.torch_reference import torch_times
from minigrad import cli
from minigrad.backend import parse_device, synchronize
from models import memory
from models.googlenet import INCEPTION_TABLE

INPUT_SIZES = {"3a": (192, 28), "3b": (256, 28), "4a": (480, 14), "4b": (512, 14), "4c": (512, 14),
               "4d": (512, 14), "4e": (528, 14), "5a": (832, 7), "5b": (832, 7)}
CONFIGS = {row[0]: row[1:] for row in INCEPTION_TABLE if not isinstance(row, str)}
NETWORKS = {"googlenet": "GoogLeNet", "googlenet-naive": "GoogLeNet (naive modules)",
            "plain": "plain 3x3 network", "alexnet": "AlexNet", "googlenet-bn": "BN-GoogLeNet",
            "inception-v3": "Inception-v3"}
NETWORK_SIZE = {"inception-v3": 299}          # networks whose input is not 224x224 (112x112 with --quick)

# "Rethinking the Inception Architecture"'s factorizations, each at a grid and a width of the networks that use
# them (a square kernel C -> C against its replacement C -> C -> C): (grid, channels, full kernel, the
# factorized layers' kernels).  Analytic saving: 1 - 18/25 (Figure 5), 1 - 2n/n^2 (Figure 6).
FACTORIZATIONS = {
    "5x5 as 3x3 + 3x3, 28x28": (28, 96, (5, 5), [(3, 3), (3, 3)]),       # GoogLeNet 3b's 5x5 width
    "5x5 as 3x3 + 3x3, 35x35": (35, 64, (5, 5), [(3, 3), (3, 3)]),       # Inception-v3 5b's 5x5 width
    "7x7 as 1x7 + 7x1, 17x17": (17, 192, (7, 7), [(1, 7), (7, 1)]),      # Inception-v3 6e's c7
    "3x3 as 1x3 + 3x1, 8x8": (8, 384, (3, 3), [(1, 3), (3, 1)]),         # Inception-v3 7b's bank width
}


UsageError = cli.CommandError          # a bad command-line value: one line on stderr, exit status 2


def parse_args(argv):
    """The options, each checked before any work: sizes, names, the device, --out writable, PyTorch for
    --compare, and the memory that --batch asks for."""
    parser = cli.Parser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=cli.integer(1, 2**16), help="batch size (default 8; 2 with --quick)")
    parser.add_argument("--repeat", type=cli.integer(1, 10**4), help="timed runs after a warm-up; the median is "
                        "reported (default 3; 1 with --quick)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--configs", type=cli.name_list(list(CONFIGS), "configuration"), default=list(CONFIGS),
                        help="Inception configurations, e.g. 3a,4e")
    parser.add_argument("--networks", type=cli.name_list(list(NETWORKS), "network", none=True), default=list(NETWORKS),
                        help="whole networks, or 'none'")
    parser.add_argument("--factorizations", type=cli.name_list(list(FACTORIZATIONS), "factorization", none=True),
                        default=list(FACTORIZATIONS), help="Inception-v3's factorized convolutions against the "
                        "convolutions they replace, or 'none'")
    parser.add_argument("--out", default="benchmark-results", help="folder for the CSV, JSON and PNG files")
    parser.add_argument("--quick", action="store_true", help="batch 2 and one timed run unless given, networks at "
                        "112x112")
    parser.add_argument("--compare", choices=["torch"], help="time PyTorch on the same work, in the same run")
    args = parser.parse_args(argv)
    args.batch = args.batch or (2 if args.quick else 8)            # an explicit --batch wins over --quick's
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.device == "cuda":
        try:
            args.device = parse_device("cuda", "--device")
        except (RuntimeError, ValueError) as error:
            raise UsageError(str(error)) from None
        if args.compare:
            raise UsageError("--compare torch times PyTorch on the CPU; for the GPU comparison run "
                             "python -m benchmarks.gpu_check")
    cli.writable_folder("--out", args.out)
    if args.compare == "torch" and importlib.util.find_spec("torch") is None:    # found, not loaded here
        raise UsageError("--compare torch needs PyTorch (pip install torch==2.13.0)")
    for name in args.networks:
        memory.check_fits(name, args.batch, 1000, 3, network_size(name, args.quick),
                          f"--batch {args.batch} ({NETWORKS[name]})")
    if args.configs:
        cli.check_memory(f"--batch {args.batch} (the Inception modules)", args.batch * max(map(module_bytes, args.configs)))
    return args


def module_bytes(config):
    """About the most memory one image takes in a step of the naive module `config` (the larger of the two): its
    input, its branches' outputs and their concatenation, kept for the backward, and a gradient of each."""
    channels, side = INPUT_SIZES[config]
    n1x1, _, n3x3, _, n5x5, _ = CONFIGS[config]
    width = n1x1 + n3x3 + n5x5 + channels
    return 4 * side * side * (channels + 2 * width) * 2


def progress(total):
    try:
        from tqdm import tqdm
        return tqdm(total=total, desc="benchmarks", unit="run", leave=False)
    except ImportError:                          # tqdm is in the `bench` extra
        class Silent:
            def update(self, n=1): pass
            def set_postfix_str(self, text): print(f"  ... {text}", file=sys.stderr)
            def close(self): pass
        return Silent()


def peak_memory_mb(step, device="cpu"):
    """Peak of NumPy's allocations during one step (NumPy reports them to tracemalloc); on a GPU, what
    CuPy's memory pool holds after the step, starting empty (the pool keeps every block it needed)."""
    if device != "cpu":
        import cupy
        pool = cupy.get_default_memory_pool()
        pool.free_all_blocks()
        step()
        cupy.cuda.get_current_stream().synchronize()
        return pool.total_bytes() / 2**20
    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def training_step(model, x, target, lr=1e-3):
    """Forward, loss (models.training_loss: GoogLeNet adds 0.3 x each auxiliary loss), backward, plain SGD
    (minigrad.optim.SGD, as the PyTorch side of every comparison runs torch.optim.SGD)."""
    optimizer = minigrad.optim.SGD(model.parameters(), lr=lr)

    def step():
        loss = models.training_loss(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def torch_loss(out, labels):
    """PyTorch's version of training_step's loss, for the reference run."""
    import torch

    if isinstance(out, tuple):
        return torch.nn.functional.cross_entropy(out[0], labels) + 0.3 * sum(
            torch.nn.functional.cross_entropy(a, labels) for a in out[1:])
    return torch.nn.functional.cross_entropy(out, labels)


def build_model(spec):
    """An Inception module ({"kind": "inception", "config", "naive"}) or a network
    ({"kind": "network", "name", "input_size"}), freshly initialised with seed 0."""
    minigrad.manual_seed(0)
    if spec["kind"] == "network":
        return models.get_model(spec["name"], input_size=spec["input_size"])
    in_channels = INPUT_SIZES[spec["config"]][0]
    n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_proj = CONFIGS[spec["config"]]
    if spec["naive"]:
        return models.InceptionNaive(in_channels, n1x1, n3x3, n5x5)
    return models.Inception(in_channels, n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_proj)


def check_same(ours, reference, what):
    scale = max(1.0, float(np.abs(reference).max()))
    error = float(np.abs(ours - reference).max())
    if error > 2e-3 * scale:
        raise AssertionError(f"{what}: minigrad and PyTorch outputs differ by {error:.3g} (scale {scale:.3g})")
    return error


def bench_module(name, naive, args, bar):
    in_channels, side = INPUT_SIZES[name]
    spec = {"kind": "inception", "config": name, "naive": naive}
    module = build_model(spec)
    shape = (args.batch, in_channels, side, side)
    row = models.summary(module, (1, in_channels, side, side))[0]
    x = minigrad.randn(*shape, requires_grad=True, device=args.device)
    module.to(args.device)
    sync = lambda: synchronize(x.data)

    def forward():
        with minigrad.no_grad():
            module(x)

    def step():
        out = module(x)
        out.backward(np.ones(out.shape, np.float32))

    bar.set_postfix_str(f"{name} {'naive' if naive else 'reduced'}")
    forward_s = measure(forward, args.repeat, sync=sync)["median"]
    step_s = measure(step, args.repeat, sync=sync)["median"]
    bar.update()
    macs = row["multiply_adds"] * args.batch
    result = {"config": name, "module": "naive" if naive else "reduced", "input": f"{in_channels}x{side}x{side}",
              "out_channels": row["output"][2], "params": row["params"], "multiply_adds": row["multiply_adds"],
              "forward_ms": forward_s * 1e3, "step_ms": step_s * 1e3, "peak_mb": peak_memory_mb(step, args.device),
              "forward_gflops": 2 * macs / forward_s / 1e9, "step_gflops": 6 * macs / step_s / 1e9}
    if args.compare == "torch":
        with minigrad.no_grad():
            ours = module(x).numpy()
        times, best, reference = torch_times(spec, module, x.numpy(), None, args.repeat)
        result.update(torch_layout=best, torch_forward_ms=times[best]["forward"] * 1e3,
                      torch_step_ms=times[best]["step"] * 1e3, step_vs_torch=step_s / times[best]["step"],
                      max_abs_diff=check_same(ours, reference, f"inception {name}"))
    return result


def network_size(key, quick):
    return NETWORK_SIZE.get(key, 112 if quick else 224)


def factorized_pair(name):
    """(the full convolution, its factorization) as modules C -> C (-> C), each with a ReLU: FACTORIZATIONS."""
    grid, channels, kernel, parts = FACTORIZATIONS[name]
    full = models.ConvReLU(channels, channels, kernel, padding=(kernel[0] // 2, kernel[1] // 2))
    layers = [models.ConvReLU(channels, channels, k, padding=(k[0] // 2, k[1] // 2)) for k in parts]
    return full, minigrad.nn.Sequential(*layers)


def bench_factorization(name, args, bar):
    """Parameters, multiply-adds and time of a convolution and of its factorization, side by side."""
    grid, channels, kernel, parts = FACTORIZATIONS[name]
    minigrad.manual_seed(0)
    x = minigrad.randn(args.batch, channels, grid, grid, requires_grad=True, device=args.device)
    row = {"factorization": name, "grid": grid, "channels": channels}
    modules = factorized_pair(name)
    bar.set_postfix_str(name)
    for label, module in zip(("full", "factorized"), modules):
        module.to(args.device)
        counted = models.summary(module, (1, channels, grid, grid))[0]

        def forward():
            with minigrad.no_grad():
                module(x)

        def step():
            module.zero_grad()
            out = module(x)
            out.backward(np.ones(out.shape, np.float32))
        times = measure_alternating({"forward": forward, "step": step}, args.repeat, settle=1)
        row.update({f"{label}_params": counted["params"], f"{label}_multiply_adds": counted["multiply_adds"],
                    f"{label}_forward_ms": times["forward"] * 1e3, f"{label}_step_ms": times["step"] * 1e3})
    bar.update()
    row["analytic_saving"] = 1 - row["factorized_multiply_adds"] / row["full_multiply_adds"]
    row["measured_saving"] = 1 - row["factorized_step_ms"] / row["full_step_ms"]
    return row


def bench_network(key, args, bar):
    size = network_size(key, args.quick)
    spec = {"kind": "network", "name": key, "input_size": size}
    net = build_model(spec)
    rows = models.summary(net)
    x = minigrad.randn(args.batch, 3, size, size, device=args.device)
    net.to(args.device)
    sync = lambda: synchronize(x.data)
    target = np.arange(args.batch) % 1000
    bar.set_postfix_str(NETWORKS[key])

    def forward():
        with minigrad.no_grad():
            net(x)

    net.eval()
    forward_s = measure(forward, args.repeat, sync=sync)["median"]
    net.train()
    step = training_step(net, x, target)
    step_s = measure(step, args.repeat, sync=sync)["median"]
    bar.update()
    inference = next(r for r in rows if r["name"] == "total (inference)")
    result = {"network": NETWORKS[key], "input": f"3x{size}x{size}", "params": inference["params"],
              "multiply_adds": inference["multiply_adds"], "forward_ms": forward_s * 1e3, "step_ms": step_s * 1e3,
              "peak_mb": peak_memory_mb(step, args.device)}
    if args.compare == "torch":
        net.eval()
        with minigrad.no_grad():
            ours = net(x).numpy()
        times, best, reference = torch_times(spec, net, x.numpy(), target, args.repeat)
        result.update(torch_layout=best, torch_forward_ms=times[best]["forward"] * 1e3,
                      torch_step_ms=times[best]["step"] * 1e3, forward_vs_torch=forward_s / times[best]["forward"],
                      step_vs_torch=step_s / times[best]["step"], max_abs_diff=check_same(ours, reference, key))
    return result


def format_tables(module_rows, network_rows, compare):
    lines = []
    if module_rows:
        lines.append("| config | module | input | out ch | params | M mult-adds | fwd ms | fwd+bwd ms | peak MB "
                     "| fwd+bwd GFLOP/s |" + (" PyTorch fwd+bwd ms | vs PyTorch |" if compare else ""))
        lines.append("|" + " --- |" * (10 + 2 * bool(compare)))
        for r in module_rows:
            line = (f"| {r['config']} | {r['module']} | {r['input']} | {r['out_channels']} | {r['params']:,} | "
                    f"{r['multiply_adds'] / 1e6:.0f} | {r['forward_ms']:.1f} | {r['step_ms']:.1f} | {r['peak_mb']:.0f} | "
                    f"{r['step_gflops']:.0f} |")
            if compare:
                line += f" {r['torch_step_ms']:.1f} ({r['torch_layout']}) | {r['step_vs_torch']:.2f}x |"
            lines.append(line)
        lines.append("\n| config | naive/reduced params | mult-adds | fwd time | fwd+bwd time | peak memory |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        by = {(r["config"], r["module"]): r for r in module_rows}
        for config in dict.fromkeys(r["config"] for r in module_rows):
            n, d = by.get((config, "naive")), by.get((config, "reduced"))
            if n and d:
                lines.append(f"| {config} | {n['params'] / d['params']:.1f}x | {n['multiply_adds'] / d['multiply_adds']:.1f}x"
                             f" | {n['forward_ms'] / d['forward_ms']:.1f}x | {n['step_ms'] / d['step_ms']:.1f}x | "
                             f"{n['peak_mb'] / d['peak_mb']:.1f}x |")
    if network_rows:
        lines.append("\n| network | input | params | M mult-adds | forward ms | training step ms | peak MB |"
                     + (" PyTorch fwd / step ms | fwd vs PyTorch | step vs PyTorch |" if compare else ""))
        lines.append("|" + " --- |" * (7 + 3 * bool(compare)))
        for r in network_rows:
            line = (f"| {r['network']} | {r['input']} | {r['params']:,} | {r['multiply_adds'] / 1e6:,.0f} | "
                    f"{r['forward_ms']:.0f} | {r['step_ms']:.0f} | {r['peak_mb']:.0f} |")
            if compare:
                line += (f" {r['torch_forward_ms']:.0f} / {r['torch_step_ms']:.0f} ({r['torch_layout']}) | "
                         f"{r['forward_vs_torch']:.2f}x | {r['step_vs_torch']:.2f}x |")
            lines.append(line)
    return "\n".join(lines)


def format_factorizations(rows):
    """The factorized convolutions against the ones they replace: cost, time, and the saving predicted from the
    multiply-adds beside the measured one."""
    lines = ["| factorization | channels | params full / factorized | M mult-adds full / factorized | fwd ms full / "
             "factorized | fwd+bwd ms full / factorized | fwd+bwd ratio | saving: analytic | saving: measured |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['factorization']} | {r['channels']} | {r['full_params']:,} / {r['factorized_params']:,} | "
                     f"{r['full_multiply_adds'] / 1e6:.1f} / {r['factorized_multiply_adds'] / 1e6:.1f} | "
                     f"{r['full_forward_ms']:.2f} / {r['factorized_forward_ms']:.2f} | "
                     f"{r['full_step_ms']:.2f} / {r['factorized_step_ms']:.2f} | "
                     f"{r['factorized_step_ms'] / r['full_step_ms']:.2f}x | {r['analytic_saving']:.0%} | "
                     f"{r['measured_saving']:.0%} |")
    return "\n".join(lines)


def write_outputs(out, module_rows, network_rows, header, args, factorization_rows=()):
    written = []
    for name, rows in (("inception_modules", module_rows), ("networks", network_rows),
                       ("factorizations", list(factorization_rows))):
        if rows:
            path = os.path.join(out, f"{name}.csv")
            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
                writer.writeheader()
                writer.writerows(rows)
            written.append(path)
    path = os.path.join(out, "results.json")
    with open(path, "w") as f:
        json.dump({"header": header, "batch": args.batch, "repeat": args.repeat, "inception_modules": module_rows,
                   "factorizations": list(factorization_rows), "networks": network_rows}, f, indent=1)
    written.append(path)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plots; pip install -e '.[bench]')")
        return written
    if module_rows:
        configs = list(dict.fromkeys(r["config"] for r in module_rows))
        by = {(r["config"], r["module"]): r for r in module_rows}
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        for ax, key, label in zip(axes, ("params", "multiply_adds", "step_ms"),
                                  ("parameters", "multiply-adds per image", f"forward+backward ms (batch {args.batch})")):
            positions = np.arange(len(configs))
            for offset, kind in ((-0.2, "naive"), (0.2, "reduced")):
                values = [by[(c, kind)][key] if (c, kind) in by else 0 for c in configs]
                ax.bar(positions + offset, values, 0.4, label=kind)
            ax.set_xticks(positions, configs)
            ax.set_title(label)
            ax.legend()
        fig.suptitle("Inception modules: naive (Figure 2a) vs 1x1-reduced (Figure 2b)")
        fig.tight_layout()
        path = os.path.join(out, "inception_modules.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if network_rows:
        fig, ax = plt.subplots(figsize=(7, 5))
        for i, r in enumerate(sorted(network_rows, key=lambda r: r["multiply_adds"])):
            ax.scatter(r["multiply_adds"] / 1e9, r["step_ms"], s=max(20, r["params"] / 2e5))
            ax.annotate(f"{r['network']}\n{r['params'] / 1e6:.1f}M params", (r["multiply_adds"] / 1e9, r["step_ms"]),
                        textcoords="offset points", xytext=(8, 10 if i % 2 else -26), fontsize=8)
        ax.margins(x=0.25, y=0.15)
        ax.set_xlabel("multiply-adds per image (billions)")
        ax.set_ylabel(f"training step ms (batch {args.batch})")
        ax.set_title("Whole networks: cost vs time (marker size: parameters)")
        fig.tight_layout()
        path = os.path.join(out, "networks.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv=None):
    return cli.run("python -m benchmarks", _main, argv)


def _main(argv):
    args = parse_args(argv)
    header = machine_header()
    print(header)
    print(f"float32, batch {args.batch}, {args.device}, median of {args.repeat} timed runs after a warm-up"
          + (", networks at 112x112 (--quick)" if args.quick else ""))
    bar = progress(2 * len(args.configs) + len(args.factorizations) + len(args.networks))
    try:
        module_rows = [bench_module(c, naive, args, bar) for c in args.configs for naive in (True, False)]
        factorization_rows = [bench_factorization(f, args, bar) for f in args.factorizations]
        network_rows = [bench_network(n, args, bar) for n in args.networks]
    finally:
        bar.close()
    print()
    print(format_tables(module_rows, network_rows, args.compare))
    if factorization_rows:
        print("\n" + format_factorizations(factorization_rows))
    written = write_outputs(args.out, module_rows, network_rows, header, args, factorization_rows)
    print("\nwritten: " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
