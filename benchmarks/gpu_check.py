"""python -m benchmarks.gpu_check: on a machine with a GPU, the GPU tests, then a GPU benchmark, a short table last.

1. The tests marked gpu (tests/test_gpu.py, and tests/test_kernels.py's "cuda" cases: every kernel
   against the reference), with MINIGRAD_REQUIRE_GPU=1 so that a missing GPU fails instead of skipping.
2. float32, TF32 off in both libraries: GoogLeNet's Inception modules, naive and reduced, forward+backward
   at batch 32, and GoogLeNet's training step (forward, the loss with its auxiliary heads, backward,
   SGD) at batch 32 and 128.  When PyTorch with CUDA imports, the same work in PyTorch (cuDNN), same
   weights, in the same run; the target is the batch-128 step within 1.5x of PyTorch's time.
"""

from __future__ import annotations

import os

os.environ["CUPY_TF32"] = "0"          # before CuPy loads: cuBLAS in plain FP32, like PyTorch with TF32 off

import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import minigrad  # noqa: E402
from benchmarks.__main__ import INPUT_SIZES, build_model, torch_loss, training_step  # noqa: E402
from benchmarks.timing import measure  # noqa: E402
from minigrad.backend import cuda_available, cuda_problem, synchronize  # noqa: E402

TARGET_RATIO = 1.5


ROOT = Path(__file__).resolve().parent.parent              # the repository: its tests and pytest's settings
GPU_TESTS = ("tests/test_gpu.py", "tests/test_kernels.py", "tests/test_fuzz.py", "tests/test_distributed.py")


def run_tests():
    """(passed, failed, skipped, seconds) of the GPU tests, run in a child pytest in the repository, from
    whatever folder this command was started in."""
    env = {**os.environ, "MINIGRAD_REQUIRE_GPU": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *GPU_TESTS],
                            env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    print(result.stdout[-4000:], result.stderr[-2000:], sep="\n")
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    counts = {word: 0 for word in ("passed", "failed", "skipped", "error")}
    for part in summary.replace("=", "").split(","):
        fields = part.split()
        if len(fields) >= 2 and fields[0].isdigit() and fields[1].rstrip("s") in counts:
            counts[fields[1].rstrip("s")] = int(fields[0])
    return counts, seconds, result.returncode


def torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    plain_fp32(torch)
    torch.backends.cudnn.benchmark = True          # PyTorch's fastest convolution algorithms
    return torch


def plain_fp32(torch):
    """TF32 off for PyTorch's matrix products and convolutions: fp32_precision = "ieee" where PyTorch has it
    (2.9 on; the allow_tf32 switches are deprecated there), else the old switches."""
    matmul, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and conv is not None and hasattr(conv, "fp32_precision"):
        matmul.fp32_precision = "ieee"
        conv.fp32_precision = "ieee"
    else:
        matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def time_minigrad(step, x, repeat):
    return measure(step, repeat, sync=lambda: synchronize(x.data))["median"]


def time_torch(torch, model, x, target, repeat, lr=1e-3):
    from benchmarks.torch_reference import to_torch

    twin = to_torch(model).cuda()
    xt = torch.from_numpy(x.numpy()).cuda().requires_grad_(target is None)
    labels = None if target is None else torch.from_numpy(target).cuda()
    optimizer = torch.optim.SGD(twin.parameters(), lr=lr)

    def step():
        out = twin(xt)
        loss = torch_loss(out, labels) if labels is not None else out.sum()
        optimizer.zero_grad()
        loss.backward()
        if labels is not None:
            optimizer.step()
    twin.train()
    return measure(step, repeat, sync=torch.cuda.synchronize)["median"]


def bench(args, torch):
    rows = []
    for config in args.configs:
        for naive in (True, False):
            spec = {"kind": "inception", "config": config, "naive": naive}
            module = build_model(spec)
            in_channels, side = INPUT_SIZES[config]
            x_host = minigrad.randn(args.module_batch, in_channels, side, side)
            theirs = time_torch(torch, module, x_host, None, args.repeat) * 1e3 if torch else None   # same weights
            module.to("cuda")
            x = minigrad.tensor(x_host, requires_grad=True, device="cuda")

            def step():                      # gradients zeroed each step, as the PyTorch twin's optimizer does
                module.zero_grad()
                x.grad = None
                out = module(x)
                out.backward(minigrad.tensor(np.ones(out.shape, np.float32), device="cuda"))
            ms = time_minigrad(step, x, args.repeat) * 1e3
            rows.append((f"inception {config} {'naive' if naive else 'reduced'} fwd+bwd, batch {args.module_batch}",
                         ms, theirs))
    for batch in args.batches:
        spec = {"kind": "network", "name": "googlenet", "input_size": 224}
        net = build_model(spec)
        x_host = minigrad.randn(batch, 3, 224, 224)
        target = np.arange(batch) % 1000
        theirs = time_torch(torch, net, x_host, target, args.repeat) * 1e3 if torch else None
        net.to("cuda")
        x = x_host.to("cuda")
        ms = time_minigrad(training_step(net, x, target), x, args.repeat) * 1e3
        rows.append((f"GoogLeNet training step, batch {batch}", ms, theirs))
    return rows


def parse_args(argv):
    from benchmarks.__main__ import CONFIGS
    from minigrad import cli

    parser = cli.Parser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=cli.integer(1, 1000), default=5,
                        help="timed runs after a warm-up (median; default 5)")
    parser.add_argument("--configs", type=cli.name_list(list(CONFIGS), "configuration"), default=["3a", "4a", "5b"],
                        help="Inception configurations (default 3a,4a,5b)")
    parser.add_argument("--module-batch", type=cli.integer(1, 4096), default=32)
    parser.add_argument("--batches", type=cli.integer_list(1, 4096), default=[32, 128],
                        help="GoogLeNet step batch sizes (default 32,128)")
    parser.add_argument("--skip-tests", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    from minigrad import cli
    return cli.run("python -m benchmarks.gpu_check", _main, argv)


def _main(argv):
    from minigrad import cli

    args = parse_args(argv)
    if not cuda_available():
        raise cli.CommandError(f"no GPU: {cuda_problem()}")
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    torch = torch_cuda()
    header = (f"GPU check on {name} (CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, CuPy {cupy.__version__}, "
              f"{'PyTorch ' + torch.__version__ if torch else 'no PyTorch with CUDA'}), float32, TF32 off, "
              f"median of {args.repeat}")
    print(header, flush=True)
    counts, seconds, code = ({}, 0.0, 0) if args.skip_tests else run_tests()
    rows = bench(args, torch)
    print("\n" + header)
    if not args.skip_tests:
        print(f"GPU tests: {counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
              f"{counts['skipped']} skipped ({seconds:.0f} s)")
    print("| work | minigrad ms | PyTorch ms | minigrad / PyTorch |")
    print("| --- | ---: | ---: | ---: |")
    for label, ours, theirs in rows:
        ratio = f"{ours / theirs:.2f}x" if theirs else "-"
        print(f"| {label} | {ours:.1f} | {theirs:.1f} | {ratio} |" if theirs else f"| {label} | {ours:.1f} | - | - |")
    step = [r for r in rows if r[0].endswith("batch 128")]
    if step and step[0][2]:
        ratio = step[0][1] / step[0][2]
        print(f"target: GoogLeNet step at batch 128 within {TARGET_RATIO}x of PyTorch: {ratio:.2f}x, "
              f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}")
    return 1 if code else 0


if __name__ == "__main__":
    sys.exit(main())
