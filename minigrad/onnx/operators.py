"""ONNX operators as minigrad ops: one function per operator, (node, inputs) -> outputs.

A node's inputs arrive as Tensors (None for an omitted optional input); integer tensors that carry shapes or
axes are read on the host (`ints`).  Each function reads its attributes from `node.attrs` (the operator's
defaults where absent) and refuses, naming itself, what minigrad cannot compute (dilations, groups, 1-D or
3-D pooling, modes other than constant padding).  Semantics follow the operator specifications of opsets 7
to 21: where an attribute became an input (Squeeze's axes, Pad's pads, Dropout's ratio) both are read.
"""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ..backend import array_module, to_numpy
from ..functional import cat


class Unsupported(Exception):
    """What minigrad cannot compute for this node (the importer names the node and operator)."""


def ints(t):
    """An integer input (shapes, axes, pads) as a tuple of Python ints."""
    return tuple(int(v) for v in np.asarray(to_numpy(t.data)).reshape(-1))


def scalar(t):
    """A one-element input (a ratio, a fill value, an exponent) as a Python number."""
    return np.asarray(to_numpy(t.data)).reshape(-1)[0].item()


def constant(array, like=None):
    """A Tensor of an array that no gradient flows into, on `like`'s device."""
    data = np.asarray(array)
    if like is not None:
        data = array_module(like.data).asarray(data)
    return Tensor(data)


def _spatial(node, x, what="images"):
    if x.ndim != 4:
        raise Unsupported(f"its input has shape {x.shape}; minigrad's {node.op_type} takes {what} (N, C, H, W) only")


def _window_attributes(node, x):
    """(kernel, strides, (top, left, bottom, right) pads) of a Conv or pooling node on input x, auto_pad
    resolved against x's size."""
    a = node.attrs
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise Unsupported(f"dilations {a['dilations']} are not supported (only 1)")
    kernel = tuple(a["kernel_shape"]) if "kernel_shape" in a else None
    strides = tuple(a.get("strides", [1, 1]))
    pads = tuple(a.get("pads", [0, 0, 0, 0]))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0, 0, 0, 0]
        for d in range(2):
            size = x.shape[2 + d]
            out = -(-size // strides[d])
            total = max(0, (out - 1) * strides[d] + kernel[d] - size)
            small, large = total // 2, total - total // 2
            pads[d], pads[d + 2] = (small, large) if auto == "SAME_UPPER" else (large, small)
        pads = tuple(pads)
    elif auto == "VALID":
        pads = (0, 0, 0, 0)
    elif auto != "NOTSET":
        raise Unsupported(f"auto_pad {auto!r} is not an ONNX value")
    return kernel, strides, pads


def _padded(x, pads, value):
    """x padded by ONNX pads (top, left, bottom, right) with value: the explicit padding of an asymmetric window."""
    top, left, bottom, right = pads
    return F.pad(x, (left, right, top, bottom), value)


def conv(node, x, w, b=None):
    _spatial(node, x)
    if node.attrs.get("group", 1) != 1:
        raise Unsupported(f"group {node.attrs['group']} is not supported (only 1: no grouped convolutions)")
    kernel, strides, pads = _window_attributes(node, x)
    if kernel is not None and tuple(kernel) != tuple(w.shape[2:]):
        raise Unsupported(f"kernel_shape {kernel} does not match the weight's {w.shape[2:]}")
    if pads[:2] != pads[2:]:                                   # asymmetric: the padding made explicit
        x, pads = _padded(x, pads, 0.0), (0, 0, 0, 0)
    op = F.conv2d_relu if node.relu else F.conv2d
    return op(x, w, b, strides, pads[:2])


def max_pool(node, x):
    _spatial(node, x, "2-D images")
    if len(node.outputs) > 1 and node.outputs[1]:
        raise Unsupported("its Indices output is not supported")
    if node.attrs.get("storage_order", 0):
        raise Unsupported("storage_order 1 is not supported")
    kernel, strides, pads = _window_attributes(node, x)
    ceil = bool(node.attrs.get("ceil_mode", 0))
    if pads[:2] != pads[2:] or pads[0] > kernel[0] // 2 or pads[1] > kernel[1] // 2:
        x, pads = _padded(x, pads, -math.inf), (0, 0, 0, 0)    # padding reads as -inf: never the maximum
    return F.max_pool2d(x, kernel, strides, pads[:2], ceil)


def average_pool(node, x):
    _spatial(node, x, "2-D images")
    kernel, strides, pads = _window_attributes(node, x)
    ceil = bool(node.attrs.get("ceil_mode", 0))
    include = bool(node.attrs.get("count_include_pad", 0))
    if pads[:2] == pads[2:] and pads[0] <= kernel[0] // 2 and pads[1] <= kernel[1] // 2:
        return F.avg_pool2d(x, kernel, strides, pads[:2], ceil, include)
    # Asymmetric padding (the zoo's Caffe conversions pad only the end): zeros made explicit.  Without
    # count_include_pad a window's mean is over its real values: the padded sum over the padded count of ones.
    total = F.avg_pool2d(_padded(x, pads, 0.0), kernel, strides, 0, ceil, True)
    if include:
        return total
    ones = constant(np.ones((1, 1, *x.shape[2:]), x.dtype), x)
    share = F.avg_pool2d(_padded(ones, pads, 0.0), kernel, strides, 0, ceil, True)
    return total / Tensor(share.data)


def global_average_pool(node, x):
    _spatial(node, x)
    return F.avg_pool2d(x, x.shape[2:], 1)


def lrn(node, x):
    _spatial(node, x)
    a = node.attrs
    size = a["size"]
    alpha, beta, bias = a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0)
    if size % 2:
        return F.local_response_norm(x, size, alpha, beta, bias)
    # ONNX centres an even window the other way (floor((size-1)/2) channels before, ceil after; PyTorch's and
    # minigrad's, size//2 before): the same op on the channels in reverse order, reversed back
    reverse = constant(np.arange(x.shape[1])[::-1].copy())
    flipped = _take(x, reverse, 1)
    return _take(F.local_response_norm(flipped, size, alpha, beta, bias), reverse, 1)


