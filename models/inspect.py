"""python -m models.inspect: what a network does to one photo, inside.

    python -m models.inspect --model googlenet --image chelsea --out inspect-3a --layer 3a
    python -m models.inspect --model runs/digits/checkpoint.npz --image seven.png --out inspect
    python -m models.inspect --model googlenet-12.onnx --image astronaut --out zoo --layer inception_4a

Writes to --out: the first convolution's filters as an image grid (filters.png); each branch's feature maps of
one Inception module on the photo (feature_maps.png); the share of zero activations after every ReLU, layer by
layer and branch by branch (sparsity.png); the module's channel correlation matrix, as computed and with its
channels reordered so that correlated ones sit together (correlation.png); and report.md with the numbers.

The paper's motivation for Inception is about activations: a layer's outputs are sparse, and units that fire
together should be clustered into dense blocks (the Hebbian argument of its section 3).  Both are measured
here on a real photo: the zero share after each ReLU, and how much more correlated neighbouring channels are
once ordered by their correlations (spectral ordering: by the eigenvector of the second-largest eigenvalue of
the absolute correlation matrix) than in the network's own order.  --model takes a model name (random weights,
said in every title), a checkpoint.npz of `python -m models.train`, or an ONNX file.
"""

from __future__ import annotations

import os
import sys

import numpy as np

import minigrad
from minigrad import cli, nn


class _Net:
    """A network to look into: native (an nn.Module with named layers) or imported (an OnnxModel)."""

    def __init__(self, model, shape, description, random_weights, preprocess):
        self.model, self.shape, self.description = model, shape, description
        self.random_weights, self.preprocess = random_weights, preprocess
        self.onnx = not hasattr(model, "layers")

    def modules(self):
        """The names of the Inception modules (branches side by side, concatenated) one can look into."""
        if self.onnx:
            from .summary.graph import onnx_summary
            return [r["name"] for r in onnx_summary(self.model, self.shape[1]) if r["type"] == "inception"]
        return [name for name, layer in self.model.layers.named_children()
                if any(n.startswith("branch") for n, _ in layer.named_children())]

    def run(self, x, module):
        """(first filters (O, C, KH, KW), {branch: activations (C, H, W)}, {layer: zero share after its ReLU})."""
        return self._run_onnx(x, module) if self.onnx else self._run_native(x, module)

    def _run_native(self, x, module):
        from .inception import ConvBNReLU, ConvReLU
        first = next(m for m in self.model.modules() if isinstance(m, nn.Conv2d)).weight.numpy()
        captured, sparsity, hooks = {}, {}, []
        target = getattr(self.model.layers, module)
        for name, branch in target.named_children():
            if name.startswith("branch"):
                hooks.append(branch.register_forward_hook(
                    lambda m, i, out, name=name: captured.__setitem__(name, out.numpy()[0])))
        for name, layer in self.model.named_modules():
            if isinstance(layer, (ConvReLU, ConvBNReLU)):
                hooks.append(layer.register_forward_hook(
                    lambda m, i, out, name=name: sparsity.__setitem__(name.removeprefix("layers."),
                                                                      float((out.numpy() == 0).mean()))))
        try:
            self.model.eval()
            with minigrad.no_grad():
                self.model(minigrad.Tensor(x))
        finally:
            for h in hooks:
                h.remove()
        return first, captured, sparsity

    def _run_onnx(self, x, module):
        from .summary.graph import _data_nodes, _image_input, _Naming, _segments
        image = _image_input(self.model)
        with minigrad.no_grad():
            values = self.model.values(minigrad.Tensor(x))
        convs = [n for n in self.model.nodes if n.op_type == "Conv"]
        first = values[convs[0].inputs[1]].numpy()
        nodes = _data_nodes(self.model, image)
        naming = _Naming(self.model, nodes)
        sparsity, captured = {}, {}
        for node in nodes:
            if node.op_type == "Relu" or (node.op_type == "Conv" and node.relu):
                label = naming.of(node) if node.op_type == "Conv" else node.name
                sparsity[f"{label} ({node.outputs[0]})"] = float((values[node.outputs[0]].numpy() == 0).mean())
        for segment in _segments(nodes, image, self.model.output_names):
            concats = [n for n in segment if n.op_type == "Concat"]
            names = [naming.of(n) for n in segment if n.op_type == "Conv"]
            if concats and names and max(set(names), key=names.count) == module:
                for i, name in enumerate(concats[-1].inputs):
                    captured[f"branch {i + 1} ({name})"] = values[name].numpy()[0]
        return first, captured, sparsity


