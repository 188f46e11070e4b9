"""The same work in PyTorch, with the same weights: the reference for --compare torch.

`to_torch(module)` walks a minigrad model and builds the PyTorch twin layer by layer.
`torch_times(...)` times the twin in a child process: PyTorch's OpenMP threads read
GOMP_SPINCOUNT, which minigrad lowers for its own pools (measured: that slows PyTorch's
GoogLeNet step by ~10%), so PyTorch runs with the environment minigrad found, under
its own best settings.  (PyTorch is only a benchmark and test reference, never a
dependency of the engine.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import OrderedDict

import numpy as np


def to_torch(module):
    import torch

    from minigrad import nn
    from models.googlenet import AUX_AFTER, GoogLeNet
    from models.inception import ConvBNReLU, ConvReLU, Inception, InceptionNaive
    from models.inception_v3 import ExpandedBank, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE, InceptionV3
    from models.network import Network

    tnn = torch.nn

    def param(t):         # in PyTorch's own (contiguous) layout, whatever minigrad's storage
        return tnn.Parameter(torch.from_numpy(np.array(t.numpy(), copy=True, order="C")))

    def convert(m):
        if isinstance(m, nn.Conv2d):
            out, inp = m.weight.shape[:2]
            conv = tnn.Conv2d(inp, out, m.kernel_size, m.stride, m.padding, bias=m.bias is not None)
            conv.weight = param(m.weight)
            if m.bias is not None:
                conv.bias = param(m.bias)
            return conv
        if isinstance(m, nn.Linear):
            linear = tnn.Linear(m.weight.shape[1], m.weight.shape[0], bias=m.bias is not None)
            linear.weight = param(m.weight)
            if m.bias is not None:
                linear.bias = param(m.bias)
            return linear
        if isinstance(m, nn.MaxPool2d):
            return tnn.MaxPool2d(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)
        if isinstance(m, nn.AvgPool2d):
            return tnn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad)
        if isinstance(m, nn.LocalResponseNorm):
            return tnn.LocalResponseNorm(m.size, m.alpha, m.beta, m.k)
        if isinstance(m, nn.ReLU):
            return tnn.ReLU()
        if isinstance(m, nn.Dropout):
            return tnn.Dropout(m.p)
        if isinstance(m, nn.Flatten):
            return tnn.Flatten(m.start_dim, m.end_dim)
        if isinstance(m, nn.BatchNorm2d):
            bn = tnn.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
            if m.affine:
                bn.weight, bn.bias = param(m.weight), param(m.bias)
            if m.track_running_stats:
                with torch.no_grad():
                    bn.running_mean.copy_(torch.from_numpy(m.running_mean.numpy()))
                    bn.running_var.copy_(torch.from_numpy(m.running_var.numpy()))
                    bn.num_batches_tracked.fill_(int(m.num_batches_tracked.numpy()))
            return bn
        if isinstance(m, ConvReLU):
            return tnn.Sequential(convert(m.conv), tnn.ReLU())
        if isinstance(m, ConvBNReLU):
            return tnn.Sequential(convert(m.conv), convert(m.bn), tnn.ReLU())
        if isinstance(m, (InceptionA, InceptionB, InceptionC, InceptionD, InceptionE, ExpandedBank)):
            return _Branches([convert(b) for _, b in m.named_children()])
        if isinstance(m, InceptionV3):
            return _GoogLeNet(convert(m.layers), [convert(m.AuxLogits)] if m.aux_logits else [], ("Mixed_6e",))
        if isinstance(m, (Inception, InceptionNaive)):
            return _Branches([convert(b) for b in (m.branch1x1, m.branch3x3, m.branch5x5, m.branch_pool)])
        if isinstance(m, GoogLeNet):
            return _GoogLeNet(convert(m.layers), [convert(getattr(m, f"aux{i}")) for i in (1, 2) if m.aux_logits],
                              AUX_AFTER)
        if isinstance(m, Network):
            return convert(m.layers)
        children = list(m.named_children())
        if isinstance(m, nn.Sequential) or children:       # any other container: its children in order
            return tnn.Sequential(OrderedDict((n, convert(c)) for n, c in children))
        raise TypeError(f"to_torch: no PyTorch equivalent for {type(m).__name__}")

    class _Branches(tnn.Module):
        def __init__(self, branches):
            super().__init__()
            self.branches = tnn.ModuleList(branches)

        def forward(self, x):
            return torch.cat([b(x) for b in self.branches], 1)

    class _GoogLeNet(tnn.Module):
        """A network of named layers with auxiliary heads after some of them (GoogLeNet's, Inception-v3's)."""

        def __init__(self, layers, aux, aux_after):
            super().__init__()
            self.layers, self.aux, self.aux_after = layers, tnn.ModuleList(aux), tuple(aux_after)

        def forward(self, x):
            outputs = []
            for name, layer in self.layers.named_children():
                x = layer(x)
                if self.training and len(self.aux) and name in self.aux_after:
                    outputs.append(self.aux[self.aux_after.index(name)](x))
            return (x, *outputs) if outputs else x

    return convert(module)


def torch_times(spec, model, x, target, repeat):
    """PyTorch's forward and step times for both layouts, the faster layout, and its eval-mode
    output, from a child process that rebuilds `spec` with model's weights and input x."""
    from benchmarks.timing import other_library_environment

    with tempfile.TemporaryDirectory() as folder:
        np.savez(os.path.join(folder, "state.npz"), **model.state_dict())
        np.save(os.path.join(folder, "x.npy"), x)
        if target is not None:
            np.save(os.path.join(folder, "target.npy"), target)
        with open(os.path.join(folder, "spec.json"), "w") as f:
            json.dump({**spec, "repeat": repeat, "train": target is not None}, f)
        env = other_library_environment()
        subprocess.run([sys.executable, "-m", "benchmarks.torch_reference", folder], env=env, check=True)
        with open(os.path.join(folder, "times.json")) as f:
            times = json.load(f)
        reference = np.load(os.path.join(folder, "output.npy"))
    best = min(times, key=lambda k: times[k]["step"])
    return times, best, reference


