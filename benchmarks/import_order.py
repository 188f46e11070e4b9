"""python -m benchmarks.import_order: does minigrad's speed depend on what the program imported first?

Each case is a fresh process that imports something (nothing, NumPy, PyTorch, SciPy) and then minigrad,
and times the small GoogLeNet's training step (batch 32, 16x16) and GoogLeNet's forward pass (eval mode,
no gradients, channels-last input, batch 1; --batch for more). The cases alternate round after round (this
machine is shared and its speed drifts), their order rotating a place each round; each figure is the
median over rounds of each round's median, and each case is also given as its time over the minigrad-first
case's. The children start without the thread setting minigrad puts in the environment (GOMP_SPINCOUNT),
as a new program does.

Two more cases undo minigrad's remedy (`import minigrad` runs OpenBLAS on one thread, kernels.BLAS_SERIAL;
docs/design.md, "Threads"), each putting OpenBLAS back on its two threads after `import minigrad`:
numpy-unserialized with NumPy imported first (OpenBLAS's workers spin at its default), short-spin with
OPENBLAS_THREAD_TIMEOUT=4 set before NumPy loads (the shortest spin an order could give it: the other way
to keep the pools apart, open only to a program that imports minigrad first).
"""

from __future__ import annotations

import importlib.util
import statistics
import sys

# name -> (what the process runs before importing minigrad, whether OpenBLAS gets its two threads back
# afterwards, the table's label)
CASES = {
    "minigrad": ("", False, "`import minigrad`"),
    "numpy": ("import numpy", False, "`import numpy`"),
    "numpy-unserialized": ("import numpy", True, "`import numpy`, then OpenBLAS on 2 threads again"),
    "short-spin": ("import os; os.environ['OPENBLAS_THREAD_TIMEOUT'] = '4'", True,
                   "`import minigrad` with OPENBLAS_THREAD_TIMEOUT=4, then OpenBLAS on 2 threads again"),
    "torch": ("import torch, numpy", False, "`import torch, numpy`"),
    "scipy": ("import scipy.linalg, numpy", False, "`import scipy.linalg, numpy`"),
}
OPTIONAL = {"torch": "torch", "scipy": "scipy"}        # cases that need a package this machine may lack

CHILD = """
{first_import}
import kernels, minigrad, models
import json
import numpy as np
from benchmarks.__main__ import training_step
from benchmarks.timing import measure
if {unserialize}:
    for setter in kernels._openblas_thread_setters():
        setter(2)


def median_ms(fn, repeat):
    return measure(fn, repeat, warmup=0)["median"] * 1e3


minigrad.manual_seed(0)
small = models.mini_googlenet(in_channels=1, input_size=16)
step = training_step(small, minigrad.randn(32, 1, 16, 16), np.arange(32) % 10)
for _ in range(5):
    step()
result = {{"small_step_ms": median_ms(step, {step_repeat})}}
if {googlenet}:
    net = models.googlenet().eval()
    x = minigrad.randn({batch}, 3, 224, 224).contiguous("channels_last")
    with minigrad.no_grad():
        for _ in range(3):
            net(x)
        result["googlenet_forward_ms"] = median_ms(lambda: net(x), {forward_repeat})
result["blas_serial"] = kernels.BLAS_SERIAL
print(json.dumps(result))
"""

COLUMNS = {"small_step_ms": "small GoogLeNet step ms", "googlenet_forward_ms": "GoogLeNet forward ms"}


def parse_args(argv):
    from minigrad import cli
    parser = cli.Parser(prog="python -m benchmarks.import_order", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=cli.name_list(list(CASES), "case"),
                        help=f"cases, comma-separated, of {', '.join(CASES)} (default: all whose package is "
                             "installed)")
    parser.add_argument("--rounds", type=cli.integer(1, 100), default=3, help="rounds of every case (default 3)")
    parser.add_argument("--batch", type=cli.integer(1, 64), default=1, help="GoogLeNet's batch (default 1)")
    parser.add_argument("--no-googlenet", action="store_true", help="time only the small network")
    return parser.parse_args(argv)


def run_case(name, args):
    from benchmarks.timing import fresh_python, new_program_environment
    first_import, unserialize, _ = CASES[name]
    code = CHILD.format(first_import=first_import, unserialize=unserialize, googlenet=not args.no_googlenet,
                        batch=args.batch, step_repeat=30, forward_repeat=9 if args.batch == 1 else 5)
    try:
        return fresh_python(code, new_program_environment(), timeout=600)
    except RuntimeError as error:
        raise RuntimeError(f"import_order: the {name} case failed:\n{error}") from None


def table(results, columns):
    """Markdown rows: each case's median per column, and its ratio to the minigrad-first case's."""
    base = results.get("minigrad")
    head = ["first import", *(COLUMNS[c] for c in columns), *(f"{COLUMNS[c].rsplit(' ', 1)[0]} / minigrad first"
                                                             for c in columns if base), "OpenBLAS threads"]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 2) + " --- |"]
    for name, runs in results.items():
        medians = [statistics.median(r[c] for r in runs) for c in columns]
        ratios = [f"{m / statistics.median(r[c] for r in base):.2f}x" for m, c in zip(medians, columns)] if base else []
        _, unserialize, label = CASES[name]
        threads = "2" if unserialize or not runs[0]["blas_serial"] else "1 (BLAS_SERIAL)"
        lines.append("| " + " | ".join([label, *(f"{m:.1f}" for m in medians), *ratios, threads]) + " |")
    return "\n".join(lines)


def _main(argv):
    args = parse_args(argv)
    from benchmarks.timing import in_rotation, machine_header
    cases = args.cases or [c for c in CASES if c not in OPTIONAL or importlib.util.find_spec(OPTIONAL[c])]
    missing = [c for c in cases if c in OPTIONAL and not importlib.util.find_spec(OPTIONAL[c])]
    if missing:
        from minigrad.cli import CommandError
        raise CommandError(f"--cases {','.join(missing)}: needs {', '.join(OPTIONAL[c] for c in missing)}, "
                           "which is not installed")
    print(machine_header())
    print(f"{args.rounds} rounds, cases alternating in rotation, each a fresh process; GoogLeNet batch {args.batch}\n")
    results = {name: [] for name in cases}
    for round_ in range(args.rounds):
        for name in in_rotation(cases, round_):
            results[name].append(run_case(name, args))
            print(f"round {round_ + 1}: {name}: " + ", ".join(f"{COLUMNS[k]} {v:.1f}" for k, v in
                                                              results[name][-1].items() if k in COLUMNS),
                  file=sys.stderr, flush=True)
    columns = [c for c in COLUMNS if c in results[cases[0]][0]]
    print(table(results, columns))
    return 0


def main(argv=None):
    from minigrad import cli
    return cli.run("python -m benchmarks.import_order", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