def load(spec, checkpoint_path=None):
    """A _Net for --model: an ONNX file, a models.train checkpoint, or a model name."""
    from . import MODELS, get_model, model_name
    if spec.endswith(".onnx"):
        try:
            model = minigrad.onnx.load(spec)
            shape = model.input_shape()
        except (minigrad.onnx.OnnxError, ValueError) as error:
            raise cli.CommandError(str(error)) from None
        return _Net(model, shape, f"{spec} (ONNX)", False, "caffe")
    if spec.endswith(".npz"):
        from minigrad import checkpoint
        if not os.path.isfile(spec):
            raise cli.CommandError(f"--model: no checkpoint {spec!r}")
        try:
            arrays, header = checkpoint.load(spec)
        except checkpoint.CheckpointError as error:
            raise cli.CommandError(str(error)) from None
        if "input" not in header or header.get("model") not in MODELS:
            raise cli.CommandError(f"--model {spec}: not a checkpoint of python -m models.train with its input "
                                   "description")
        model = get_model(header["model"], **header["input"])
        model.load_state_dict(checkpoint.split(arrays, "model"))
        return _Net(model, (model.in_channels, *model.input_size), f"{header['model']} from {spec}", False, "plain")
    name = model_name(spec, "--model", ", a checkpoint.npz or a .onnx file")
    minigrad.manual_seed(0)                          # the same random weights in every run
    model = get_model(name)
    return _Net(model, (model.in_channels, *model.input_size), f"{name} with random weights", True, "plain")


def spectral_order(corr):
    """Channels ordered so that correlated ones sit together: by the eigenvector of the second-largest
    eigenvalue of |corr| (the first is roughly constant; the second splits the channels into its two
    strongest blocks, and sorting by it places each channel near those it correlates with)."""
    values, vectors = np.linalg.eigh(np.abs(corr))
    return np.argsort(vectors[:, -2], kind="stable")


def neighbour_correlation(corr, order):
    """Mean |correlation| of channels next to each other in `order`."""
    ordered = np.abs(corr[np.ix_(order, order)])
    return float(np.mean(np.diag(ordered, 1)))


def correlation(activations):
    """The channel correlation matrix of (C, H, W) activations over the positions; channels that never fire
    (constant) get correlation 0 with the others."""
    flat = activations.reshape(activations.shape[0], -1).astype(np.float64)
    centred = flat - flat.mean(axis=1, keepdims=True)
    norms = np.sqrt((centred ** 2).sum(axis=1))
    alive = norms > 0
    corr = np.zeros((len(flat), len(flat)))
    corr[np.ix_(alive, alive)] = (centred[alive] @ centred[alive].T) / np.outer(norms[alive], norms[alive])
    np.fill_diagonal(corr, 1.0)
    return corr, int((~alive).sum())


def figures(net, photo_input, first, branches, sparsity, module, out, prefix=""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suffix = " (random weights)" if net.random_weights else ""
    # the first layer's filters, each scaled to its own range
    count = first.shape[0]
    columns = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.8, rows * 0.8), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < count:
            f = first[i]
            f = (f - f.min()) / (f.max() - f.min() or 1)
            ax.imshow(f.transpose(1, 2, 0)[:, :, ::-1] if f.shape[0] == 3 and net.preprocess == "caffe" else
                      f.transpose(1, 2, 0) if f.shape[0] == 3 else f[0], cmap=None if f.shape[0] == 3 else "gray")
    fig.suptitle(f"first convolution's {count} filters{suffix}", fontsize=9)
    fig.savefig(os.path.join(out, f"{prefix}filters.png"), dpi=120, bbox_inches="tight")
    plt.close(fig)
    # each branch's feature maps: its 8 most active channels
    fig, axes = plt.subplots(len(branches), 9, figsize=(13, 1.6 * len(branches)), squeeze=False)
    for row, (name, maps) in zip(axes, branches.items()):
        image = photo_input[0]
        row[0].imshow(image[0] if image.shape[0] == 1 else _displayable(image, net.preprocess),
                      cmap="gray" if image.shape[0] == 1 else None)
        row[0].set_title("input", fontsize=7)
        strongest = np.argsort(-maps.reshape(len(maps), -1).mean(1))[:8]
        for ax, channel in zip(row[1:], strongest):
            ax.imshow(maps[channel], cmap="viridis")
            ax.set_title(f"{name} #{channel}", fontsize=6)
        for ax in row:
            ax.axis("off")
    fig.suptitle(f"module {module}: each branch's most active channels{suffix}", fontsize=9)
    fig.savefig(os.path.join(out, f"{prefix}feature_maps.png"), dpi=120, bbox_inches="tight")
    plt.close(fig)
    # sparsity by layer
    names = list(sparsity)
    fig, ax = plt.subplots(figsize=(8, max(3, 0.18 * len(names))))
    ax.barh(range(len(names)), [sparsity[n] for n in names], color=["#d95f02" if module in n else "#1b9e77"
                                                                   for n in names])
    ax.set_yticks(range(len(names)), names, fontsize=5)
    ax.invert_yaxis()
    ax.set_xlabel("share of zero activations after ReLU")
    ax.set_title(f"sparsity, layer by layer (module {module} in orange){suffix}", fontsize=9)
    fig.savefig(os.path.join(out, f"{prefix}sparsity.png"), dpi=120, bbox_inches="tight")
    plt.close(fig)


def _displayable(image, preprocess):
    if preprocess == "caffe":
        from .classify import CAFFE_MEANS_BGR
        rgb = (image + np.array(CAFFE_MEANS_BGR)[:, None, None])[::-1]
        return np.clip(rgb.transpose(1, 2, 0) / 255, 0, 1)
    return np.clip(image.transpose(1, 2, 0), 0, 1)


