"""python -m docs.build: regenerate every figure and every number of the walkthrough from the code.

The walkthrough (docs/walkthrough.md) is prose written by hand around blocks that this script writes:

    <!-- begin generated: NAME --> ... <!-- end generated: NAME -->   computed, the same on every machine
    <!-- begin measured: NAME --> ... <!-- end measured: NAME -->     timed on the machine that builds

A test (tests/test_docs.py) recomputes the generated blocks and checks that the walkthrough holds exactly
what the code computes now.  Figures go to docs/figures/.

    python -m docs.build                  # everything (the measured blocks take about two minutes: a profile,
                                          # a small network trained, GoogLeNet and its naive twin profiled)
    python -m docs.build --no-measure     # the deterministic blocks and figures only
"""

from __future__ import annotations

import html
import inspect
import re
import sys
from pathlib import Path

# isort: off
import benchmarks  # noqa: F401  (first: the measured blocks time OpenBLAS too; its spin setting, see there)
# isort: on
import numpy as np

import models
from kernels import reference as ref
from kernels.cuda.loader import source as cuda_source
from minigrad import cli
from minigrad.explain import explain_conv2d, explain_max_pool2d, matrix
from models.googlenet import INCEPTION_TABLE
from models.summary import format_table, summary

DOCS = Path(__file__).parent
WALKTHROUGH = DOCS / "walkthrough.md"
FIGURES = DOCS / "figures"

# The worked examples (the same as `python -m minigrad.explain conv2d` and `... max_pool2d --ceil-mode`).
CONV_EXAMPLE = dict(x_shape=(1, 2, 5, 5), out_channels=1, kernel=(3, 3), stride=(1, 1), padding=(1, 1))
POOL_EXAMPLE = dict(x_shape=(1, 1, 6, 6), kernel=(3, 3), stride=(2, 2), padding=(0, 0), ceil_mode=True)
HIGHLIGHT = (1, 2)                        # the output pixel whose window the im2col figure follows


def conv_example():
    return explain_conv2d(**CONV_EXAMPLE)[1]


def pool_example():
    return explain_max_pool2d(**POOL_EXAMPLE)[1]


# ---- generated blocks --------------------------------------------------------------------------

def block_im2col():
    f = conv_example()
    n, c, h, w = CONV_EXAMPLE["x_shape"]
    (kh, kw), (ph, pw), (sh, sw) = CONV_EXAMPLE["kernel"], CONV_EXAMPLE["padding"], CONV_EXAMPLE["stride"]
    oh, ow = f["output_size"]
    rows, columns = f["column_matrix_shape"]
    column = HIGHLIGHT[0] * ow + HIGHLIGHT[1]
    return "\n".join([
        f"- input: N={n} image, C={c} channels of {h}x{w}; one filter of {c}x{kh}x{kw}; stride {sh}, padding {ph}",
        f"- output size: ({h} + 2*{ph} - {kh}) // {sh} + 1 = {oh} rows, ({w} + 2*{pw} - {kw}) // {sw} + 1 = {ow} columns",
        f"- column matrix: (C*KH*KW) x (N*OH*OW) = {rows} x {columns}; weight matrix: {f['weight_matrix_shape'][0]} x {rows}",
        f"- the product is {f['weight_matrix_shape'][0]} x {columns}: one dot product of {rows} pairs per output pixel",
        f"- multiply-adds: N*O*OH*OW * C*KH*KW = {f['multiply_adds']:,}",
        f"- column {column} (output pixel {HIGHLIGHT}) holds the window "
        f"{f['columns'][:, column].astype(int).tolist()}, and the output there is "
        f"{f['output'][0, 0, HIGHLIGHT[0], HIGHLIGHT[1]]:g}",
        f"- checked against the direct definition of convolution: "
        f"{'the same values' if f['matches_definition'] else 'DIFFERENT values'}",
    ])


