"""Neural-network ops, named and ordered like torch.nn.functional.

Each op is a Function (forward and backward side by side) and a public wrapper
that validates the arguments before any kernel sees them.  Convolution, pooling,
ReLU, LRN and concatenation run on the hand-written kernels picked by
`kernels.for_array`; the rest is a few lines of array code.
"""

from __future__ import annotations

import numbers

import numpy as np

import kernels

from . import random
from .autograd import Function, Tensor, is_grad_enabled, is_view_of
from .backend import array_module, is_cuda_array, to_device
from .checks import (
    as_pair,
    check_probability,
    check_same_device_and_dtype,
    check_tensor,
    check_windows,
    lrn_arguments,
    pool_arguments,
)

# ---- convolution -------------------------------------------------------------

class Conv2d(Function):
    """Convolution, optionally fused with the ReLU that follows it (name conv2d_relu): the kernels clamp
    in the pass that adds the bias, and mask the gradient before the backward GEMMs."""

    fresh_grads = True                   # every backend's conv2d_backward returns new arrays

    def __init__(self, stride, padding, relu=False, backward_follows=True, weight_cache=None):
        self.stride, self.padding, self.relu = stride, padding, relu
        self.name = "conv2d_relu" if relu else "conv2d"
        # what the kernel may keep for its backward (the CPU kernels: small column matrices)
        self.saved = {} if backward_follows else None
        self.weight_cache = weight_cache               # a frozen weight's (Tensor.weight_cache)

    def forward(self, x, weight, bias=None):
        self.x, self.weight, self.has_bias = x, weight, bias is not None
        y = kernels.for_array(x).conv2d_forward(x, weight, bias, self.stride, self.padding, self.relu, self.saved,
                                                self.weight_cache)
        self.y = y if self.relu else None              # ReLU's backward needs the output, as ReLU's does
        return y

    def backward(self, grad):
        grad_x, grad_weight, grad_bias = kernels.for_array(grad).conv2d_backward(
            self.x, self.weight, grad, self.stride, self.padding, self.needs_input_grad[0], self.y, self.saved,
            self.weight_cache)
        return (grad_x, grad_weight, grad_bias) if self.has_bias else (grad_x, grad_weight)


def _convolution(op, input, weight, bias, stride, padding, relu):
    check_tensor(op, "input", input, ndim=4)
    check_tensor(op, "weight", weight, ndim=4)
    if bias is not None:
        check_tensor(op, "bias", bias, ndim=1)
    check_same_device_and_dtype(op, input=input, weight=weight, bias=bias)
    if weight.shape[1] != input.shape[1]:
        raise ValueError(f"{op}: weight expects {weight.shape[1]} input channels but input has "
                         f"{input.shape[1]} (input shape {input.shape}, weight shape {weight.shape})")
    if bias is not None and bias.shape[0] != weight.shape[0]:
        raise ValueError(f"{op}: bias has {bias.shape[0]} entries but weight has {weight.shape[0]} "
                         f"output channels (bias shape {bias.shape}, weight shape {weight.shape})")
    stride = as_pair(op, "stride", stride, 1)
    padding = as_pair(op, "padding", padding, 0)
    check_windows(op, input.shape, weight.shape[2:], stride, padding)
    inputs = (input, weight) if bias is None else (input, weight, bias)
    fn = Conv2d(stride, padding, relu, backward_follows=is_grad_enabled() and any(t.requires_grad for t in inputs),
                weight_cache=weight.weight_cache())
    return fn(*inputs)


def conv2d(input, weight, bias=None, stride=1, padding=0):
    """2-D convolution (cross-correlation, as in every DL library): NCHW input, OIHW weight."""
    return _convolution("conv2d", input, weight, bias, stride, padding, relu=False)


def conv2d_relu(input, weight, bias=None, stride=1, padding=0):
    """relu(conv2d(...)) as one op: the same values and gradients, one pass over the output fewer
    in each direction (every convolution of GoogLeNet is followed by a ReLU)."""
    return _convolution("conv2d_relu", input, weight, bias, stride, padding, relu=True)