def _child(folder):
    import torch  # first: its OpenMP runtime starts with the user's settings

    from benchmarks.__main__ import build_model, torch_loss
    from benchmarks.timing import measure

    with open(os.path.join(folder, "spec.json")) as f:
        spec = json.load(f)
    model = build_model(spec)
    model.load_state_dict(dict(np.load(os.path.join(folder, "state.npz"))))
    torch.set_num_threads(os.cpu_count() or 1)
    twin = to_torch(model)
    x = torch.from_numpy(np.load(os.path.join(folder, "x.npy")))
    twin.eval()
    with torch.no_grad():
        np.save(os.path.join(folder, "output.npy"), twin(x).numpy())
    labels = torch.from_numpy(np.load(os.path.join(folder, "target.npy"))) if spec["train"] else None
    times = {}
    for layout, memory_format in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        twin = twin.to(memory_format=memory_format)
        xt = x.contiguous(memory_format=memory_format).requires_grad_(not spec["train"])
        optimizer = torch.optim.SGD(twin.parameters(), lr=1e-3)

        def forward():
            twin.eval()
            with torch.no_grad():
                twin(xt)

        def step():
            twin.train(spec["train"])
            out = twin(xt)
            loss = torch_loss(out, labels) if spec["train"] else out.sum()
            optimizer.zero_grad()
            loss.backward()
            if spec["train"]:
                optimizer.step()

        times[layout] = {"forward": measure(forward, spec["repeat"])["median"],
                         "step": measure(step, spec["repeat"])["median"]}
    with open(os.path.join(folder, "times.json"), "w") as f:
        json.dump(times, f)


if __name__ == "__main__":
    _child(sys.argv[1])