def coverage(x_shape, kernel, stride, padding):
    """How many windows read each input pixel: col2im of columns that are all 1."""
    out = tuple((x_shape[2 + d] + 2 * padding[d] - kernel[d]) // stride[d] + 1 for d in range(2))
    cols = np.ones((*x_shape[:2], *kernel, *out))
    return ref.col2im(cols, x_shape, stride, padding)[0, 0].astype(int)


COVERAGE_EXAMPLES = [("5x5, 3x3 kernel, stride 1, padding 1", (1, 1, 5, 5), (3, 3), (1, 1), (1, 1)),
                     ("7x7, 3x3 kernel, stride 2, no padding", (1, 1, 7, 7), (3, 3), (2, 2), (0, 0))]


def block_col2im():
    parts = []
    for label, *geometry in COVERAGE_EXAMPLES:
        parts.append(f"{label}: windows covering each input pixel\n" + matrix(coverage(*geometry)))
    return "```\n" + "\n\n".join(parts) + "\n```"


def block_max_pool():
    text, f = explain_max_pool2d(**POOL_EXAMPLE)
    windows = [line for line in text.splitlines() if line.startswith("output[")]
    x = f["input"][0, 0].astype(int)
    oh, ow = f["output_size"]
    return "\n".join([
        "```", "input (distinct values, so that every window has one winner):", matrix(x), "",
        *windows, "", "gradient reaching each input pixel when every output's gradient is 1:",
        matrix(f["grad_input"][0, 0].astype(int)), "```", "",
        f"The {oh * ow} windows of 3x3 with stride 2 overlap on rows and columns 2 and 4; {f['winners']} of 36 input "
        "pixels win a window and receive a gradient, and a pixel that wins two overlapping windows receives both."])


def _inception_branches(naive):
    """[(branch, [(layer, in, out, k)], multiply-adds per image)] for 3a at 28x28 (Table 1's first row)."""
    _, n1, n3r, n3, n5r, n5, proj = next(r for r in INCEPTION_TABLE if r[0] == "3a")
    c, pixels = 192, 28 * 28
    if naive:
        layers = [("1x1", [("1x1 conv", c, n1, 1)]), ("3x3", [("3x3 conv", c, n3, 3)]),
                  ("5x5", [("5x5 conv", c, n5, 5)]), ("pool", [("3x3 max-pool", c, c, 0)])]
    else:
        layers = [("1x1", [("1x1 conv", c, n1, 1)]), ("3x3", [("1x1 reduce", c, n3r, 1), ("3x3 conv", n3r, n3, 3)]),
                  ("5x5", [("1x1 reduce", c, n5r, 1), ("5x5 conv", n5r, n5, 5)]),
                  ("pool", [("3x3 max-pool", c, c, 0), ("1x1 proj", c, proj, 1)])]
    return [(name, chain, sum(pixels * i * o * k * k for _, i, o, k in chain if k)) for name, chain in layers]


def block_inception():
    _, n1, n3r, n3, n5r, n5, proj = next(r for r in INCEPTION_TABLE if r[0] == "3a")
    direct = 28 * 28 * 192 * n5 * 5 * 5
    reduced = 28 * 28 * (192 * n5r + n5r * n5 * 5 * 5)
    naive_module = models.InceptionNaive(192, n1, n3, n5)
    reduced_module = models.Inception(192, n1, n3r, n3, n5r, n5, proj)
    rows = {name: summary(m, (1, 192, 28, 28))[0] for name, m in (("naive", naive_module), ("reduced", reduced_module))}
    lines = [
        f"- the 5x5 path of 3a, directly: 28*28 pixels * 192 channels * {n5} filters * 5*5 = {direct:,} multiply-adds "
        f"({direct / 1e6:.1f}M)",
        f"- with a 1x1 reduction to {n5r} channels first: 28*28 * (192*{n5r} + {n5r}*{n5}*5*5) = {reduced:,} "
        f"({reduced / 1e6:.1f}M): {direct / reduced:.1f}x fewer",
        "", "| branch | naive: layers | M mult-adds | reduced: layers | M mult-adds |", "| --- | --- | ---: | --- | ---: |"]
    for (name, chain_n, macs_n), (_, chain_r, macs_r) in zip(_inception_branches(True), _inception_branches(False)):
        describe = lambda chain: " -> ".join(f"{layer} {i}->{o}" if layer.endswith(("conv", "reduce", "proj"))
                                            else layer for layer, i, o, _ in chain)
        lines.append(f"| {name} | {describe(chain_n)} | {macs_n / 1e6:.1f} | {describe(chain_r)} | {macs_r / 1e6:.1f} |")
    n, r = rows["naive"], rows["reduced"]
    lines += ["", f"- whole module: naive {n['params']:,} parameters, {n['multiply_adds'] / 1e6:.1f}M multiply-adds, "
              f"{n['output'][2]} output channels; reduced {r['params']:,} parameters, {r['multiply_adds'] / 1e6:.1f}M "
              f"multiply-adds, {r['output'][2]} output channels: {n['multiply_adds'] / r['multiply_adds']:.1f}x fewer "
              "multiply-adds",
              f"- the naive module's pool branch passes all 192 input channels through, so each naive module widens "
              f"the next one's input: {n['output'][2]} here instead of {r['output'][2]}"]
    return "\n".join(lines)


def block_table1():
    return "```\n" + format_table(summary(models.googlenet()), paper=True) + "\n```"


def _source_table(pieces):
    """An HTML table of code side by side: [(heading, code)]."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _ in pieces)
    cells = "".join(f'<td valign="top"><pre>{html.escape(code.rstrip())}</pre></td>' for _, code in pieces)
    return f"<table>\n<tr>{head}</tr>\n<tr>{cells}</tr>\n</table>"


def cuda_kernel(module, name):
    """One KERNEL(name)(...) { ... } definition from a .cu source."""
    text = cuda_source(module)
    start = text.index(f"KERNEL({name})")
    start = text.rfind("\n\n", 0, start) + 2                 # with the comment just above it
    end = text.index("\n}\n", start) + 2
    return text[start:end]


def _numba_source(*functions):
    """The Python source of Numba kernels (a kernel, then the inlined helpers it calls)."""
    return "\n\n".join(inspect.getsource(getattr(f, "py_func", f)) for f in functions)


def block_kernels_im2col():
    from kernels.cpu.conv import columns
    return _source_table([("reference (NumPy): kernels/reference.py", inspect.getsource(ref._windows)),
                          ("Numba (CPU): kernels/cpu/conv/columns.py",
                           _numba_source(columns.im2col_rows, columns.column_row)),
                          ("CUDA (GPU): kernels/cuda/conv.cu", cuda_kernel("conv", "im2col"))])


def block_kernels_max_pool():
    from kernels.cpu import pool
    numba = _numba_source(pool._max_pool_forward, pool._fold_nine, pool._fold_three, pool._fold_pixel,
                          pool._beats)
    return _source_table([("reference (NumPy)", inspect.getsource(ref.max_pool2d_forward)),
                          ("Numba (CPU): kernels/cpu/pool.py", numba),
                          ("CUDA (GPU): kernels/cuda/pool.cu", cuda_kernel("pool", "max_pool2d_forward"))])


def block_module_graph():
    """The autograd graph of one reduced Inception module (3a's widths, a 4x4 grid), as minigrad.viz writes it."""
    import minigrad
    from minigrad import viz
    module = models.Inception(192, 64, 96, 128, 16, 32, 32)
    y = module(minigrad.zeros(1, 192, 4, 4, requires_grad=True))
    return "```dot\n" + viz.graph(y, module, title="Inception 3a, 1x1-reduced") + "```"


GENERATED = {"im2col": block_im2col, "col2im": block_col2im, "max-pool": block_max_pool, "inception": block_inception,
             "table1": block_table1, "kernels-im2col": block_kernels_im2col, "kernels-max-pool": block_kernels_max_pool,
             "module-graph": block_module_graph}


def generated_blocks():
    return {name: make() for name, make in GENERATED.items()}


# ---- the measured blocks: a training step's profile, inside a trained network, the roofline ----------------

def profile_rows(batch=8, steps=3):
    """benchmarks.profile's rows for GoogLeNet (each op's time the best of `steps` profiled steps)."""
    from benchmarks.profile import run

    return run("googlenet", batch, steps=steps)[0]


def measure_inside():
    """The small GoogLeNet trained on the digits (benchmarks.accuracy's recipe, 8 epochs, seed 0), looked into
    by models.inspect on the first held-out digit: its figures (docs/figures/inside_*.png) and a block."""
    import minigrad
    from benchmarks.accuracy import train
    from minigrad import data
    from models.inspect import _Net, inspect
    train_set, held_out = data.load_dataset("digits").split(0.2, seed=0)
    accuracy, seconds, _, model = train("reduced", train_set, held_out, seed=0, epochs=8)
    net = _Net(model, (1, 32, 32), "mini-googlenet trained on the digits", False, "plain")
    digit = held_out.x[:1]
    FIGURES.mkdir(exist_ok=True)
    sparsity, before, after, _, channels = inspect(net, digit, "3b", str(FIGURES), f"held-out digit ({held_out.y[0]})",
                                                   prefix="inside_")
    for unused in ("inside_report.md", "inside_filters.png"):   # the block carries the numbers; 3x3 grey filters
        (FIGURES / unused).unlink()
    minigrad.manual_seed(0)
    untrained = _Net(models.get_model("mini-googlenet", num_classes=10, in_channels=1), (1, 32, 32), "", True, "plain")
    random_sparsity, random_before, random_after = _inside_numbers(untrained, digit)
    return (f"Trained for 8 epochs ({seconds:.0f} s here), held-out accuracy {accuracy:.1%}. On the held-out digit: "
            f"{sparsity:.0%} of the activations after the ReLUs are zero (the same network at its random "
            f"initialisation: {random_sparsity:.0%}); in module 3b's {channels} channels, neighbouring channels "
            f"correlate at |r| = {before:.2f} in the network's order and {after:.2f} once ordered by their "
            f"correlations ({after / before:.1f}x; at random weights {random_before:.2f} and {random_after:.2f}).")


def _inside_numbers(net, x):
    from models.inspect import correlation, neighbour_correlation, spectral_order
    _, branches, sparsity = net.run(x, "3b")
    corr, _ = correlation(np.concatenate(list(branches.values())))
    order = spectral_order(corr)
    return (float(np.mean(list(sparsity.values()))), neighbour_correlation(corr, np.arange(len(corr))),
            neighbour_correlation(corr, order))


def measure_roofline(batch=8):
    """benchmarks.roofline for GoogLeNet and its naive twin: the figure, and the module summary as a block."""
    from benchmarks.profile import run
    from benchmarks.roofline import NAIVE, module_summary, plot, points, roofs
    gemm, bandwidth = roofs()
    found = points(run("googlenet", batch, steps=2)[0], "reduced")
    found += [p for p in points(run(NAIVE["googlenet"], batch, steps=2)[0], "naive") if p["module"]]
    FIGURES.mkdir(exist_ok=True)
    plot(found, gemm, bandwidth, f"GoogLeNet training step, batch {batch}: convolutions and pools",
         FIGURES / "roofline.png")
    lines = [f"Roofs measured in the same run: GEMM {gemm:.0f} GFLOP/s, copy {bandwidth:.1f} GB/s.", "",
             "| module | naive / reduced multiply-adds | naive / reduced time |", "| --- | ---: | ---: |"]
    lines += [f"| {m} | {w:.1f}x | {t:.1f}x |" for m, w, t in module_summary(found)]
    return "\n".join(lines)


def block_profile(rows, batch=8):
    from benchmarks.timing import machine_header
    by_op = {}
    for r in rows:
        f, b = by_op.get(r["op"], (0.0, 0.0))
        by_op[r["op"]] = (f + r["forward_s"], b + r["backward_s"])
    total = sum(f + b for f, b in by_op.values())
    lines = ["```", machine_header(), f"googlenet, float32, batch {batch}, one training step (each op: the best of "
             "3 profiled steps)", "```", "",
             "| op | forward ms | backward ms | share |", "| --- | ---: | ---: | ---: |"]
    for op, (f, b) in sorted(by_op.items(), key=lambda kv: -sum(kv[1])):
        if f + b >= 0.0005:
            lines.append(f"| {op} | {f * 1e3:.1f} | {b * 1e3:.1f} | {(f + b) / total:.1%} |")
    lines += ["", "| slowest layers | op | output | forward ms | backward ms | GFLOP/s |",
              "| --- | --- | --- | ---: | ---: | ---: |"]
    for r in rows[:8]:
        rate = f"{r['gflops']:.0f}" if r["gflops"] else ""
        lines.append(f"| {r['layer']} | {r['op']} | {'x'.join(map(str, r['shape']))} | {r['forward_s'] * 1e3:.1f} | "
                     f"{r['backward_s'] * 1e3:.1f} | {rate} |")
    return "\n".join(lines)


# ---- figures ----------------------------------------------------------------------------------

def _grid(ax, values, title, highlight=None, cmap="Blues", fmt="{:g}", fontsize=8, pad_border=0):
    """An annotated grid of numbers; `highlight` ((r0, c0), (r1, c1)) outlined in red; a `pad_border` of
    padding cells drawn grey."""
    import matplotlib.patches as patches

    values = np.asarray(values, dtype=float)
    ax.imshow(np.where(np.isnan(values), 0, values), cmap=cmap, alpha=0.35, aspect="equal")
    for (i, j), v in np.ndenumerate(values):
        inside = pad_border <= i < values.shape[0] - pad_border and pad_border <= j < values.shape[1] - pad_border
        ax.text(j, i, fmt.format(v) if inside else "0", ha="center", va="center", fontsize=fontsize,
                color="black" if inside else "0.6")
    if highlight is not None:
        (r0, c0), (r1, c1) = highlight
        ax.add_patch(patches.Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, edgecolor="crimson",
                                       linewidth=2))
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def figure_im2col(plt):
    f = conv_example()
    x, c = f["input"][0], CONV_EXAMPLE["x_shape"][1]
    oh, ow = f["output_size"]
    column = HIGHLIGHT[0] * ow + HIGHLIGHT[1]
    fig = plt.figure(figsize=(16, 7.5))
    grid = fig.add_gridspec(2, 6, width_ratios=[1, 1, 4.2, 0.25, 0.25, 1], height_ratios=[1, 1])
    window = ((HIGHLIGHT[0], HIGHLIGHT[1]), (HIGHLIGHT[0] + 3, HIGHLIGHT[1] + 3))   # in padded coordinates
    for ch in range(c):
        padded = np.pad(x[ch].astype(float), 1)
        _grid(fig.add_subplot(grid[0, ch]), padded, f"input channel {ch} (padded)", window, pad_border=1)
    ax = fig.add_subplot(grid[:, 2])
    _grid(ax, f["columns"], f"im2col: column matrix {f['columns'].shape[0]} x {f['columns'].shape[1]}\n"
          f"(rows: channel, kernel row, kernel column; columns: output pixels)", ((0, column), (18, column + 1)),
          cmap="Greens", fontsize=6)
    ax = fig.add_subplot(grid[:, 3])
    _grid(ax, f["weight"].reshape(-1, 1), "weights", cmap="Oranges", fontsize=7)
    ax = fig.add_subplot(grid[:, 4])
    _grid(ax, f["columns"][:, column:column + 1], "its\ncolumn", cmap="Greens", fontsize=7)
    ax = fig.add_subplot(grid[0, 5])
    _grid(ax, f["output"][0, 0], "output = weights . column\nfor every column",
          ((HIGHLIGHT[0], HIGHLIGHT[1]), (HIGHLIGHT[0] + 1, HIGHLIGHT[1] + 1)), cmap="Purples")
    ax = fig.add_subplot(grid[1, :2])
    ax.axis("off")
    ax.text(0, 0.5, f"The window of output pixel {HIGHLIGHT} (red) in both\nchannels becomes one column of the "
            f"matrix.\nOne matrix product, weights ({1} x {f['columns'].shape[0]})\ntimes columns ({f['columns'].shape[0]} "
            f"x {f['columns'].shape[1]}), computes every\noutput pixel: {f['multiply_adds']:,} multiply-adds.",
            fontsize=10, va="center")
    fig.suptitle("Convolution as im2col + one matrix product (python -m minigrad.explain conv2d)", fontsize=12)
    return fig


def figure_col2im(plt):
    fig, axes = plt.subplots(1, len(COVERAGE_EXAMPLES), figsize=(9, 4.2))
    for ax, (label, *geometry) in zip(axes, COVERAGE_EXAMPLES):
        _grid(ax, coverage(*geometry), label, cmap="Reds", fontsize=10)
    fig.suptitle("col2im: each input pixel receives the sum over the windows that read it\n"
                 "(here, how many windows that is)", fontsize=11)
    fig.tight_layout()
    return fig


def figure_max_pool(plt):
    import matplotlib.patches as patches
    f = pool_example()
    x = f["input"][0, 0]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    _grid(axes[0], x, "input 6x6, windows 3x3 stride 2 (ceil mode)", fontsize=10)
    colors = plt.get_cmap("tab10")
    argmax = f["argmax"][0, 0]
    oh, ow = f["output_size"]
    for r in range(oh):
        for s in range(ow):
            color = colors(r * ow + s)
            r0, c0 = 2 * r, 2 * s
            axes[0].add_patch(patches.Rectangle((c0 - 0.45 + 0.05 * s, r0 - 0.45 + 0.05 * r), min(3, 6 - c0) - 0.1,
                                                min(3, 6 - r0) - 0.1, fill=False, edgecolor=color, linewidth=1.5))
            wr, wc = divmod(int(argmax[r, s]), 6)
            axes[0].add_patch(patches.Circle((wc, wr), 0.38, fill=False, edgecolor=color, linewidth=2))
    _grid(axes[1], f["output"][0, 0], "output: each window's maximum\n(argmax: where it was, circled)", cmap="Purples",
          fontsize=11)
    _grid(axes[2], f["grad_input"][0, 0], "backward: gradient 1 from every output\ngoes to its window's winner",
          cmap="Reds", fontsize=11)
    fig.suptitle("Max-pooling with argmax, and where the gradient goes", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig


def figure_inception(plt):
    import matplotlib.patches as patches
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5))
    for ax, naive in zip(axes, (True, False)):
        branches = _inception_branches(naive)
        ax.set_xlim(0, 4)
        ax.set_ylim(0, 5)
        ax.axis("off")

        def box(x, y, text, color):
            ax.add_patch(patches.FancyBboxPatch((x - 0.45, y - 0.36), 0.9, 0.72, boxstyle="round,pad=0.02",
                                                facecolor=color, edgecolor="0.3", zorder=3))    # above the arrows
            ax.text(x, y, text, ha="center", va="center", fontsize=8.5, zorder=4)

        def arrow(x0, y0, x1, y1):
            ax.annotate("", (x1, y1 + 0.38), (x0, y0 - 0.38), arrowprops=dict(arrowstyle="->", color="0.3"))

        box(2, 4.5, "previous layer\n28x28x192", "0.92")
        out = 0
        lowest = 3.4 - 1.2 * (max(len(chain) for _, chain, _ in branches) - 1)      # the deepest branch's last row
        for i, (_, chain, _) in enumerate(branches):
            x, y = 0.5 + i, 3.4
            arrow(2, 4.5, x, y)
            for layer, c_in, c_out, k in chain:
                color = "#cfe3f7" if "max" in layer else "#fde0c5" if "reduce" in layer or "proj" in layer else "#d8efd2"
                own = 28 * 28 * c_in * c_out * k * k          # this layer's multiply-adds per image
                label = (f"{layer}\n{c_in}->{c_out}\n{own / 1e6:.1f}M mult-adds" if k
                         else f"{layer}\n{c_out} channels\nno mult-adds")
                box(x, y, label, color)
                if (layer, c_in, c_out, k) != chain[-1]:
                    arrow(x, y, x, y - 1.2)
                    y -= 1.2
            out += chain[-1][2]
            if y > lowest:             # a shorter branch runs down its own column first, clear of its neighbours' boxes
                ax.plot([x, x], [y - 0.38, lowest - 0.38], color="0.3", lw=1)
                y = lowest
            arrow(x, y, 2, 0.55)
        box(2, 0.55, f"concatenate\n28x28x{out}", "0.92")
        total = sum(m for _, _, m in branches)
        ax.set_title(f"{'naive (Figure 2a)' if naive else 'with 1x1 reductions (Figure 2b)'}: "
                     f"{total / 1e6:.0f}M multiply-adds per image", fontsize=11)
    fig.suptitle("Inception 3a, naive vs reduced (channel counts from Table 1)", fontsize=12)
    return fig