# ---- pooling -------------------------------------------------------------------

class MaxPool2d(Function):
    name = "max_pool2d"

    def __init__(self, kernel_size, stride, padding, ceil_mode):
        self.geometry = kernel_size, stride, padding, ceil_mode

    def forward(self, x):
        y, self.argmax = kernels.for_array(x).max_pool2d_forward(x, *self.geometry)
        self.x_shape = x.shape
        return y

    def backward(self, grad):
        return kernels.for_array(grad).max_pool2d_backward(grad, self.argmax, self.x_shape, *self.geometry)


class AvgPool2d(Function):
    name = "avg_pool2d"

    def __init__(self, kernel_size, stride, padding, ceil_mode, count_include_pad):
        self.geometry = kernel_size, stride, padding, ceil_mode, count_include_pad

    def forward(self, x):
        self.x_shape = x.shape
        return kernels.for_array(x).avg_pool2d_forward(x, *self.geometry)

    def backward(self, grad):
        return kernels.for_array(grad).avg_pool2d_backward(grad, self.x_shape, *self.geometry)


def _pool_geometry(op, input, kernel_size, stride, padding, ceil_mode):
    check_tensor(op, "input", input, ndim=4)
    kernel_size, stride, padding = pool_arguments(op, kernel_size, stride, padding)
    check_windows(op, input.shape, kernel_size, stride, padding, bool(ceil_mode))
    return kernel_size, stride, padding, bool(ceil_mode)


def max_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Max over each window (padding counts as -inf); stride defaults to kernel_size."""
    return MaxPool2d(*_pool_geometry("max_pool2d", input, kernel_size, stride, padding, ceil_mode))(input)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Mean over each window; with count_include_pad the zeros of the padding count."""
    geometry = _pool_geometry("avg_pool2d", input, kernel_size, stride, padding, ceil_mode)
    return AvgPool2d(*geometry, bool(count_include_pad))(input)


# ---- activations and normalisation -------------------------------------------

class ReLU(Function):
    name = "relu"

    def forward(self, x):
        self.y = kernels.for_array(x).relu_forward(x)
        return self.y

    def backward(self, grad):
        return kernels.for_array(grad).relu_backward(grad, self.y)


def relu(input):
    check_tensor("relu", "input", input)
    return ReLU()(input)


