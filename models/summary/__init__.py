"""models.summary: the per-layer table of a network, computed from the model itself.

Every row comes from running the model once on a zero input with forward hooks:
output sizes from the layers' outputs, multiply-adds from every convolution and
linear layer (output pixels x weights per output; biases, pools, ReLU and LRN are
not counted, as in the paper's "ops" column), filter counts from the modules'
own weights.  Printed in the layout of the paper's Table 1:

    python -m models.summary googlenet --paper
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

import minigrad
from minigrad import nn
from minigrad.checks import as_pair

from ..inception import Inception, InceptionNaive
from ..inception_v3 import ExpandedBank, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE
from ..network import run_with_heads


def _paper_table():
    """Table 1 of Szegedy et al. as printed (table1.json, shipped beside this file): its rows, and
    name -> (params in K of 1024, ops in M multiply-adds) for the rows that print them."""
    with open(os.path.join(os.path.dirname(__file__), "table1.json")) as f:
        printed = json.load(f)
    return printed, {row[0]: (row[11], row[12]) for row in printed["rows"] if row[11] is not None}


PAPER_TABLE1_JSON, PAPER_TABLE1 = _paper_table()
PAPER_OUTPUTS = {row[0]: tuple(row[3]) for row in PAPER_TABLE1_JSON["rows"] if row[3]}
# Where a printed value is known to follow from something other than the row's own filter counts.
PAPER_EXPLANATIONS = {
    "conv1": "the printed 2.7K/34M match a depthwise-separable 7x7 (3->24 depthwise, multiplier 8, then "
             "1x1 24->64), not the plain 7x7 convolution the table names (9,408 weights)",
}
COLUMNS = ["n1x1", "n3x3red", "n3x3", "n5x5red", "n5x5", "pool_proj"]

# Inception-v3's modules: what each is, by the figure of "Rethinking the Inception Architecture".
V3_MODULES = {InceptionA: "inception A (fig. 5)", InceptionB: "grid reduction (fig. 10)",
              InceptionC: "inception C (fig. 6)", InceptionD: "grid reduction (fig. 10)",
              InceptionE: "inception E (fig. 7)"}
_PARALLEL = (Inception, InceptionNaive, ExpandedBank, *V3_MODULES)      # modules whose children run side by side

# What a released network's table differs in from its paper's, printed under its summary.
MODEL_NOTES = {
    "inception_v3": ["Rethinking the Inception Architecture's Table 1 shows the 17x17 module 5 times; the released "
                     "network (torchvision's, built here) has 4 (Mixed_6b-6e).",
                     "Its 35x35 modules (Mixed_5b-5d) keep a 5x5 branch beside the double 3x3 that Figure 5 "
                     "replaces it with; its 8x8 modules (Mixed_7b-7c) are Figure 7's, with a 1x1 -> 3x3 branch "
                     "before the second bank.",
                     "The table's first 3x3 convolutions are given as 'padded'; the release pads only Conv2d_2b, "
                     "hence 35x35 after the stem from 299x299."],
}


def _convs(module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def _out(conv):
    return conv.weight.shape[0]


def _depth(module):
    """Layers with weights along the longest path through a module: convolutions in sequence add up,
    branches side by side (an Inception module's, Figure 7's bank) count their deepest."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return 1
    depths = [_depth(child) for child in module.children()]
    return max(depths, default=0) if isinstance(module, _PARALLEL) else sum(depths)


def _describe(layer):
    """(type, patch size/stride, depth, filter columns) of one named layer."""
    columns = dict.fromkeys(COLUMNS)
    if type(layer) in V3_MODULES:
        return V3_MODULES[type(layer)], None, _depth(layer), columns
    if isinstance(layer, Inception):
        columns.update(n1x1=_out(layer.branch1x1.conv), n3x3red=_out(layer.branch3x3[0].conv),
                       n3x3=_out(layer.branch3x3[1].conv), n5x5red=_out(layer.branch5x5[0].conv),
                       n5x5=_out(layer.branch5x5[1].conv), pool_proj=_out(layer.branch_pool[1].conv))
        return "inception", None, 2, columns
    if isinstance(layer, InceptionNaive):
        columns.update(n1x1=_out(layer.branch1x1.conv), n3x3=_out(layer.branch3x3.conv),
                       n5x5=_out(layer.branch5x5.conv))
        return "inception (naive)", None, 1, columns
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        k = as_pair("summary", "kernel_size", layer.kernel_size, 1)
        s = as_pair("summary", "stride", layer.stride or layer.kernel_size, 1)
        kind = "max pool" if isinstance(layer, nn.MaxPool2d) else "avg pool"
        return kind, f"{k[0]}x{k[1]}/{s[0]}", 0, columns
    convs = _convs(layer)
    if convs:
        last = convs[-1]
        if len(convs) == 2 and convs[0].kernel_size == (1, 1) and last.kernel_size == (3, 3):
            columns.update(n3x3red=_out(convs[0]), n3x3=_out(last))    # conv2: 1x1 reduce, then 3x3
        return "convolution", f"{last.kernel_size[0]}x{last.kernel_size[1]}/{last.stride[0]}", len(convs), columns
    if isinstance(layer, nn.Linear):
        return "linear", None, 1, columns
    if isinstance(layer, nn.Dropout):
        return f"dropout ({layer.p:.0%})", None, 0, columns
    if isinstance(layer, nn.LocalResponseNorm):
        return "local response norm", None, 0, columns
    return type(layer).__name__.lower(), None, 0, columns