def figure_profile(plt, rows):
    by_op = {}
    for r in rows:
        f, b = by_op.get(r["op"], (0.0, 0.0))
        by_op[r["op"]] = (f + r["forward_s"], b + r["backward_s"])
    ops = [op for op, v in sorted(by_op.items(), key=lambda kv: sum(kv[1])) if sum(v) >= 0.0005]
    top = rows[:12][::-1]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    for ax, labels, values in ((axes[0], ops, [by_op[o] for o in ops]),
                               (axes[1], [f"{r['layer']} ({r['op']})" for r in top],
                                [(r["forward_s"], r["backward_s"]) for r in top])):
        forward = [v[0] * 1e3 for v in values]
        backward = [v[1] * 1e3 for v in values]
        ax.barh(labels, forward, label="forward", color="#4c72b0")
        ax.barh(labels, backward, left=forward, label="backward", color="#dd8452")
        ax.set_xlabel("ms")
        ax.legend()
        ax.tick_params(axis="y", labelsize=8)
    axes[0].set_title("a GoogLeNet training step by op (batch 8)")
    axes[1].set_title("the 12 slowest layers")
    fig.tight_layout()
    return fig


# ---- writing ----------------------------------------------------------------------------------

_BLOCK = re.compile(r"(<!-- begin (generated|measured): ([\w-]+) -->\n)(.*?)(<!-- end \2: \3 -->)", re.S)


