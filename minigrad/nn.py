"""Layers: Modules that hold Parameters and call the functional ops.

A Module finds its parameters and sub-modules by looking at its attributes, so
`self.conv = Conv2d(...)` is all the registration there is.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np

from kernels.memory import aligned_empty, is_aligned

from . import functional as F
from . import random
from .autograd import Tensor
from .backend import array_module, device_of, parse_device, to_device
from .checks import as_pair, check_probability, lrn_arguments, pool_arguments


class Parameter(Tensor):
    """A Tensor that a Module trains: it requires grad by default."""

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data, requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Buffer(Tensor):
    """A Tensor a Module keeps and saves but does not train (BatchNorm's running statistics): in state_dict,
    moved by .to(), never in parameters()."""

    def __init__(self, data):
        super().__init__(data, requires_grad=False)


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

    def named_buffers(self, prefix=""):
        for name, value in vars(self).items():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(value, Buffer):
                yield full, value
            elif isinstance(value, Module):
                yield from value.named_buffers(full)

    def buffers(self):
        return (b for _, b in self.named_buffers())

    def _tensors(self):
        """(name, Parameter or Buffer): everything state_dict saves, parameters first."""
        return list(self.named_parameters()) + list(self.named_buffers())

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device_or_dtype):
        """Move every parameter and buffer (and gradient) to a device ('cpu', 'cuda', 'cuda:N'), or convert the
        floating-point ones to a dtype (np.float64, "float32", ...), in place; returns the module.  As in
        PyTorch, do it before making the optimizer: optimizer state stays as it was made.  Each array takes the
        layout its device's kernels read in place (placed_for)."""
        dtype = _as_dtype(device_or_dtype)
        target = None if dtype is not None else parse_device(device_or_dtype, f"{type(self).__name__}.to")

        def moved(data, filters):
            if dtype is not None:
                converted = data.astype(dtype, order="K") if data.dtype.kind == "f" and data.dtype != dtype else data
                return placed_for(converted, device_of(data), filters)
            return placed_for(to_device(data, target), target, filters)
        for module in self.modules():
            for name, t in vars(module).items():
                if isinstance(t, (Parameter, Buffer)):
                    filters = module.filters_name == name
                    _replace_values(t, moved(t.data, filters))
                    if t.grad is not None:
                        t.grad = Tensor(moved(t.grad.data, filters))
        return self

    def double(self):
        """Floating-point parameters and buffers as float64 (as torch.nn.Module.double)."""
        return self.to(np.float64)

    def float(self):
        """Floating-point parameters and buffers as float32 (as torch.nn.Module.float)."""
        return self.to(np.float32)

    filters_name = None          # the parameter that holds a convolution's filters (Conv2d: "weight")

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

    def freeze(self):
        """Fix every parameter for inference (as Lightning's freeze): each made read-only and no longer
        requiring grad (Tensor.freeze_), and the module put in eval mode.  Kernels then keep what they
        derive from the weights (Winograd's transformed filters) rather than derive it at every call; an
        optimizer cannot change them.  load_state_dict and .to() keep them frozen.  Returns the module."""
        for p in self.parameters():
            p.freeze_()
        return self.eval()

    def unfreeze(self):
        """Undo freeze(): parameters writable, requiring grad as before, the module in training mode."""
        for p in self.parameters():
            p.unfreeze_()
        return self.train()

    # ---- saving and loading ------------------------------------------------------
    def state_dict(self):
        """Name -> NumPy array (a copy) for every parameter and buffer."""
        return OrderedDict((name, np.array(t.numpy(), copy=True)) for name, t in self._tensors())

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays into the parameters; names, shapes and dtypes must match.

        Every mismatch is listed in one error.  With strict=False, missing and
        unexpected names are allowed (shapes and dtypes are still checked).
        """
        own = dict(self._tensors())
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
        state_dict = {name: value.data if isinstance(value, Tensor) else value for name, value in state_dict.items()}
        for name, value in state_dict.items():
            if not hasattr(value, "shape") or not hasattr(value, "dtype"):
                raise TypeError(f"load_state_dict: the value of {name!r} is a {type(value).__name__}, not an array")
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
                set_values(own[name], value)

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


_skipping_init = False


@contextlib.contextmanager
def skip_init():
    """Layers built inside the block get parameters of the right shape, dtype and memory layout, but not
    their default initial values (uninitialised memory, as PyTorch's nn.utils.skip_init gives): for a model
    builder that then sets every parameter itself.  GoogLeNet's builders draw each weight once instead of
    twice (13M values; a third of the time to build it)."""
    global _skipping_init
    before, _skipping_init = _skipping_init, True
    try:
        yield
    finally:
        _skipping_init = before


def _uniform_parameter(shape, bound, dtype, filters=False):
    """A parameter of `shape` drawn from U(-bound, bound); filters: stored as Conv2d stores its weight."""
    if _skipping_init:
        return Parameter(_empty_filters(shape, dtype) if filters else np.empty(shape, dtype))
    values = random.draw_uniform(shape, -bound, bound, dtype)
    return Parameter(stored_filters(values) if filters else values)


def stored_filters(values):
    """A convolution's filters (O, C, KH, KW) with these values, stored as Conv2d stores its weight: as
    (KH, KW, C, O), the matrix B of its product y = columns @ B, which the CPU kernels then read where
    it lies, with no copy (on GoogLeNet's 7x7 layers a forward takes 0.73-0.81x the time it took when
    it packed the filters first; BENCHMARKS.md).  Users see the (O, C, KH, KW) array PyTorch has, as
    its channels_last keeps (O, KH, KW, C) behind the same shape; the weight gradient comes back in the
    same layout, so the optimizer's update is one pass.  Filters in any other layout work too (the
    kernels copy them first).  The matrix starts on a cache line (kernels/memory.py): 16-48 bytes past
    one, a 1x1 layer's forward took up to 1.37x the time."""
    values = np.asarray(values)
    if values.ndim != 4:
        raise ValueError(f"stored_filters: values must be 4-D filters (O, C, KH, KW); got shape {values.shape}")
    stored = _empty_filters(values.shape, values.dtype)
    stored[...] = values
    return stored


def set_values(t, values):
    """t's values = values (an array of its shape, any device), copied in place; a frozen t is unfrozen for it
    and frozen again, on a new array (what the kernels kept for the old values is dropped with them)."""
    frozen = t.is_frozen
    t.unfreeze_()                       # frozen: back on its writable copy, what was kept dropped
    t.data[...] = array_module(t.data).asarray(values)
    if frozen:
        t.freeze_()


def _replace_values(t, data):
    """t.data = data, a frozen tensor frozen again on its new array."""
    if data is not t.data:
        frozen = t.is_frozen
        t.unfreeze_()
        t.data = data
        if frozen:
            t.freeze_()


def _empty_filters(shape, dtype):
    o, c, kh, kw = shape
    return aligned_empty((kh, kw, c, o), dtype).transpose(3, 2, 0, 1)


def _as_dtype(value):
    """np.dtype of a floating dtype given as such (np.float64, "float32"), else None (a device name)."""
    if isinstance(value, str) and value.partition(":")[0] in ("cpu", "cuda"):
        return None
    try:
        dtype = np.dtype(value) if value is not None else None
    except TypeError:
        return None
    if dtype is not None and dtype.kind != "f":
        raise TypeError(f"Module.to: only floating dtypes convert a module, got {dtype}")
    return dtype


def placed_for(data, device, filters=False):
    """A parameter's array in the layout its device's kernels read in place: on a GPU, C-contiguous (the CUDA
    wrappers copy anything else on every call, and SGD's one-pass kernel takes only that; a 1x1 convolution's
    filters, stored as (KH, KW, C, O) behind their (O, C, KH, KW) shape, arrive Fortran-ordered); on the CPU,
    a convolution's filters as their product's matrix on a cache line (stored_filters), anything else as it is."""
    if device != "cpu":
        return array_module(data).ascontiguousarray(data)
    if filters and data.ndim == 4 and not (data.transpose(2, 3, 1, 0).flags.c_contiguous and is_aligned(data)):
        return stored_filters(data)
    return data


def _positive_int(op, name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{op}: {name} must be a positive int, got {value!r}")
    return int(value)


class Conv2d(Module):
    """Weights and biases drawn uniformly from +-1/sqrt(fan_in), as PyTorch does by default."""

    filters_name = "weight"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, dtype=np.float32):
        super().__init__()
        in_channels = _positive_int("Conv2d", "in_channels", in_channels)
        out_channels = _positive_int("Conv2d", "out_channels", out_channels)
        self.kernel_size = as_pair("Conv2d", "kernel_size", kernel_size, 1)
        self.stride = as_pair("Conv2d", "stride", stride, 1)
        self.padding = as_pair("Conv2d", "padding", padding, 0)
        bound = 1 / math.sqrt(in_channels * self.kernel_size[0] * self.kernel_size[1])
        self.weight = _uniform_parameter((out_channels, in_channels, *self.kernel_size), bound, dtype, filters=True)
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
        pool_arguments("MaxPool2d", kernel_size, stride, padding)
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, bool(ceil_mode)

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, ceil_mode={self.ceil_mode}"


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        pool_arguments("AvgPool2d", kernel_size, stride, padding)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, ceil_mode={self.ceil_mode}"


class LocalResponseNorm(Module):
    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        lrn_arguments("LocalResponseNorm", size, alpha, beta, k)
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
        for name, value in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"Flatten: {name} must be an int, got {value!r}")
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