def _count(module):
    params = sum(p.numel() for p in module.parameters())
    weights = sum(m.weight.numel() for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    return params, weights


def summary(model, input_shape=None):
    """One dict per layer (name, type, patch, output (H, W, C) or (C,), depth, the six filter
    columns, params, weights (params less biases), multiply_adds), auxiliary heads last, then
    two total rows: inference (without auxiliary heads) and training (with them).

    A model without named `layers` (a single Inception module, say) is one row; give its input_shape."""
    if input_shape is None:
        if not hasattr(model, "input_size"):
            raise ValueError(f"summary: give the input_shape for a {type(model).__name__}")
        input_shape = (1, model.in_channels, *model.input_size)
    layers = list(model.layers.named_children()) if hasattr(model, "layers") else [(type(model).__name__, model)]
    heads = [(f"{name} (auxiliary)", m) for name, m in model.named_children() if name.lower().startswith("aux")]
    outputs, macs, hooks = {}, {}, []

    def record_output(name):
        return lambda module, inputs, output: outputs.__setitem__(name, output.shape)

    def record_macs(name):
        def hook(module, inputs, output):
            per_output = math.prod(module.weight.shape[1:])          # weights each output value reads
            pixels = output.shape[-1] * output.shape[-2] if isinstance(module, nn.Conv2d) else 1
            macs[name] = macs.get(name, 0) + _out(module) * per_output * pixels
        return hook

    for name, layer in layers + heads:
        hooks.append(layer.register_forward_hook(record_output(name)))
        for m in layer.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                hooks.append(m.register_forward_hook(record_macs(name)))
    try:                                         # the auxiliary heads run only in training mode
        run_with_heads(model, minigrad.Tensor(np.zeros(input_shape, dtype=next(model.parameters()).dtype)), bool(heads))
    finally:
        for h in hooks:
            h.remove()

    rows = []
    for name, layer in layers + heads:
        if isinstance(layer, (nn.Flatten, nn.ReLU)):
            continue
        kind, patch, depth, columns = _describe(layer)
        shape = outputs[name][1:]
        params, weights = _count(layer)
        if "auxiliary" in name:
            kind, patch = "auxiliary classifier", None
        rows.append({"name": name, "type": kind, "patch": patch,
                     "output": (*shape[1:], shape[0]) if len(shape) == 3 else tuple(shape), "depth": depth,
                     **columns, "params": params, "weights": weights, "multiply_adds": macs.get(name, 0)})
    trunk = [r for r in rows if r["type"] != "auxiliary classifier"]
    totals = [("total (inference)", trunk, sum(r["depth"] for r in trunk)),   # GoogLeNet: 22 layers deep
              ("total (training, with auxiliary heads)", list(rows), None)]
    for label, chosen, depth in totals:
        rows.append({"name": label, "type": "total", "patch": None, "output": None, "depth": depth,
                     **dict.fromkeys(COLUMNS), **{k: sum(r[k] for r in chosen)
                                                  for k in ("params", "weights", "multiply_adds")}})
    return rows


def paper_comparison(row):
    """(paper params K, paper ops M, agrees, explanation) for a GoogLeNet row in Table 1, else None.

    Agreement allows one unit in the last printed digit (the table rounds, and K is 1024)."""
    name = row["name"].removeprefix("inception_")          # the zoo's Caffe names: inception_3a
    if name not in PAPER_TABLE1:
        return None
    paper_params, paper_ops = PAPER_TABLE1[name]
    unit = 0.1 if paper_params < 10 else 1.0
    params_agree = abs(row["weights"] / 1024 - paper_params) <= unit
    ops_agree = abs(row["multiply_adds"] / 1e6 - paper_ops) <= 1.0
    paper_output = PAPER_OUTPUTS.get(name)
    other_grid = bool(row["output"] and paper_output and tuple(row["output"]) != paper_output)
    if other_grid and not ops_agree:                   # the zoo's GoogLeNet: floor pools, a smaller grid
        ops_agree = True
        grid = (f"the output is {'x'.join(map(str, row['output']))} where the paper's is "
                f"{'x'.join(map(str, paper_output))}: multiply-adds scale with the grid")
    else:
        grid = ""
    differing = " and ".join(w for w, ok in (("params", params_agree), ("ops", ops_agree)) if not ok)
    why = PAPER_EXPLANATIONS.get(name) or "; ".join(filter(None, [grid, (
        f"the printed {differing} disagree with the row's own filter counts "
        f"({row['weights']:,} weights, {row['multiply_adds']:,} multiply-adds)" if differing else "")]))
    return paper_params, paper_ops, params_agree and ops_agree and not grid, why


def _k(n):
    return f"{n / 1024:.1f}K" if n < 10 * 1024 else f"{n / 1024:.0f}K" if n < 10 * 1024 ** 2 else f"{n / 1024 ** 2:.1f}M"


def _m(n):
    return f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e6:.2f}M" if n else ""


