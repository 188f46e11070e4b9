"""Layers: Modules that hold Parameters and call the functional ops.

A Module finds its parameters and sub-modules by looking at its attributes, so
`self.conv = Conv2d(...)` is all the registration there is.
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict

import numpy as np

from . import functional as F
from . import random
from .autograd import Tensor
from .backend import array_module, parse_device, to_device
from .checks import as_pair, check_probability


class Parameter(Tensor):
    """A Tensor that a Module trains: it requires grad by default."""

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data, requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    def __init__(self):
        self.training = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args, **kwargs):
        output = self.forward(*args, **kwargs)
        for hook in list(vars(self).get("_forward_hooks", {}).values()):
            replaced = hook(self, args, output)
            output = output if replaced is None else replaced
        return output

    def register_forward_hook(self, hook):
        """Call hook(module, inputs, output) after every forward; returns a handle with .remove()."""
        hooks = vars(self).setdefault("_forward_hooks", {})
        key = object()
        hooks[key] = hook
        return _HookHandle(hooks, key)

    # ---- the tree of modules and parameters ----------------------------------
    def named_children(self):
        return ((name, m) for name, m in vars(self).items() if isinstance(m, Module))

    def children(self):
        return (m for _, m in self.named_children())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix=""):
        for name, value in vars(self).items():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(value, Parameter):
                yield full, value
            elif isinstance(value, Module):
                yield from value.named_parameters(full)

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device):
        """Move every parameter (and its gradient) to `device` in place; returns the module.
        Move a model before making its optimizer: optimizer state stays where it was made."""
        target = parse_device(device, f"{type(self).__name__}.to")
        for p in self.parameters():
            p.data = to_device(p.data, target)
            if p.grad is not None:
                p.grad = Tensor(to_device(p.grad.data, target))
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index=None):
        return self.to("cuda" if index is None else f"cuda:{index}")

    def train(self, mode: bool = True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    # ---- saving and loading ------------------------------------------------------
    def state_dict(self):
        """Name -> NumPy array (a copy) for every parameter."""
        return OrderedDict((name, np.array(p.numpy(), copy=True)) for name, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays into the parameters; names, shapes and dtypes must match.

        Every mismatch is listed in one error.  With strict=False, missing and
        unexpected names are allowed (shapes and dtypes are still checked).
        """
        own = dict(self.named_parameters())
        problems = []
        if strict:
            problems += [f"missing: {name}" for name in own if name not in state_dict]
            problems += [f"unexpected: {name}" for name in state_dict if name not in own]
        for name, value in state_dict.items():
            if name not in own:
                continue
            param = own[name]
            if tuple(value.shape) != param.shape:
                problems.append(f"shape of {name}: checkpoint {tuple(value.shape)}, model {param.shape}")
            elif value.dtype != param.dtype:
                problems.append(f"dtype of {name}: checkpoint {value.dtype}, model {param.dtype}")
        if problems:
            raise ValueError(f"load_state_dict: {type(self).__name__} does not match the state dict: "
                             + "; ".join(problems))
        for name, value in state_dict.items():
            if name in own:          # copy in place, onto the parameter's own device
                own[name].data[...] = array_module(own[name].data).asarray(value)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        children = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n" + "\n".join(children) + "\n)" if children else ")")


class _HookHandle:
    def __init__(self, hooks, key):
        self.hooks, self.key = hooks, key

    def remove(self):
        self.hooks.pop(self.key, None)


def _uniform_parameter(shape, bound, dtype):
    return Parameter(random.generator().uniform(-bound, bound, size=shape).astype(dtype))


def stored_filters(values):
    """A convolution's filters (O, C, KH, KW) with these values, stored as Conv2d stores its weight: as
    (KH, KW, C, O), the matrix B of its product y = columns @ B, which the CPU kernels then read where
    it lies, with no copy (on GoogLeNet's 7x7 layers a forward takes 0.73-0.81x the time it took when
    it packed the filters first; BENCHMARKS.md).  Users see the (O, C, KH, KW) array PyTorch has, as
    its channels_last keeps (O, KH, KW, C) behind the same shape; the weight gradient comes back in the
    same layout, so the optimizer's update is one pass.  Filters in any other layout work too (the
    kernels copy them first)."""
    values = np.asarray(values)
    if values.ndim != 4:
        raise ValueError(f"stored_filters: values must be 4-D filters (O, C, KH, KW); got shape {values.shape}")
    o, c, kh, kw = values.shape
    stored = np.empty((kh, kw, c, o), values.dtype).transpose(3, 2, 0, 1)
    stored[...] = values
    return stored


def _positive_int(op, name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{op}: {name} must be a positive int, got {value!r}")
    return int(value)


class Conv2d(Module):
    """Weights and biases drawn uniformly from +-1/sqrt(fan_in), as PyTorch does by default."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, dtype=np.float32):
        super().__init__()
        in_channels = _positive_int("Conv2d", "in_channels", in_channels)
        out_channels = _positive_int("Conv2d", "out_channels", out_channels)
        self.kernel_size = as_pair("Conv2d", "kernel_size", kernel_size, 1)
        self.stride = as_pair("Conv2d", "stride", stride, 1)
        self.padding = as_pair("Conv2d", "padding", padding, 0)
        bound = 1 / math.sqrt(in_channels * self.kernel_size[0] * self.kernel_size[1])
        self.weight = _uniform_parameter((out_channels, in_channels, *self.kernel_size), bound, dtype)
        self.weight.data = stored_filters(self.weight.data)
        self.bias = _uniform_parameter((out_channels,), bound, dtype) if bias else None

    def forward(self, x, relu=False):
        """relu=True: relu(conv(x)) as one fused op (F.conv2d_relu)."""
        return (F.conv2d_relu if relu else F.conv2d)(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        o, i = self.weight.shape[:2]
        return f"{i}, {o}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        in_features = _positive_int("Linear", "in_features", in_features)
        out_features = _positive_int("Linear", "out_features", out_features)
        bound = 1 / math.sqrt(in_features)
        self.weight = _uniform_parameter((out_features, in_features), bound, dtype)
        self.bias = _uniform_parameter((out_features,), bound, dtype) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}"


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, ceil_mode={self.ceil_mode}"


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, ceil_mode={self.ceil_mode}"


class LocalResponseNorm(Module):
    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        check_probability("Dropout", "p", p)
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)


class Sequential(Module):
    """Modules applied in order; named "0", "1", ..., or by the keys of one OrderedDict argument."""

    def __init__(self, *modules):
        super().__init__()
        named = modules[0].items() if len(modules) == 1 and isinstance(modules[0], OrderedDict) \
            else ((str(i), m) for i, m in enumerate(modules))
        for name, m in named:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: argument {name} is a {type(m).__name__}, not a Module")
            setattr(self, name, m)

    def __getitem__(self, index):
        return list(self.children())[index]

    def __len__(self):
        return sum(1 for _ in self.children())

    def __iter__(self):
        return iter(list(self.children()))

    def forward(self, x):
        for m in self.children():
            x = m(x)
        return x