def _take(x, index, axis):
    pieces = x.split(1, axis)
    return cat([pieces[i] for i in ints(index)], axis)


def relu(node, x):
    return F.relu(x)


def concat(node, *xs):
    return cat([x for x in xs if x is not None], node.attrs["axis"])


def dropout(node, x, ratio=None, training_mode=None):
    p = float(scalar(ratio)) if ratio is not None else node.attrs.get("ratio", 0.5)
    training = bool(scalar(training_mode)) if training_mode is not None else node.model_training
    y = F.dropout(x, p, training) if training and p > 0 else x
    if len(node.outputs) > 1 and node.outputs[1]:
        mask = (y.data != 0) if training and p > 0 else array_module(x.data).ones(x.shape, bool)
        return y, Tensor(mask)
    return y


def gemm(node, a, b, c=None):
    at, bt = node.attrs.get("transA", 0), node.attrs.get("transB", 0)
    alpha, beta = node.attrs.get("alpha", 1.0), node.attrs.get("beta", 1.0)
    if bt and not at and alpha == 1.0 and (c is None or (beta == 1.0 and c.ndim == 1 and c.shape[0] == b.shape[0])):
        return F.linear(a, b, c)                                   # the fully connected layer's one op
    y = (a.T if at else a) @ (b.T if bt else b)
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return y


def matmul(node, a, b):
    return a @ b


def _integer_pair(x, y):
    return x.dtype.kind in "iub" and y.dtype.kind in "iub"


def add(node, x, y):
    return x + y


def sub(node, x, y):
    return x - y


def mul(node, x, y):
    return x * y


def div(node, x, y):
    if _integer_pair(x, y):                        # ONNX's integer division truncates
        xp = array_module(x.data)
        return Tensor(xp.trunc(x.data / y.data).astype(np.result_type(x.dtype, y.dtype)))
    return x / y


def sum_(node, *xs):
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    return total


def flatten(node, x):
    axis = node.attrs.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    return x.reshape(outer, int(np.prod(x.shape[axis:], dtype=np.int64)))


def reshape(node, x, shape):
    target = list(ints(shape))
    if not node.attrs.get("allowzero", 0):
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return x.reshape(*target) if target else x.reshape(())


def _axes(node, axes_input, ndim):
    axes = ints(axes_input) if axes_input is not None else tuple(node.attrs.get("axes", ()))
    return tuple(sorted(a + ndim if a < 0 else a for a in axes))


def squeeze(node, x, axes=None):
    chosen = _axes(node, axes, x.ndim) or tuple(i for i, n in enumerate(x.shape) if n == 1)
    for a in chosen:
        if x.shape[a] != 1:
            raise Unsupported(f"axis {a} of shape {x.shape} has size {x.shape[a]}, not 1: it cannot be squeezed")
    return x.reshape(*[n for i, n in enumerate(x.shape) if i not in chosen])


def unsqueeze(node, x, axes=None):
    ndim = x.ndim + len(ints(axes) if axes is not None else node.attrs.get("axes", ()))
    chosen = _axes(node, axes, ndim)
    shape, source = [], iter(x.shape)
    for i in range(ndim):
        shape.append(1 if i in chosen else next(source))
    return x.reshape(*shape)