def read_blocks(text):
    """{(kind, name): content} of the walkthrough's blocks."""
    return {(m.group(2), m.group(3)): m.group(4).removesuffix("\n") for m in _BLOCK.finditer(text)}


def fill(text, blocks):
    """The walkthrough with each named block's content replaced; every block must already be in it."""
    missing = [key for key in blocks if key not in read_blocks(text)]
    if missing:
        raise ValueError(f"walkthrough.md lacks the blocks {missing}")

    def replace(m):
        content = blocks.get((m.group(2), m.group(3)))
        return m.group(0) if content is None else m.group(1) + content + "\n" + m.group(5)
    return _BLOCK.sub(replace, text)


def main(argv=None):
    return cli.run("python -m docs.build", _main, argv)


def parse_args(argv):
    parser = cli.Parser(prog="python -m docs.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-measure", action="store_true", help="skip the measured blocks and their figures (profile, "
                        "inside a trained network, roofline)")
    parser.add_argument("--no-figures", action="store_true", help="update the text only")
    return parser.parse_args(argv)


def _main(argv):
    args = parse_args(argv)
    blocks = {("generated", name): text for name, text in generated_blocks().items()}
    rows = None if args.no_measure else profile_rows()
    if rows is not None:
        blocks[("measured", "profile")] = block_profile(rows)
        blocks[("measured", "inside")] = measure_inside()
        blocks[("measured", "roofline")] = measure_roofline()
    WALKTHROUGH.write_text(fill(WALKTHROUGH.read_text(), blocks))
    written = [WALKTHROUGH]
    if not args.no_figures:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        FIGURES.mkdir(exist_ok=True)
        figures = {"im2col": figure_im2col, "col2im": figure_col2im, "max_pool": figure_max_pool,
                   "inception_3a": figure_inception}
        for name, draw in figures.items():
            fig = draw(plt)
            fig.savefig(FIGURES / f"{name}.png", dpi=100)
            plt.close(fig)
            written.append(FIGURES / f"{name}.png")
        if rows is not None:
            fig = figure_profile(plt, rows)
            fig.savefig(FIGURES / "profile.png", dpi=100)
            plt.close(fig)
            written.append(FIGURES / "profile.png")
    print("written: " + ", ".join(str(p.relative_to(DOCS.parent)) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
