"""python -m benchmarks.ab REV: this checkout's CPU convolution kernels against another revision's, in
one process, their calls interleaved.

On this shared machine whole processes timed one after the other drift by tens of percent (BENCHMARKS.md):
two runs of the same comparison can disagree on the sign of a 5% change.  Here both versions are loaded
into one process: the revision's `kernels/` package is extracted with `git archive` into a package of
its own (the kernels import one another only relatively), and each pair of calls, old and new in turn
(which goes first alternates), gives one ratio; the median ratio over the pairs is the result.  A
slow phase of the machine falls on both calls of a pair.  Numba compiles the revision's kernels on the
first run (into NUMBA_CACHE_DIR like any kernel) and reuses them after.

Each layer is a float32 convolution with ReLU, channels-last, stride 1, padding k // 2 (GoogLeNet's):
`C,O,K,SIDE` (input channels, output channels, kernel size, image side), at batch --batch.  Each version
gets the filters stored as its nn.Conv2d stores them: as their product's matrix (KH, KW, C, O) for kernels
that read them so (those with conv.filter_matrix, or conv._filter_matrix before it), else contiguous
(O, C, KH, KW).
"""

from __future__ import annotations

import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

import kernels.cpu as current
from benchmarks.timing import machine_header, paired
from minigrad import cli

# 3a's 3x3 and 5x5, 4c's 3x3, 5b's 3x3, 5x5 and widest 1x1: one layer of each kind and size.
DEFAULT_LAYERS = "96,128,3,28;16,32,5,28;128,256,3,14;192,384,3,7;48,128,5,7;832,384,1,7"


def load_revision(rev, root=None):
    """The revision's kernels.cpu as a module of its own: its `kernels/` tree extracted (once per
    commit) under the temporary directory, in a package named after the commit."""
    root = Path(root or Path(__file__).resolve().parent.parent)
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                             capture_output=True, text=True, check=True).stdout.strip()
        archive = subprocess.run(["git", "-C", str(root), "archive", sha, "kernels"], capture_output=True,
                                 check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise ValueError(f"benchmarks.ab: cannot read revision {rev!r} from the git repository at {root}") from e
    package = f"minigrad_ab_{sha[:12]}"
    base = Path(tempfile.gettempdir()) / package
    if not (base / package / "kernels").is_dir():
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(base / package, filter="data")
        (base / package / "__init__.py").write_text("")
    if str(base) not in sys.path:
        sys.path.insert(0, str(base))
    return importlib.import_module(f"{package}.kernels.cpu")


def parse_layers(text):
    """'C,O,K,SIDE;...' -> [(c, o, k, side)]; ValueError naming the bad layer."""
    layers = []
    for spec in filter(None, text.split(";")):
        try:
            values = tuple(int(v) for v in spec.split(","))
        except ValueError:
            values = ()
        if len(values) != 4 or min(values) < 1:
            raise ValueError(f"--layers: each layer is C,O,K,SIDE (positive integers); got {spec!r}")
        layers.append(values)
    if not layers:
        raise ValueError("--layers: no layer given")
    return layers


def _filters_as_stored(backend, w):
    """w stored as the backend's engine stores a convolution's filters (see the module's docstring)."""
    from minigrad.nn import stored_filters

    conv = importlib.import_module(f"{backend.__name__}.conv")
    return stored_filters(w) if hasattr(conv, "filter_matrix") or hasattr(conv, "_filter_matrix") else w


def layer_arrays(c, o, k, side, batch):
    """(x, w, b, g, padding) of one layer: channels-last input and output gradient, (O, C, K, K) filters, zero
    biases, padding k // 2, float32, drawn from seed 0."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, side, side, c), dtype=np.float32).transpose(0, 3, 1, 2)
    w = rng.standard_normal((o, c, k, k), dtype=np.float32)
    g = rng.standard_normal((batch, side, side, o), dtype=np.float32).transpose(0, 3, 1, 2)
    return x, w, np.zeros(o, np.float32), g, (k // 2, k // 2)


def layer_name(c, o, k, side):
    return f"{k}x{k} {c}->{o} at {side}x{side}"


def compare(old, layers, batch, pairs, passes=("forward", "backward")):
    """Rows (layer, pass, ratio, new ms, old ms) for each layer and pass: the median ratio and the fastest
    times."""
    rows = []
    for c, o, k, side in layers:
        x, w, b, g, pad = layer_arrays(c, o, k, side, batch)
        stored = {m: _filters_as_stored(m, w) for m in (current, old)}
        calls = {"forward": lambda m: (lambda: m.conv2d_forward(x, stored[m], b, (1, 1), pad, True)),
                 "backward": lambda m: (lambda: m.conv2d_backward(x, stored[m], g, (1, 1), pad, True, g))}
        for name in passes:
            ratios, t_new, t_old = paired(calls[name](current), calls[name](old), pairs)
            rows.append((layer_name(c, o, k, side), name, statistics.median(ratios), min(t_new) * 1e3,
                         min(t_old) * 1e3))
    return rows


def main(argv=None):
    return cli.run("python -m benchmarks.ab", _main, argv)


def parse_args(argv):
    """The options, and the layers they name, checked (the revision is read by _main)."""
    parser = cli.Parser(prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the git revision to compare against (a commit, branch or tag)")
    parser.add_argument("--layers", default=DEFAULT_LAYERS, help=f"C,O,K,SIDE;... (default {DEFAULT_LAYERS})")
    parser.add_argument("--batch", type=cli.integer(1, 1024), default=8)
    parser.add_argument("--pairs", type=cli.integer(1, 10**5), default=41,
                        help="interleaved pairs per layer and pass (default 41)")
    args = parser.parse_args(argv)
    try:
        args.layers = parse_layers(args.layers)
    except ValueError as e:
        raise cli.CommandError(str(e)) from None
    for c, o, k, side in args.layers:          # the input, the output and the columns of a layer, per image, twice
        cli.check_memory(f"--batch {args.batch} with layer {c},{o},{k},{side}",
                         2 * 4 * args.batch * side * side * (c + o + c * k * k))
    return args


def _main(argv):
    args = parse_args(argv)
    layers = args.layers
    try:
        old = load_revision(args.rev)
    except ValueError as e:
        raise cli.CommandError(str(e)) from None
    print(machine_header())
    print(f"this checkout against {args.rev}, float32, batch {args.batch}, {args.pairs} interleaved pairs; "
          "ratio: median of new/old per pair (< 1: this checkout faster)\n")
    print("| layer | pass | new / old | new ms (fastest) | old ms (fastest) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for layer, name, ratio, t_new, t_old in compare(old, layers, args.batch, args.pairs):
        print(f"| {layer} | {name} | {ratio:.3f} | {t_new:.3f} | {t_old:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