def format_table(rows, paper=False):
    """Table 1's layout; params in K/M of 1024 (weights only, as the paper counts), ops in M multiply-adds."""
    header = ["name", "type", "patch size/stride", "output size", "depth", "#1x1", "#3x3 reduce", "#3x3",
              "#5x5 reduce", "#5x5", "pool proj", "params", "ops"]
    if paper:
        header += ["paper params", "paper ops", ""]
    lines, notes = [header], []
    for row in rows:
        cells = [row["name"], row["type"], row["patch"] or "",
                 "x".join(map(str, row["output"])) if row["output"] else "",
                 str(row["depth"]) if row["depth"] else "",
                 *[str(row[c]) if row[c] is not None else "" for c in COLUMNS],
                 _k(row["weights"]) if row["weights"] else "", _m(row["multiply_adds"])]
        if paper:
            found = paper_comparison(row)
            if found:
                paper_params, paper_ops, agrees, why = found
                mark = "" if agrees else f"differs [{len(notes) + 1}]"
                if not agrees:
                    notes.append(f"[{len(notes) + 1}] {row['name']}: {why}")
                cells += [f"{paper_params}K", f"{paper_ops}M", mark]
            else:
                cells += ["", "", ""]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)
    totals = [r for r in rows if r["type"] == "total"]
    text += "\n\n" + "\n".join(f"{r['name']}: {r['params']:,} parameters ({r['weights']:,} weights), "
                                f"{r['multiply_adds'] / 1e6:,.0f}M multiply-adds per image" for r in totals)
    if notes:
        text += "\n\n" + "\n".join(notes)
    return text


def main(argv=None):
    from minigrad import cli
    return cli.run("python -m models.summary", _main, argv)


def parse_args(argv):
    from minigrad import cli

    from .. import MODELS, memory, model_name

    parser = cli.Parser(prog="python -m models.summary", description="Per-layer table of a model "
                        "in the layout of Table 1 of 'Going Deeper with Convolutions'.")
    parser.add_argument("model", help=f"one of {', '.join(MODELS)}, or an ONNX file (FILE.onnx)")
    parser.add_argument("--paper", action="store_true", help="put the paper's printed values beside ours "
                        "(GoogLeNet rows) and flag the rows that differ")
    parser.add_argument("--input-size", type=cli.integer(1, 2**16), help="input height and width (default: the model's)")
    args = parser.parse_args(argv)
    if not args.model.endswith(".onnx"):
        args.model = model_name(args.model, alternatives=", or a .onnx file")
    if args.input_size and not args.model.endswith(".onnx"):
        try:
            memory.check_fits(args.model, 1, 1000, 3, args.input_size, f"--input-size {args.input_size}", training=False)
        except ValueError as error:
            raise cli.CommandError(str(error)) from None
    return args


def _main(argv):
    from minigrad import cli

    from .. import get_model

    args = parse_args(argv)
    if args.model.endswith(".onnx"):
        return _onnx_main(args)
    try:
        model = get_model(args.model, **({"input_size": args.input_size} if args.input_size else {}))
    except ValueError as error:
        raise cli.CommandError(str(error)) from None
    print(format_table(summary(model), paper=args.paper))
    notes = MODEL_NOTES.get(getattr(model, "name", ""), [])
    if notes:
        print("\n" + "\n".join(f"note: {note}" for note in notes))
    return 0


def _onnx_main(args):
    from minigrad import cli, onnx

    from .graph import onnx_summary
    try:
        model = onnx.load(args.model)
        rows = onnx_summary(model, args.input_size)
    except (onnx.OnnxError, ValueError) as error:
        raise cli.CommandError(str(error)) from None
    print(f"{args.model}: the ONNX graph {model.name!r}, opset {model.opset}, {len(model.nodes)} nodes; layers "
          "found from the graph's structure")
    print(format_table(rows, paper=args.paper))
    return 0
