"""python -m minigrad.explain: convolution and max-pooling worked out, number by number, on a geometry you choose.

    python -m minigrad.explain conv2d --input 1,2,5,5 --kernel 3 --stride 1 --padding 1
    python -m minigrad.explain max_pool2d --input 1,1,6,6 --kernel 3 --stride 2 --ceil-mode

conv2d prints the input and the weights, im2col's column matrix (one row per weight of a filter, one
column per output pixel), the weight matrix, their product and the output it is reshaped into, the
multiply-add count, and checks the result against the direct definition of convolution.  max_pool2d
prints every window with its maximum and where it was (the argmax), then where each output's gradient
goes.  Values are small integers (or --random normals) so that every product can be followed by hand.
It uses the NumPy reference kernels (kernels/reference.py), the definition the fast kernels are tested
against.
"""

from __future__ import annotations

import sys

import numpy as np

from kernels import reference as ref
from kernels.geometry import conv_out_size, pool_out_size

from . import cli
from .checks import as_pair, check_windows

MAX_PRINTED = 4000          # entries of the largest matrix printed: "explain" is for small geometries


class ExplainError(ValueError):
    """A geometry that cannot be explained (invalid, or too large to print)."""


def _ints(text, count, name):
    """count comma-separated integers; for a pair (count 2) one integer also does, as in the ops."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ExplainError(f"{name} must be {count} comma-separated integers, got {text!r}") from None
    if count == 2 and len(values) == 1:
        return values[0]
    if len(values) != count:
        raise ExplainError(f"{name} must be {count} comma-separated integers, got {text!r}")
    return values


def matrix(a, row_labels=None, column_labels=None, width=None):
    """A 2-D array as aligned text, with optional row and column labels."""
    cells = [[_number(v) for v in row] for row in a]
    width = width or max([len(c) for row in cells for c in row] + [len(c) for c in column_labels or []] + [1])
    pad = max((len(r) for r in row_labels or []), default=0)
    lines = []
    if column_labels:
        lines.append(" " * (pad + 2) + " ".join(c.rjust(width) for c in column_labels))
    for i, row in enumerate(cells):
        label = (row_labels[i].rjust(pad) + "  ") if row_labels else ""
        lines.append(label + " ".join(c.rjust(width) for c in row))
    return "\n".join(lines)


def _number(v):
    return f"{v:.3g}" if isinstance(v, (float, np.floating)) and not float(v).is_integer() else f"{v:g}"


def _planes(x, name):
    """Every (image, channel) plane of an NCHW array, labelled."""
    blocks = []
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            blocks.append(f"{name}[{n}, {c}]:\n" + matrix(x[n, c]))
    return "\n".join(blocks)


def _values(shape, random, seed, low=None):
    rng = np.random.default_rng(seed)
    if random:
        return np.round(rng.standard_normal(shape), 2)
    if low is None:
        return np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    return rng.integers(low, -low + 1, shape).astype(np.float64)


def direct_conv2d(x, w, stride, padding, bias=None):
    """The definition, one output at a time: y[n, o, oh, ow] = sum over c, i, j of
    w[o, c, i, j] * x_padded[n, c, oh*SH + i, ow*SW + j] (+ bias[o])."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    oh, ow = conv_out_size(h, kh, stride[0], padding[0]), conv_out_size(wd, kw, stride[1], padding[1])
    y = np.zeros((n, o, oh, ow))
    for b in range(n):
        for f in range(o):
            for r in range(oh):
                for s in range(ow):
                    patch = xp[b, :, r * stride[0]:r * stride[0] + kh, s * stride[1]:s * stride[1] + kw]
                    y[b, f, r, s] = (patch * w[f]).sum() + (0 if bias is None else bias[f])
    return y