def correlation_figure(corr, order, module, random_weights, out, prefix=""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
    for ax, (title, matrix) in zip(axes, [("the network's channel order", corr),
                                          ("ordered by correlation (spectral)", corr[np.ix_(order, order)])]):
        shown = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title(title, fontsize=9)
    fig.colorbar(shown, ax=axes, shrink=0.8)
    fig.suptitle(f"module {module}: channel correlations on the photo{' (random weights)' if random_weights else ''}",
                 fontsize=10)
    fig.savefig(os.path.join(out, f"{prefix}correlation.png"), dpi=120, bbox_inches="tight")
    plt.close(fig)


def parse_args(argv):
    from .classify import SAMPLE_PHOTOS
    parser = cli.Parser(prog="python -m models.inspect", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model name, a checkpoint.npz of models.train, or a .onnx file")
    parser.add_argument("--image", required=True, help=f"a photo file, or a sample: {', '.join(SAMPLE_PHOTOS)}")
    parser.add_argument("--out", required=True, help="folder for the figures and report.md")
    parser.add_argument("--layer", help="the Inception module to look into (default: the first)")
    args = parser.parse_args(argv)
    cli.writable_folder("--out", args.out)
    return args


def main(argv=None):
    return cli.run("python -m models.inspect", _main, argv)


def inspect(net, x, module, out, photo_name, prefix=""):
    """Look into `module` of `net` on input x (1, C, H, W): figures and report.md in `out` (file names starting
    with `prefix`); returns (mean zero share after ReLU, neighbour |correlation| before, after ordering)."""
    first, branches, sparsity = net.run(x, module)
    maps = np.concatenate(list(branches.values()))
    corr, dead = correlation(maps)
    order = spectral_order(corr)
    before, after = neighbour_correlation(corr, np.arange(len(corr))), neighbour_correlation(corr, order)
    try:
        figures(net, x, first, branches, sparsity, module, out, prefix)
        correlation_figure(corr, order, module, net.random_weights, out, prefix)
    except ImportError:
        raise cli.CommandError("the figures need matplotlib: pip install -e '.[study]'") from None
    module_layers = {k: v for k, v in sparsity.items() if module in k}
    height, width = x.shape[2:]
    lines = [f"# Inside {net.description}", "", f"Input: {photo_name}, prepared as {net.preprocess} to {height}x{width}."
             + (" The weights are random: what follows describes the architecture at initialisation, not a trained "
                "network." if net.random_weights else ""), "",
             f"## Module {module}", "", "| branch | channels | zero share | mean activation |", "| --- | ---: | ---: | ---: |"]
    for name, a in branches.items():
        lines.append(f"| {name} | {len(a)} | {(a == 0).mean():.1%} | {a.mean():.4f} |")
    lines += ["", f"Channel correlations over the {maps.shape[1]}x{maps.shape[2]} positions ({len(corr)} channels, "
              f"{dead} never active): mean |correlation| of neighbouring channels {before:.3f} in the network's "
              f"order, {after:.3f} once ordered by correlation ({after / before if before else float('nan'):.2f}x)."
              " The higher the ratio, the more the module's units fall into correlated groups, the clusters the "
              "paper's section 3 argues a layer should be built from.", "",
              "## Sparsity after every ReLU", "", "| layer | zero share |", "| --- | ---: |"]
    lines += [f"| {name} | {share:.1%} |" for name, share in sparsity.items()]
    mean_sparsity = float(np.mean(list(sparsity.values())))
    lines += ["", f"Mean over layers: {mean_sparsity:.1%}; over module {module}'s: "
              f"{np.mean(list(module_layers.values())) if module_layers else float('nan'):.1%}.", "",
              f"Figures: {', '.join(prefix + n for n in FIGURES)}."]
    with open(os.path.join(out, f"{prefix}report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return mean_sparsity, before, after, len(branches), len(corr)


FIGURES = ("filters.png", "feature_maps.png", "sparsity.png", "correlation.png")


def _main(argv):
    from .classify import prepare, read_photo
    args = parse_args(argv)
    net = load(args.model)
    available = net.modules()
    if not available:
        raise cli.CommandError(f"--model {args.model} has no Inception modules to look into")
    module = args.layer or available[0]
    if module not in available:
        raise cli.CommandError(f"--layer: no module {module!r}; the network has {', '.join(available)}")
    channels, height, width = net.shape
    photo = read_photo(args.image)
    if channels == 1:
        photo = photo.convert("L").convert("RGB")
    x = prepare(photo, height, net.preprocess)
    x = x[:, :1] if channels == 1 else x
    sparsity, before, after, branches, count = inspect(net, x, module, args.out, args.image)
    print(f"{net.description}: module {module}, {branches} branches, {count} channels; mean zero share after "
          f"ReLU {sparsity:.1%}; neighbouring-channel |correlation| {before:.3f} -> {after:.3f} when ordered")
    print(f"wrote {', '.join(FIGURES)} and report.md to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