class BatchNorm2d(Module):
    """Batch normalisation of (N, C, H, W) inputs, as torch.nn.BatchNorm2d: weight 1 and bias 0 (affine), running
    statistics (mean 0, variance 1) and num_batches_tracked as buffers (track_running_stats).  In training the
    batch's statistics normalise and the running ones move by `momentum` (None: a cumulative average over
    the batches seen); in eval mode the running ones normalise.  forward(x, relu=True) fuses the ReLU."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, dtype=np.float32):
        super().__init__()
        self.num_features = _positive_int("BatchNorm2d", "num_features", num_features)
        if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not math.isfinite(eps) or eps < 0:
            raise ValueError(f"BatchNorm2d: eps must be a finite number >= 0, got {eps!r}")
        if momentum is not None and (not isinstance(momentum, numbers.Real) or isinstance(momentum, bool)
                                     or not 0 <= momentum <= 1):
            raise ValueError(f"BatchNorm2d: momentum must be a number in [0, 1] or None, got {momentum!r}")
        self.eps, self.momentum, self.affine = float(eps), momentum, bool(affine)
        self.track_running_stats = bool(track_running_stats)
        c = self.num_features
        self.weight = Parameter(np.ones(c, dtype)) if affine else None
        self.bias = Parameter(np.zeros(c, dtype)) if affine else None
        if track_running_stats:
            self.running_mean, self.running_var = Buffer(np.zeros(c, dtype)), Buffer(np.ones(c, dtype))
            self.num_batches_tracked = Buffer(np.zeros((), np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x, relu=False):
        if not isinstance(x, Tensor) or x.ndim != 4:
            raise ValueError(f"BatchNorm2d: expected a 4-D input (N, C, H, W), got "
                             f"{'shape ' + str(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d: expected {self.num_features} channels, got input of shape {x.shape}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:                     # a cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        batch_statistics = self.training or not self.track_running_stats
        running = (self.running_mean, self.running_var) if not self.training or self.track_running_stats else (None, None)
        return F.batch_norm(x, *running, self.weight, self.bias, batch_statistics, factor, self.eps, relu)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients of `parameters` in place so that their total norm (of all of them as one vector) is
    at most max_norm, as torch.nn.utils.clip_grad_norm_; returns the total norm before clipping (a float64
    Tensor).  norm_type: a p >= 1 (float("inf") for the largest magnitude)."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    for name, value in (("max_norm", max_norm), ("norm_type", norm_type)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or math.isnan(value):
            raise ValueError(f"clip_grad_norm_: {name} must be a number, got {value!r}")
    if max_norm < 0 or norm_type < 1:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0 and norm_type >= 1, got {max_norm!r}, {norm_type!r}")
    if not grads:
        return Tensor(np.array(0.0))
    norms = [float(array_module(g.data).abs(g.data).max()) if math.isinf(norm_type) else
             float(array_module(g.data).sum(array_module(g.data).abs(g.data.astype(np.float64)) ** norm_type))
             for g in grads]
    total = max(norms) if math.isinf(norm_type) else sum(norms) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {total}; "
                           "set error_if_nonfinite=False to clip anyway")
    coefficient = min(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g.data *= g.dtype.type(coefficient)
    return Tensor(np.array(total))


utils = SimpleNamespace(clip_grad_norm_=clip_grad_norm_)