class LocalResponseNorm(Function):
    name = "local_response_norm"

    def __init__(self, size, alpha, beta, k):
        self.params = size, alpha, beta, k

    def forward(self, x):
        y, scale = kernels.for_array(x).lrn_forward(x, *self.params)
        self.x, self.y, self.scale = x, y, scale
        return y

    def backward(self, grad):
        return kernels.for_array(grad).lrn_backward(self.x, self.y, self.scale, grad, *self.params)


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Normalise each value by the energy of `size` neighbouring channels (across channels)."""
    check_tensor("local_response_norm", "input", input, ndim=4)
    return LocalResponseNorm(*lrn_arguments("local_response_norm", size, alpha, beta, k))(input)


class BatchNorm(Function):
    """Batch normalisation, optionally fused with the ReLU that follows (name batch_norm_relu): the kernels
    clamp in the pass that normalises, and mask the gradient in the backward's passes."""

    fresh_grads = True

    def __init__(self, running_mean, running_var, training, momentum, eps, relu=False):
        self.running = running_mean, running_var
        self.training, self.momentum, self.eps, self.relu = training, momentum, eps, relu
        self.name = "batch_norm_relu" if relu else "batch_norm"

    def forward(self, x, weight=None, bias=None):
        y, self.mean, self.invstd = kernels.for_array(x).batch_norm_forward(
            x, weight, bias, *self.running, self.training, self.momentum, self.eps, self.relu)
        self.x, self.weight, self.affine = x, weight, weight is not None
        self.y = y if self.relu else None
        return y

    def backward(self, grad):
        batch_statistics = self.training or self.running[0] is None
        grad_x, grad_weight, grad_bias = kernels.for_array(grad).batch_norm_backward(
            grad, self.x, self.weight, self.mean, self.invstd, batch_statistics, self.y)
        return (grad_x, grad_weight, grad_bias) if self.affine else grad_x


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               relu=False):
    """Batch normalisation over the channels (dim 1) of an (N, C), (N, C, L) or (N, C, H, W) input, as
    torch.nn.functional.batch_norm: in training the batch's statistics (the variance biased) normalise, and the
    running ones (Tensors, or None) are updated in place, the variance unbiased; else the running ones
    normalise.  relu=True: relu(batch_norm(...)) as one op."""
    op = "batch_norm"
    check_tensor(op, "input", input, ndim=(2, 3, 4))
    channels = input.shape[1]
    named = {"running_mean": running_mean, "running_var": running_var, "weight": weight, "bias": bias}
    for name, t in named.items():
        if t is not None:
            check_tensor(op, name, t, ndim=1)
            if t.shape != (channels,):
                raise ValueError(f"{op}: {name} must have shape ({channels},) for input of shape {input.shape}, "
                                 f"got {t.shape}")
            if t.dtype != input.dtype:
                raise TypeError(f"{op}: {name} has dtype {t.dtype} but input has dtype {input.dtype}")
            if t.device != input.device:
                raise ValueError(f"{op}: {name} is on {t.device} but input is on {input.device}")
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: give both running_mean and running_var, or neither")
    if (weight is None) != (bias is None):
        raise ValueError(f"{op}: give both weight and bias, or neither")
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not np.isfinite(eps) or eps < 0:
        raise ValueError(f"{op}: eps must be a finite number >= 0, got {eps!r}")
    if not isinstance(momentum, numbers.Real) or isinstance(momentum, bool) or not 0 <= momentum <= 1:
        raise ValueError(f"{op}: momentum must be a number in [0, 1], got {momentum!r}")
    if training and input.numel() // channels <= 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, got input of shape {input.shape}")
    x = input if input.ndim == 4 else input.reshape(*input.shape, *(1,) * (4 - input.ndim))
    fn = BatchNorm(None if running_mean is None else running_mean.data, None if running_var is None else running_var.data,
                   bool(training), float(momentum), float(eps), bool(relu))
    y = fn(x) if weight is None else fn(x, weight, bias)
    if training and running_mean is not None:
        running_mean._bump()                         # changed in place: a graph that saved them sees it
        running_var._bump()
    return y if input.ndim == 4 else y.reshape(input.shape)


# ---- fully connected, dropout --------------------------------------------------

# With a batch's few rows as its M, x @ W^T gives each of OpenBLAS's two threads a handful of rows;
# as (W @ x^T)^T they split the outputs instead.  Measured (alternating, 8-128 rows, GoogLeNet's
# 1024->1000 and 2048->1024 layers): 1.2-1.8x faster, as fast as PyTorch at 8 and 32 rows; from 256
# rows on, either order (1.00-1.04x).  The weight gradient keeps its order: swapped it came out
# transposed, and the optimiser's in-place update would copy it back (8 MB: slower than the gain).
_FEW_ROWS = 128


class Linear(Function):
    name = "linear"
    fresh_grads = True                   # each gradient is a new GEMM result or sum

    def forward(self, x, weight, bias=None):
        self.x, self.weight, self.has_bias = x, weight, bias is not None
        rows = x.reshape(-1, x.shape[-1])
        if rows.shape[0] <= _FEW_ROWS and array_module(x) is np:       # measured on OpenBLAS only
            y = (weight @ rows.T).T.reshape(*x.shape[:-1], weight.shape[0])
        else:
            y = x @ weight.T
        return y + bias if bias is not None else y

    def backward(self, grad):
        lead = grad.reshape(-1, grad.shape[-1])           # (*, out) -> (rows, out)
        grad_x = grad @ self.weight if self.needs_input_grad[0] else None
        rows = self.x.reshape(-1, self.x.shape[-1])
        # One row (a batch of one image): a GEMM of k = 1 runs at a fifth of the speed of the outer product,
        # the same products (measured: 1024->1000 1.46 against 0.33 ms, 2048->1024 3.0 against 0.67)
        grad_weight = array_module(grad).outer(lead[0], rows[0]) if len(rows) == 1 else lead.T @ rows
        return (grad_x, grad_weight, lead.sum(axis=0)) if self.has_bias else (grad_x, grad_weight)


