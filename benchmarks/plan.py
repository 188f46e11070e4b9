"""python -m benchmarks.plan MODEL: the algorithm of every convolution of a network, pass by pass.

Every CPU convolution runs the plan that kernels/cpu/conv/plan.py makes for its geometry (from the tuning
table of this CPU's family, kernels/cpu/tuning.py): for its forward, its input gradient and its weight
gradient.  This prints those plans for each convolution of the model at the given batch size, with the
machine, the table in force and the thread count, and ends with how many layers run each algorithm.

    python -m benchmarks.plan googlenet --batch 8
"""

from __future__ import annotations

import collections
import sys

import numpy as np

import minigrad
from minigrad import cli, nn
from models import memory


def conv_layers(model, input_shape):
    """[(name, input shape, conv module)] for every nn.Conv2d the model runs on an input of input_shape, in
    the order it runs them (auxiliary heads included: the model runs in training mode, without gradients)."""
    found, hooks = [], []
    names = {id(m): name for name, m in model.named_modules()}
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(
                lambda m, inputs, output: found.append((names[id(m)], inputs[0].shape, m))))
    from models.network import run_with_heads
    try:
        run_with_heads(model, minigrad.zeros(*input_shape, dtype=next(model.parameters()).dtype))
    finally:
        for h in hooks:
            h.remove()
    return found


def plan_table(model, batch, threads=None):
    """(rows, plans): a row of strings per convolution of the model at this batch size, and the plans."""
    from kernels.cpu.conv import plan_for

    rows, plans = [], []
    for name, shape, conv in conv_layers(model, (1, model.in_channels, *model.input_size)):
        x_shape = (batch, *shape[1:])
        plan = plan_for(conv.weight.dtype, x_shape, conv.weight.shape, conv.stride, conv.padding, threads)
        o, c, kh, kw = conv.weight.shape
        rows.append([name.removeprefix("layers."), "x".join(map(str, x_shape[1:])),
                     f"{c}->{o} {kh}x{kw}/{conv.stride[0]} pad {conv.padding[0]}",
                     plan.forward.label() + (" keep" if plan.keep_columns else ""), plan.input_grad.label(),
                     plan.weight_grad.label()])
        plans.append(plan)
    return rows, plans


def format_rows(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *rows])


def main(argv=None):
    return cli.run("python -m benchmarks.plan", _main, argv)


def parse_args(argv):
    from kernels.cpu.conv import winograd_enabled
    from models import MODELS, model_name

    parser = cli.Parser(prog="python -m benchmarks.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help=f"one of: {', '.join(MODELS)}")
    parser.add_argument("--batch", type=cli.integer(1, 2**16), default=8, help="batch size (default 8)")
    parser.add_argument("--input-size", type=cli.integer(1, 2**16), help="input height and width (default: the model's)")
    parser.add_argument("--threads", type=cli.integer(1, 4096), help="plan for this many threads (default: Numba's)")
    args = parser.parse_args(argv)
    args.model = model_name(args.model)
    try:
        winograd_enabled()
        if args.input_size:            # the plans come from one image's forward pass at this size
            memory.check_fits(args.model, 1, 1000, 3, args.input_size, f"--input-size {args.input_size}", training=False)
    except ValueError as error:
        raise cli.CommandError(str(error)) from None
    return args


def _main(argv):
    from kernels.cpu import tuning
    from kernels.cpu.conv import winograd_enabled
    from models import get_model

    from .timing import machine_header

    args = parse_args(argv)
    try:
        model = get_model(args.model, **({"input_size": args.input_size} if args.input_size else {}))
    except ValueError as error:
        raise cli.CommandError(str(error)) from None
    rows, plans = plan_table(model, args.batch, args.threads)
    table = tuning.current()
    print(machine_header())
    print(f"tuning: the {table.family} table (measured on {table.measured_on}), for this CPU ({tuning.cpu_name()}); "
          f"{plans[0].threads} threads; MINIGRAD_WINOGRAD {'on' if winograd_enabled() else 'off'}\n")
    print(f"{args.model}, batch {args.batch}, float32: {len(rows)} convolutions\n")
    print(format_rows(["layer", "input", "convolution", "forward", "input gradient", "weight gradient"], rows))
    for title, field in (("forward", "forward"), ("input gradient", "input_grad"), ("weight gradient", "weight_grad")):
        counts = collections.Counter(getattr(p, field).algorithm for p in plans)
        print(f"\n{title}: " + ", ".join(f"{name} {n}" for name, n in counts.most_common()), end="")
    print()
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