def explain_conv2d(x_shape, out_channels, kernel, stride, padding, random=False, seed=0):
    """The whole worked example as text, and a dict of its figures (shapes, sizes, multiply-adds, the check)."""
    n, c, h, w = x_shape
    o = out_channels
    check_windows("conv2d", x_shape, kernel, stride, padding)
    oh, ow = conv_out_size(h, kernel[0], stride[0], padding[0]), conv_out_size(w, kernel[1], stride[1], padding[1])
    rows, columns = c * kernel[0] * kernel[1], n * oh * ow
    if rows * max(columns, o) > MAX_PRINTED or n * c * h * w > MAX_PRINTED:
        raise ExplainError(f"the column matrix would be {rows} x {columns}: too large to print; explain is for "
                           f"small geometries (at most {MAX_PRINTED} entries)")
    x = _values(x_shape, random, seed)
    weight = _values((o, c, *kernel), random, seed + 1, low=-1)
    cols = ref.im2col(x, kernel, stride, padding, (oh, ow))                  # (N, C, KH, KW, OH, OW)
    column_matrix = cols.transpose(1, 2, 3, 0, 4, 5).reshape(rows, columns)
    weight_matrix = weight.reshape(o, rows)
    product = weight_matrix @ column_matrix
    y = product.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)
    direct = direct_conv2d(x, weight, stride, padding)
    kernels_y = ref.conv2d_forward(x, weight, None, stride, padding)
    macs = n * o * oh * ow * rows
    row_labels = [f"c{ci} i{i} j{j}" for ci in range(c) for i in range(kernel[0]) for j in range(kernel[1])]
    column_labels = [f"{b},{r},{s}" for b in range(n) for r in range(oh) for s in range(ow)]
    text = [
        f"conv2d: input {x_shape} (N, C, H, W), {o} filter(s) of {c}x{kernel[0]}x{kernel[1]}, stride {stride}, "
        f"padding {padding}",
        "",
        _planes(x, "input"),
        "",
        _planes(weight, "weight"),
        "",
        f"output size: OH = (H + 2*PH - KH) // SH + 1 = ({h} + {2 * padding[0]} - {kernel[0]}) // {stride[0]} + 1 = {oh}, "
        f"OW = ({w} + {2 * padding[1]} - {kernel[1]}) // {stride[1]} + 1 = {ow}",
        "",
        f"im2col: the column matrix, {rows} x {columns} = (C*KH*KW) x (N*OH*OW). Row (c, i, j) holds the input "
        "pixel that kernel offset (i, j) of channel c touches at each output position; column (n, oh, ow) is "
        "the window of output pixel (oh, ow) of image n, flattened (0 where the window reaches into the padding):",
        matrix(column_matrix, row_labels, column_labels),
        "",
        f"weight matrix: {o} x {rows}, one row per filter, in the same (c, i, j) order:",
        matrix(weight_matrix, [f"filter {f}" for f in range(o)], row_labels),
        "",
        f"product: weight matrix @ column matrix = {o} x {columns}: each entry is one output pixel, "
        f"a dot product of {rows} pairs",
        matrix(product, [f"filter {f}" for f in range(o)], column_labels),
        "",
        f"reshaped to the output (N, O, OH, OW) = {y.shape}:",
        _planes(y, "output"),
        "",
        f"multiply-adds: N*O*OH*OW * C*KH*KW = {n}*{o}*{oh}*{ow} * {c}*{kernel[0]}*{kernel[1]} = {macs:,}",
        "",
        "col2im, im2col's transpose, is the backward pass: it adds every column entry back onto the pixel it "
        "came from; how many windows cover each input pixel:",
        _planes(ref.col2im(np.ones_like(cols), x_shape, stride, padding), "windows covering"),
        "",
    ]
    difference = float(np.abs(y - direct).max())
    same = all(np.allclose(a, direct, rtol=1e-12, atol=1e-12) for a in (y, kernels_y))   # summation order aside
    text.append(f"check: the direct definition y[n, o, oh, ow] = sum over c, i, j of w[o, c, i, j] * "
                f"x_padded[n, c, oh*SH + i, ow*SW + j] gives {'the same values' if same else 'DIFFERENT values'} "
                f"(largest difference {difference:g}; the kernel kernels.reference.conv2d_forward agrees too)")
    figures = {"output_size": (oh, ow), "column_matrix_shape": (rows, columns), "weight_matrix_shape": (o, rows),
               "multiply_adds": macs, "matches_definition": same, "input": x, "weight": weight,
               "columns": column_matrix, "output": y}
    return "\n".join(text), figures