def linear(input, weight, bias=None):
    """y = input @ weight.T + bias, weight of shape (out_features, in_features)."""
    check_tensor("linear", "input", input, ndim=tuple(range(1, 9)))
    check_tensor("linear", "weight", weight, ndim=2)
    if bias is not None:
        check_tensor("linear", "bias", bias, ndim=1)
    check_same_device_and_dtype("linear", input=input, weight=weight, bias=bias)
    if input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input has {input.shape[-1]} features but weight expects {weight.shape[1]} "
                         f"(input shape {input.shape}, weight shape {weight.shape})")
    if bias is not None and bias.shape[0] != weight.shape[0]:
        raise ValueError(f"linear: bias has {bias.shape[0]} entries but weight has {weight.shape[0]} outputs")
    return Linear()(input, weight) if bias is None else Linear()(input, weight, bias)


class Dropout(Function):
    name = "dropout"

    def __init__(self, p):
        self.p = p

    def forward(self, x):
        keep = random.uniform(x.shape, like=x) >= self.p
        self.mask = keep.astype(x.dtype) / x.dtype.type(1 - self.p)   # scale kept values by 1/(1-p)
        return x * self.mask

    def backward(self, grad):
        return grad * self.mask


def dropout(input, p=0.5, training=True):
    """Zero each value with probability p in training, scaling the rest by 1/(1-p)."""
    check_tensor("dropout", "input", input)
    check_probability("dropout", "p", p)
    return Dropout(float(p))(input) if training and p > 0 else input


# ---- classification losses ---------------------------------------------------------

class LogSoftmax(Function):
    name = "log_softmax"

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        xp = array_module(x)
        shifted = x - x.max(axis=self.dim, keepdims=True)     # exp never overflows
        self.y = shifted - xp.log(xp.exp(shifted).sum(axis=self.dim, keepdims=True))
        return self.y

    def backward(self, grad):
        xp = array_module(grad)
        return grad - xp.exp(self.y) * grad.sum(axis=self.dim, keepdims=True)


def log_softmax(input, dim):
    check_tensor("log_softmax", "input", input, ndim=tuple(range(1, 33)))
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool) or not -input.ndim <= dim < input.ndim:
        raise ValueError(f"log_softmax: dim {dim!r} is out of range for input shape {input.shape}")
    return LogSoftmax(int(dim) % input.ndim)(input)


class Softmax(Function):
    name = "softmax"

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        xp = array_module(x)
        e = xp.exp(x - x.max(axis=self.dim, keepdims=True))      # exp never overflows
        self.y = e / e.sum(axis=self.dim, keepdims=True)
        return self.y

    def backward(self, grad):
        return self.y * (grad - (grad * self.y).sum(axis=self.dim, keepdims=True))


def softmax(input, dim):
    """exp(input) / sum(exp(input)) along dim."""
    check_tensor("softmax", "input", input, ndim=tuple(range(1, 33)))
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool) or not -input.ndim <= dim < input.ndim:
        raise ValueError(f"softmax: dim {dim!r} is out of range for input shape {input.shape}")
    return Softmax(int(dim) % input.ndim)(input)


