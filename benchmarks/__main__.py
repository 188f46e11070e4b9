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

import argparse
import csv
import importlib.util
import json
import os
import sys
import tracemalloc

import numpy as np

import minigrad
import models
from benchmarks.timing import machine_header, measure
from benchmarks.torch_reference import torch_times
from minigrad.backend import parse_device, synchronize
from models.googlenet import INCEPTION_TABLE

INPUT_SIZES = {"3a": (192, 28), "3b": (256, 28), "4a": (480, 14), "4b": (512, 14), "4c": (512, 14),
               "4d": (512, 14), "4e": (528, 14), "5a": (832, 7), "5b": (832, 7)}
CONFIGS = {row[0]: row[1:] for row in INCEPTION_TABLE if not isinstance(row, str)}
NETWORKS = {"googlenet": "GoogLeNet", "googlenet-naive": "GoogLeNet (naive modules)",
            "plain": "plain 3x3 network", "alexnet": "AlexNet"}


class UsageError(Exception):
    """A bad command-line value: reported in one line, exit status 2."""


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after a warm-up; the median is "
                        "reported (default 3)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="Inception configurations, e.g. 3a,4e")
    parser.add_argument("--networks", default=",".join(NETWORKS), help="whole networks, or 'none'")
    parser.add_argument("--out", default="benchmark-results", help="folder for the CSV, JSON and PNG files")
    parser.add_argument("--quick", action="store_true", help="batch 2, one timed run, networks at 112x112")
    parser.add_argument("--compare", choices=["torch"], help="time PyTorch on the same work, in the same run")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.repeat = 2, 1
    if args.batch < 1:
        raise UsageError(f"--batch must be a positive integer, got {args.batch}")
    if args.repeat < 1:
        raise UsageError(f"--repeat must be a positive integer, got {args.repeat}")
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown:
        raise UsageError(f"unknown configuration {', '.join(unknown)}; choose from {','.join(CONFIGS)}")
    args.networks = [] if args.networks == "none" else [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = [n for n in args.networks if n not in NETWORKS]
    if unknown:
        raise UsageError(f"unknown network {', '.join(unknown)}; choose from {','.join(NETWORKS)} or none")
    if args.device == "cuda":
        try:
            args.device = parse_device("cuda", "--device")
        except (RuntimeError, ValueError) as error:
            raise UsageError(str(error)) from None
        if args.compare:
            raise UsageError("--compare torch times PyTorch on the CPU; for the GPU comparison run "
                             "python -m benchmarks.gpu_check")
    try:
        os.makedirs(args.out, exist_ok=True)
        probe = os.path.join(args.out, ".write-test")
        open(probe, "w").close()
        os.remove(probe)
    except OSError as error:
        raise UsageError(f"cannot write to --out {args.out}: {error.strerror}") from None
    if args.compare == "torch" and importlib.util.find_spec("torch") is None:    # found, not loaded here
        raise UsageError("--compare torch needs PyTorch (pip install torch==2.13.0)")
    return args


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
    """Forward, loss (models.training_loss: GoogLeNet adds 0.3 x each auxiliary loss), backward, plain SGD."""
    def step():
        loss = models.training_loss(model(x), target)
        model.zero_grad()
        loss.backward()
        with minigrad.no_grad():
            for p in model.parameters():
                p.data -= lr * p.grad.data
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


def bench_network(key, args, bar):
    size = 112 if args.quick else 224
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


def write_outputs(out, module_rows, network_rows, header, args):
    written = []
    for name, rows in (("inception_modules", module_rows), ("networks", network_rows)):
        if rows:
            path = os.path.join(out, f"{name}.csv")
            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
                writer.writeheader()
                writer.writerows(rows)
            written.append(path)
    path = os.path.join(out, "results.json")
    with open(path, "w") as f:
        json.dump({"header": header, "batch": args.batch, "repeat": args.repeat,
                   "inception_modules": module_rows, "networks": network_rows}, f, indent=1)
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
    try:
        args = parse_args(argv)
    except UsageError as error:
        print(f"python -m benchmarks: error: {error}", file=sys.stderr)
        return 2
    header = machine_header()
    print(header)
    print(f"float32, batch {args.batch}, {args.device}, median of {args.repeat} timed runs after a warm-up"
          + (", networks at 112x112 (--quick)" if args.quick else ""))
    bar = progress(2 * len(args.configs) + len(args.networks))
    try:
        module_rows = [bench_module(c, naive, args, bar) for c in args.configs for naive in (True, False)]
        network_rows = [bench_network(n, args, bar) for n in args.networks]
    finally:
        bar.close()
    print()
    print(format_tables(module_rows, network_rows, args.compare))
    written = write_outputs(args.out, module_rows, network_rows, header, args)
    print("\nwritten: " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