def transpose(node, x):
    perm = node.attrs.get("perm", list(reversed(range(x.ndim))))
    return x.permute(*perm)


def identity(node, x):
    return x


def constant_(node):
    a = node.attrs
    for key, make in (("value", lambda v: v), ("value_float", np.float32), ("value_int", np.int64),
                      ("value_floats", lambda v: np.array(v, np.float32)), ("value_ints", lambda v: np.array(v, np.int64))):
        if key in a:
            return Tensor(np.asarray(make(a[key])))
    raise Unsupported(f"its value is given as {sorted(a)}, which minigrad does not read")


def constant_of_shape(node, shape):
    value = node.attrs.get("value", np.zeros(1, np.float32))
    return Tensor(np.full(ints(shape), np.asarray(value).reshape(-1)[0], dtype=np.asarray(value).dtype))


def pad(node, x, pads=None, value=None, axes=None):
    mode = node.attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise Unsupported(f"mode {mode!r} is not supported (only 'constant')")
    widths = ints(pads) if pads is not None else tuple(node.attrs.get("pads", node.attrs.get("paddings", ())))
    fill = float(scalar(value)) if value is not None and value.numel() else node.attrs.get("value", 0.0)
    chosen = _axes(node, axes, x.ndim) if axes is not None else tuple(range(x.ndim))
    half = len(widths) // 2
    if half != len(chosen):
        raise Unsupported(f"pads {widths} do not give a (begin, end) pair for each of {len(chosen)} axes")
    torch_order = []
    for axis in reversed(range(x.ndim)):                       # F.pad: pairs from the last dimension backwards
        k = chosen.index(axis) if axis in chosen else None
        torch_order += [widths[k], widths[k + half]] if k is not None else [0, 0]
    return F.pad(x, tuple(torch_order), fill)


def _softmax_like(op, node, x):
    axis = node.attrs.get("axis", -1 if node.opset >= 13 else 1)
    axis = axis + x.ndim if axis < 0 else axis
    if node.opset >= 13:
        return op(x, axis)
    shape = x.shape                                            # before opset 13: over everything from axis on
    flat = x.reshape(int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64)))
    return op(flat, 1).reshape(*shape)


def softmax(node, x):
    return _softmax_like(F.softmax, node, x)


def log_softmax(node, x):
    return _softmax_like(F.log_softmax, node, x)


def batch_normalization(node, x, scale, bias, mean, var):
    eps = node.attrs.get("epsilon", 1e-5)
    momentum = node.attrs.get("momentum", 0.9)             # running = running * momentum + batch * (1 - momentum)
    training = bool(node.attrs.get("training_mode", 0))
    if len(node.outputs) > 1 and any(node.outputs[1:]) and training:
        # the training-mode outputs: the batch's statistics (the variance biased, as ONNX specifies) blended in
        y = F.batch_norm(x, None, None, scale, bias, True, 0.0, eps)
        data = to_numpy(x.data).astype(np.float64)
        axes = (0, *range(2, x.ndim))
        new_mean = to_numpy(mean.data) * momentum + data.mean(axis=axes) * (1 - momentum)
        new_var = to_numpy(var.data) * momentum + data.var(axis=axes) * (1 - momentum)
        return y, constant(new_mean.astype(x.dtype), x), constant(new_var.astype(x.dtype), x)
    if node.model_training and not training:               # fine-tuning an imported network: PyTorch's BN training
        return F.batch_norm(x, mean, var, scale, bias, True, 1.0 - momentum, eps)
    return F.batch_norm(x, mean, var, scale, bias, training, 1.0 - momentum, eps)


def shape(node, x):
    start, end = node.attrs.get("start", 0), node.attrs.get("end", None)
    return Tensor(np.array(x.shape[start:end], np.int64))


def gather(node, x, index):
    axis = node.attrs.get("axis", 0)
    axis = axis + x.ndim if axis < 0 else axis
    chosen = np.asarray(to_numpy(index.data))
    if x.dtype.kind in "iub":                                 # shapes and indices: on the host
        return Tensor(np.take(to_numpy(x.data), chosen, axis=axis))
    if chosen.size and not (-x.shape[axis] <= chosen.min() and chosen.max() < x.shape[axis]):
        raise Unsupported(f"indices from {chosen.min()} to {chosen.max()} are out of range for axis {axis} of "
                          f"shape {x.shape}")
    taken = _take(x, constant(chosen.reshape(-1) % x.shape[axis]), axis)     # pieces: a gradient flows back
    return taken.reshape(*x.shape[:axis], *chosen.shape, *x.shape[axis + 1:])