def explain_max_pool2d(x_shape, kernel, stride, padding, ceil_mode, random=False, seed=0):
    n, c, h, w = x_shape
    check_windows("max_pool2d", x_shape, kernel, stride, padding, ceil_mode)
    oh, ow = (pool_out_size(h, kernel[0], stride[0], padding[0], ceil_mode),
              pool_out_size(w, kernel[1], stride[1], padding[1], ceil_mode))
    if n * c * h * w > MAX_PRINTED or n * c * oh * ow * kernel[0] * kernel[1] > MAX_PRINTED:
        raise ExplainError(f"{n * c * oh * ow} windows of {kernel[0]}x{kernel[1]}: too many to print; explain is "
                           "for small geometries")
    x = _values(x_shape, random, seed)
    if not random:                            # distinct values in a shuffled order, so that windows differ
        x = np.random.default_rng(seed).permutation(x.size).reshape(x_shape).astype(np.float64)
    y, argmax = ref.max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    text = [f"max_pool2d: input {x_shape}, kernel {kernel}, stride {stride}, padding {padding}, "
            f"ceil_mode {ceil_mode}: output {(n, c, oh, ow)}", "", _planes(x, "input"), ""]
    for b in range(n):
        for ch in range(c):
            for r in range(oh):
                for s in range(ow):
                    r0, c0 = r * stride[0] - padding[0], s * stride[1] - padding[1]
                    rows = range(max(r0, 0), min(r0 + kernel[0], h))
                    cols = range(max(c0, 0), min(c0 + kernel[1], w))
                    where = divmod(int(argmax[b, ch, r, s]), w)
                    text.append(f"output[{b}, {ch}, {r}, {s}]: window rows {rows.start}-{rows.stop - 1}, columns "
                                f"{cols.start}-{cols.stop - 1} -> max {_number(y[b, ch, r, s])} at input "
                                f"({where[0]}, {where[1]}), argmax {int(argmax[b, ch, r, s])}")
    grad = ref.max_pool2d_backward(np.ones_like(y), argmax, x_shape, kernel, stride, padding, ceil_mode)
    text += ["", "backward: each output's gradient goes to the one input pixel that won its window; with an "
             "upstream gradient of 1 everywhere, each input pixel receives the number of windows it won "
             "(0 for most):", _planes(grad, "grad_input"), "",
             f"{int((grad > 0).sum())} of {x.size} input pixels receive a gradient"]
    figures = {"output_size": (oh, ow), "winners": int((grad > 0).sum()), "input": x, "output": y, "argmax": argmax,
               "grad_input": grad}
    return "\n".join(text), figures


def main(argv=None):
    return cli.run("python -m minigrad.explain", _main, argv)


def parse_args(argv):
    """The options, and the geometry they give (args.x_shape, args.pairs), checked as conv2d and max_pool2d
    check theirs."""
    parser = cli.Parser(prog="python -m minigrad.explain", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="op", required=True)
    for op in ("conv2d", "max_pool2d"):
        p = sub.add_parser(op)
        p.add_argument("--input", default="1,2,5,5" if op == "conv2d" else "1,1,6,6", help="N,C,H,W")
        p.add_argument("--kernel", default="3", help="K or KH,KW")
        p.add_argument("--stride", default="1" if op == "conv2d" else "2", help="S or SH,SW")
        p.add_argument("--padding", default="1" if op == "conv2d" else "0", help="P or PH,PW")
        p.add_argument("--random", action="store_true", help="normal values instead of small integers")
        p.add_argument("--seed", type=cli.integer(0, 2**32 - 1), default=0)
        if op == "conv2d":
            p.add_argument("--out-channels", type=cli.integer(1, 10**6), default=1, help="number of filters (default 1)")
        else:
            p.add_argument("--ceil-mode", action="store_true", help="round the output size up (GoogLeNet's pools)")
    args = parser.parse_args(argv)
    try:
        args.x_shape = _ints(args.input, 4, "--input")
        if min(args.x_shape) < 1:
            raise ExplainError(f"--input sizes must be >= 1, got {args.input}")
        args.pairs = {name: as_pair(args.op, name, _ints(getattr(args, name), 2, f"--{name}"), minimum)
                      for name, minimum in (("kernel", 1), ("stride", 1), ("padding", 0))}
    except (ValueError, TypeError) as error:
        raise cli.CommandError(str(error)) from None
    return args


def _main(argv):
    args = parse_args(argv)
    pairs = args.pairs
    try:
        if args.op == "conv2d":
            text, _ = explain_conv2d(args.x_shape, args.out_channels, pairs["kernel"], pairs["stride"], pairs["padding"],
                                     args.random, args.seed)
        else:
            text, _ = explain_max_pool2d(args.x_shape, pairs["kernel"], pairs["stride"], pairs["padding"], args.ceil_mode,
                                         args.random, args.seed)
    except (ValueError, TypeError) as error:
        raise cli.CommandError(str(error)) from None
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