class Pad(Function):
    """Constant padding, per axis (before, after); negative widths crop."""
    name = "pad"

    def __init__(self, widths, value):
        self.widths, self.value = widths, value

    def forward(self, x):
        xp = array_module(x)
        crop = tuple(slice(max(0, -b), n - max(0, -a)) for (b, a), n in zip(self.widths, x.shape))
        kept = x[crop]
        self.shape, self.crop = x.shape, crop
        out = xp.full(tuple(n + max(0, b) + max(0, a) for (b, a), n in zip(self.widths, kept.shape)), self.value, x.dtype)
        self.place = tuple(slice(max(0, b), max(0, b) + n) for (b, _), n in zip(self.widths, kept.shape))
        out[self.place] = kept
        return out

    def backward(self, grad):
        grad_x = array_module(grad).zeros(self.shape, grad.dtype)
        grad_x[self.crop] = grad[self.place]
        return grad_x


def pad(input, pad, value=0.0):
    """input padded with `value`, as torch.nn.functional.pad in constant mode: pad = (left, right, top, bottom,
    ...) pairs from the last dimension backwards; negative widths crop.  value may be -inf (what max-pooling
    reads its padding as)."""
    check_tensor("pad", "input", input, floating=False)
    if not isinstance(pad, (tuple, list)) or len(pad) % 2 or len(pad) // 2 > input.ndim or not all(
            isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in pad):
        raise ValueError(f"pad: pad must be an even number of ints, at most two per dimension of input shape "
                         f"{input.shape}, got {pad!r}")
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"pad: value must be a number, got {value!r}")
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        widths[input.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    for (before, after), n in zip(widths, input.shape):
        if n + before + after < 0 or max(0, -before) + max(0, -after) > n:
            raise ValueError(f"pad: pad {tuple(pad)} crops more than input shape {input.shape} holds")
    if value != value or (abs(value) == float("inf") and input.dtype.kind != "f"):
        raise ValueError(f"pad: value {value} cannot fill a tensor of dtype {input.dtype}")
    return Pad(tuple(widths), value)(input)


class NLLLoss(Function):
    name = "nll_loss"

    def __init__(self, target):
        self.target = target

    def forward(self, log_probs):
        xp = array_module(log_probs)
        self.classes = log_probs.shape[1]
        picked = log_probs[xp.arange(len(self.target)), self.target]
        return xp.asarray(-picked.mean(), dtype=log_probs.dtype)

    def backward(self, grad):
        xp = array_module(grad)
        n = len(self.target)
        grad_input = xp.zeros((n, self.classes), dtype=grad.dtype)
        grad_input[xp.arange(n), self.target] = -grad / n
        return grad_input


def _check_target(op, input, target):
    """The class indices as an array on input's device.  Labels from the host are checked there, before
    they move, so validating them costs the GPU no round trip (labels already on a GPU cost one)."""
    check_tensor(op, "input", input, ndim=2)
    data = target.data if isinstance(target, Tensor) else target
    data = data if is_cuda_array(data) else np.asarray(data)
    if data.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {data.dtype}")
    if data.shape != (input.shape[0],):
        raise ValueError(f"{op}: target must have shape ({input.shape[0]},) to match input {input.shape}, "
                         f"got {data.shape}")
    if data.size and (int(data.min()) < 0 or int(data.max()) >= input.shape[1]):
        raise ValueError(f"{op}: target values must be in [0, {input.shape[1]}), got range "
                         f"[{int(data.min())}, {int(data.max())}]")
    return to_device(data, input.device)


def nll_loss(input, target):
    """Mean over the batch of -input[n, target[n]] (input holds log-probabilities)."""
    return NLLLoss(_check_target("nll_loss", input, target))(input)


def cross_entropy(input, target, label_smoothing=0.0):
    """Mean cross-entropy of logits (N, C) against integer targets (N,).  label_smoothing (in [0, 1], as in
    PyTorch and "Rethinking the Inception Architecture"): the target becomes (1 - s) on its class plus s / C
    on every class, i.e. the loss (1 - s) * nll + s * the mean over classes of -log p."""
    target = _check_target("cross_entropy", input, target)
    if not isinstance(label_smoothing, numbers.Real) or isinstance(label_smoothing, bool) \
            or not 0 <= label_smoothing <= 1:
        raise ValueError(f"cross_entropy: label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    log_probs = log_softmax(input, 1)
    loss = NLLLoss(target)(log_probs)
    if label_smoothing:
        loss = loss * (1.0 - label_smoothing) - log_probs.mean() * float(label_smoothing)
    return loss


# ---- concatenation (the Inception merge) -------------------------------------------

class Cat(Function):
    name = "cat"

    def __init__(self, dim):
        self.dim = dim

    def forward(self, *arrays):
        self.sizes = [a.shape[self.dim] for a in arrays]
        return kernels.for_array(arrays[0]).concat(arrays, self.dim)

    def backward(self, grad):
        return tuple(kernels.for_array(grad).split(grad, self.sizes, self.dim))


class Split(Function):
    """Several outputs: consecutive pieces along dim (views of the input where the kernels allow)."""
    name = "split"

    def __init__(self, sizes, dim):
        self.sizes, self.dim = sizes, dim

    def forward(self, x):
        pieces = tuple(kernels.for_array(x).split(x, self.sizes, self.dim))
        self.shares_input_memory = is_view_of(pieces[0], x)      # views on the CPU, copies on a GPU
        return pieces

    def backward(self, grads):
        like = next(g for g in grads if g is not None)
        xp = array_module(like)
        grads = [xp.zeros(like.shape[:self.dim] + (size,) + like.shape[self.dim + 1:], like.dtype) if g is None else g
                 for g, size in zip(grads, self.sizes)]             # pieces that were not used: zero gradient
        return kernels.for_array(like).concat(grads, self.dim)


def split(tensor, split_size_or_sections, dim=0):
    """Pieces of `tensor` along dim, as torch.split: an int gives pieces of that size (the last may be
    smaller), a list gives the sizes, which must add up to the dimension.  Returns a tuple of tensors;
    the backward concatenates their gradients (zeros for pieces not used)."""
    check_tensor("split", "tensor", tensor, floating=False)
    if tensor.ndim == 0:
        raise ValueError("split: cannot split a 0-d tensor")
    if not isinstance(dim, numbers.Integral) or not -tensor.ndim <= dim < tensor.ndim:
        raise ValueError(f"split: dim {dim!r} is out of range for a tensor of shape {tensor.shape}")
    dim = int(dim) % tensor.ndim
    length = tensor.shape[dim]
    if isinstance(split_size_or_sections, numbers.Integral) and not isinstance(split_size_or_sections, bool):
        size = int(split_size_or_sections)
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [min(size, length - start) for start in range(0, length, size)] or [0]
    elif isinstance(split_size_or_sections, (list, tuple)) and all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0 for s in split_size_or_sections):
        sizes = [int(s) for s in split_size_or_sections]
        if not sizes or sum(sizes) != length:
            raise ValueError(f"split: split_size_or_sections {list(sizes)} must add up to {length}, the size of "
                             f"dim {dim} of a tensor of shape {tensor.shape}")
    else:
        raise TypeError(f"split: split_size_or_sections must be a positive int or a list of non-negative ints, "
                        f"got {split_size_or_sections!r}")
    return Split(sizes, dim)(tensor)


def cat(tensors, dim=1):
    """Concatenate tensors along dim; its backward splits the gradient back."""
    if isinstance(tensors, Tensor) or not len(tensors):
        raise TypeError("cat: expected a non-empty sequence of Tensors")
    for i, t in enumerate(tensors):
        check_tensor("cat", f"tensors[{i}]", t, floating=False)
    first = tensors[0]
    if not isinstance(dim, numbers.Integral) or not -first.ndim <= dim < first.ndim:
        raise ValueError(f"cat: dim {dim!r} is out of range for tensors of shape {first.shape}")
    dim = int(dim) % first.ndim
    for i, t in enumerate(tensors[1:], 1):
        if t.ndim != first.ndim or t.shape[:dim] + t.shape[dim + 1:] != first.shape[:dim] + first.shape[dim + 1:]:
            raise ValueError(f"cat: tensors[{i}] has shape {t.shape}, which does not match tensors[0]'s "
                             f"{first.shape} outside dim {dim}")
    return Cat(dim)(*tensors)