def split(node, x, sizes=None):
    axis = node.attrs.get("axis", 0)
    axis = axis + x.ndim if axis < 0 else axis
    if sizes is not None:
        chosen = list(ints(sizes))
    elif "split" in node.attrs:
        chosen = list(node.attrs["split"])
    else:                                                     # equal pieces (the last smaller), one per output
        count = node.attrs.get("num_outputs", len(node.outputs))
        piece = -(-x.shape[axis] // count)
        chosen = [min(piece, x.shape[axis] - start) for start in range(0, x.shape[axis], piece)]
    if len(chosen) != len(node.outputs):
        raise Unsupported(f"{len(chosen)} pieces {chosen} for {len(node.outputs)} outputs")
    return F.split(x, chosen, axis)


def slice_(node, x, starts=None, ends=None, axes=None, steps=None):
    starts = ints(starts) if starts is not None else tuple(node.attrs["starts"])
    ends = ints(ends) if ends is not None else tuple(node.attrs["ends"])
    axes = ints(axes) if axes is not None else tuple(node.attrs.get("axes", range(len(starts))))
    steps = ints(steps) if steps is not None else (1,) * len(starts)
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = axis + x.ndim if axis < 0 else axis
        index[axis] = slice(start, end, step)                 # Python's slices clamp as ONNX's do
    if x.dtype.kind in "iub":                                 # shapes and indices: on the host
        return Tensor(np.asarray(to_numpy(x.data))[tuple(index)])
    for axis, part in enumerate(index):                       # data: as pieces, so that a gradient flows back
        start, stop, step = part.indices(x.shape[axis])
        if step != 1:
            raise Unsupported(f"a step of {step} along axis {axis} of floating-point data is not supported (only 1)")
        if (start, stop) != (0, x.shape[axis]):
            kept = max(0, stop - start)
            x = x.split([start, kept, x.shape[axis] - start - kept], axis)[1]
    return x


def neg(node, x):
    return -x


def pow_(node, x, exponent):
    if exponent.numel() != 1:
        raise Unsupported(f"an exponent of shape {exponent.shape} is not supported (only one number)")
    return x ** float(scalar(exponent))


def _reduce(method, node, x, axes=None):
    keep = bool(node.attrs.get("keepdims", 1))
    chosen = _axes(node, axes, x.ndim)
    if not chosen:
        if node.attrs.get("noop_with_empty_axes", 0):
            return x
        chosen = None
    return getattr(x, method)(chosen, keep)


def reduce_sum(node, x, axes=None):
    return _reduce("sum", node, x, axes)


def reduce_mean(node, x, axes=None):
    return _reduce("mean", node, x, axes)


def cast(node, x):
    from onnx import helper
    return x.to(helper.tensor_dtype_to_np_dtype(node.attrs["to"]))


# operator -> (function, fewest inputs, most inputs)
OPERATORS = {
    "Conv": (conv, 2, 3), "Relu": (relu, 1, 1), "MaxPool": (max_pool, 1, 1), "AveragePool": (average_pool, 1, 1),
    "GlobalAveragePool": (global_average_pool, 1, 1), "LRN": (lrn, 1, 1), "Concat": (concat, 1, 10**6),
    "Dropout": (dropout, 1, 3), "Gemm": (gemm, 2, 3), "MatMul": (matmul, 2, 2), "Add": (add, 2, 2),
    "Sub": (sub, 2, 2), "Mul": (mul, 2, 2), "Div": (div, 2, 2), "Sum": (sum_, 1, 10**6), "Flatten": (flatten, 1, 1),
    "Reshape": (reshape, 2, 2), "Squeeze": (squeeze, 1, 2), "Unsqueeze": (unsqueeze, 1, 2),
    "Transpose": (transpose, 1, 1), "Identity": (identity, 1, 1), "Constant": (constant_, 0, 0),
    "ConstantOfShape": (constant_of_shape, 1, 1), "Pad": (pad, 1, 4), "Softmax": (softmax, 1, 1),
    "LogSoftmax": (log_softmax, 1, 1), "BatchNormalization": (batch_normalization, 5, 5), "Shape": (shape, 1, 1),
    "Gather": (gather, 2, 2), "Cast": (cast, 1, 1), "Split": (split, 1, 2), "Neg": (neg, 1, 1),
    "Slice": (slice_, 1, 5), "Pow": (pow_, 2, 2),
    "ReduceSum": (reduce_sum, 1, 2), "ReduceMean": (reduce_mean, 1, 2),
}
