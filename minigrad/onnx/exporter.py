"""A minigrad network as an ONNX graph: run it once on an example input, record every op it runs (the engine
tells an observer of each Function call, as it tells the profiler), and write each op as ONNX's operator.

What the ops read that the network did not compute is named by where it lives: the example inputs (`input`,
or `input_0`, `input_1`, ...), the model's parameters and buffers (their state_dict names, so a loaded file's
initializers line up with the model's), and anything else (a Python scalar in `x * 0.5`) a constant.  Shapes
are those of the example (the batch dimension included), as torch.onnx.export writes them by default.
"""

from __future__ import annotations

import numpy as np

from .. import autograd
from .. import functional as F
from ..autograd import Tensor
from ..backend import to_numpy
from ..profiler import observing
from . import OnnxError, _onnx

FIRST_OPSET = 13          # Softmax on one axis, ReduceSum's and Split's inputs: the forms this file writes


class _Recorder:
    """Told of each Function call while the model runs (profiler.observing), with the module that ran it."""

    def __init__(self):
        self.calls, self.layers = [], []

    def forward(self, fn, inputs, outputs, seconds):
        self.calls.append((fn, inputs, outputs, self.layers[-1] if self.layers else ""))

    def backward(self, fn, slots, grads, seconds):
        pass


class _Graph:
    """The nodes and initializers being written, and the ONNX name of each tensor seen so far."""

    def __init__(self, onnx):
        self.onnx, self.nodes, self.initializers, self.names = onnx, [], [], {}
        self.taken, self.layer = set(), ""

    def fresh(self, stem):
        name, n = stem, 1
        while name in self.taken:
            name, n = f"{stem}_{n}", n + 1
        self.taken.add(name)
        return name

    def constant(self, array, stem="const"):
        name = self.fresh(stem)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, values, stem):
        return self.constant(np.asarray(values, np.int64), stem)

    def node(self, op_type, inputs, outputs=None, **attributes):
        outputs = outputs or [self.fresh(op_type.lower())]
        stem = f"{self.layer}/{op_type}" if self.layer else op_type       # the module that ran it: layers.3a/Conv
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, outputs, name=self.fresh(stem), **attributes))
        return outputs[0] if len(outputs) == 1 else outputs


# ---- one writer per Function: (graph, fn, input names, input tensors, output names) -------------------------

def _window(fn_kernel, stride, padding):
    return {"kernel_shape": list(fn_kernel), "strides": list(stride), "pads": [*padding, *padding]}


def _conv(g, fn, names, inputs, outs):
    kernel = inputs[1].shape[2:]
    window = _window(kernel, fn.stride, fn.padding)
    if fn.relu:
        g.node("Relu", [g.node("Conv", names, **window)], outs)
    else:
        g.node("Conv", names, outs, **window)


def _max_pool(g, fn, names, inputs, outs):
    kernel, stride, padding, ceil_mode = fn.geometry
    g.node("MaxPool", names, outs, ceil_mode=int(ceil_mode), **_window(kernel, stride, padding))


def _avg_pool(g, fn, names, inputs, outs):
    kernel, stride, padding, ceil_mode, count_include_pad = fn.geometry
    g.node("AveragePool", names, outs, ceil_mode=int(ceil_mode), count_include_pad=int(count_include_pad),
           **_window(kernel, stride, padding))


def _lrn(g, fn, names, inputs, outs):
    size, alpha, beta, k = fn.params
    attributes = {"size": int(size), "alpha": float(alpha), "beta": float(beta), "bias": float(k)}
    if size % 2:
        g.node("LRN", names, outs, **attributes)
        return
    # An even window: minigrad (as PyTorch) sums size/2 channels below and size/2 - 1 above, ONNX the reverse;
    # on the channels in reverse order the two agree.
    reverse = g.ints(np.arange(inputs[0].shape[1])[::-1], "reverse_channels")
    flipped = g.node("LRN", [g.node("Gather", [names[0], reverse], axis=1)], **attributes)
    g.node("Gather", [flipped, reverse], outs, axis=1)


def _batch_norm(g, fn, names, inputs, outs):
    if fn.training or fn.running[0] is None:
        raise OnnxError("export: batch_norm on the batch's own statistics (training mode, or no running statistics) "
                        "has no ONNX inference form; export in eval mode with running statistics")
    channels = inputs[0].shape[1]
    dtype = to_numpy(fn.running[0]).dtype
    scale, shift = names[1:] if len(names) == 3 else (g.constant(np.ones(channels, dtype), "bn_scale"),
                                                      g.constant(np.zeros(channels, dtype), "bn_shift"))
    mean, var = (g.array_name(a, "running_mean") for a in fn.running)
    target = [g.fresh("batch_norm")] if fn.relu else outs
    g.node("BatchNormalization", [names[0], scale, shift, mean, var], target, epsilon=float(fn.eps))
    if fn.relu:
        g.node("Relu", target, outs)


def _linear(g, fn, names, inputs, outs):
    if inputs[0].ndim == 2:
        g.node("Gemm", names, outs, transB=1)
        return
    product = g.node("MatMul", [names[0], g.node("Transpose", [names[1]], perm=[1, 0])])
    if len(names) == 3:
        g.node("Add", [product, names[2]], outs)
    else:
        g.node("Identity", [product], outs)


def _pad(g, fn, names, inputs, outs):
    before, after = zip(*fn.widths)
    value = g.constant(np.asarray(fn.value, inputs[0].dtype), "pad_value")
    g.node("Pad", [names[0], g.ints([*before, *after], "pads"), value], outs, mode="constant")


def _reshape(g, fn, names, inputs, outs):
    shape = [int(n) for n in fn.shape]
    if shape and inputs[0].ndim and shape[0] == inputs[0].shape[0]:
        shape[0] = 0                        # "as the input's": the batch dimension stays the input's
    g.node("Reshape", [names[0], g.ints(shape, "shape")], outs)


def _sum(g, fn, names, inputs, outs):
    axes = range(inputs[0].ndim) if fn.axes is None else np.atleast_1d(fn.axes)
    g.node("ReduceSum", [names[0], g.ints(list(axes), "axes")], outs, keepdims=int(fn.keepdim))


def _split(g, fn, names, inputs, outs):
    g.node("Split", [names[0], g.ints(fn.sizes, "split")], outs, axis=fn.dim)


def _cast(g, fn, names, inputs, outs):
    g.node("Cast", names, outs, to=g.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(fn.dtype)))


def _pow(g, fn, names, inputs, outs):
    g.node("Pow", [names[0], g.constant(np.asarray(fn.exponent, inputs[0].dtype), "exponent")], outs)


def _simple(op_type, **attributes_of):
    """An operator that takes the Function's inputs as they are, with attributes read off the Function."""
    def write(g, fn, names, inputs, outs):
        g.node(op_type, names, outs, **{key: read(fn) for key, read in attributes_of.items()})
    return write


WRITERS = {
    F.Conv2d: _conv,
    F.MaxPool2d: _max_pool,
    F.AvgPool2d: _avg_pool,
    F.ReLU: _simple("Relu"),
    F.LocalResponseNorm: _lrn,
    F.BatchNorm: _batch_norm,
    F.Linear: _linear,
    F.Softmax: _simple("Softmax", axis=lambda fn: fn.dim),
    F.LogSoftmax: _simple("LogSoftmax", axis=lambda fn: fn.dim),
    F.Pad: _pad,
    F.Cat: _simple("Concat", axis=lambda fn: fn.dim),
    F.Split: _split,
    autograd.Add: _simple("Add"),
    autograd.Sub: _simple("Sub"),
    autograd.Mul: _simple("Mul"),
    autograd.Div: _simple("Div"),
    autograd.Neg: _simple("Neg"),
    autograd.Pow: _pow,
    autograd.MatMul: _simple("MatMul"),
    autograd.Cast: _cast,
    autograd.ToDevice: _simple("Identity"),
    autograd.Contiguous: _simple("Identity"),
    autograd.Reshape: _reshape,
    autograd.Permute: _simple("Transpose", perm=lambda fn: [int(d) for d in fn.dims]),
    autograd.Sum: _sum,
}


def _as_tensors(example_input):
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"export: example_input{'' if len(inputs) == 1 else f'[{i}]'} must be a Tensor, got "
                            f"{type(x).__name__}")
    return tuple(inputs)


def _value_info(onnx, name, tensor):
    element = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(tensor.dtype))
    return onnx.helper.make_tensor_value_info(name, element, list(tensor.shape))


def export_model(model, example_input, path, opset_version=17, input_names=None, output_names=None):
    onnx = _onnx()
    from .. import nn
    if not isinstance(model, nn.Module):
        raise TypeError(f"export: model must be an nn.Module, got {type(model).__name__}")
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset_version, int) or isinstance(opset_version, bool) or not FIRST_OPSET <= opset_version <= newest:
        raise ValueError(f"export: opset_version must be an int from {FIRST_OPSET} to {newest} (the installed onnx's "
                         f"newest), got {opset_version!r}")
    inputs = _as_tensors(example_input)
    input_names = list(input_names or (["input"] if len(inputs) == 1 else [f"input_{i}" for i in range(len(inputs))]))
    if len(input_names) != len(inputs):
        raise ValueError(f"export: {len(input_names)} input_names for {len(inputs)} example inputs")

    was_training = model.training
    model.eval()
    recorder = _Recorder()
    try:
        with autograd.no_grad(), observing(recorder, model):
            result = model(*inputs)
    finally:
        model.train(was_training)
    results = result if isinstance(result, tuple) else (result,)
    if not all(isinstance(r, Tensor) for r in results):
        raise TypeError("export: the model must return a Tensor or a tuple of Tensors")
    output_names = list(output_names or (["output"] if len(results) == 1 else
                                         [f"output_{i}" for i in range(len(results))]))
    if len(output_names) != len(results):
        raise ValueError(f"export: {len(output_names)} output_names for {len(results)} outputs")

    g = _Graph(onnx)
    g.taken.update(input_names + output_names)
    by_array = {}                   # parameters and buffers, found by their arrays (batch_norm holds arrays)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        g.taken.add(name)
        by_array[id(tensor.data)] = (name, tensor)
    used = {}

    def array_name(array, stem):
        if id(array) in by_array:
            name, tensor = by_array[id(array)]
            if name not in used:
                g.initializers.append(onnx.numpy_helper.from_array(np.ascontiguousarray(to_numpy(tensor.data)), name))
                used[name] = True
            return name
        return g.constant(to_numpy(array), stem)

    g.array_name = array_name
    for name, x in zip(input_names, inputs):
        g.names[id(x)] = name
    final = {id(r): name for r, name in zip(results, output_names)}
    for r in results:
        if id(r) in g.names:                 # an input returned as it is
            g.node("Identity", [g.names[id(r)]], [final[id(r)]])

    for fn, fn_inputs, fn_outputs, layer in recorder.calls:
        g.layer = layer
        writer = WRITERS.get(type(fn))
        if writer is None:
            raise OnnxError(f"export: op {fn.op_name()} ({type(fn).__module__}.{type(fn).__name__}) has no ONNX form "
                            f"in minigrad's exporter (it writes {', '.join(sorted(c.__name__ for c in WRITERS))})")
        names = [g.names[id(t)] if id(t) in g.names else array_name(t.data, "const") for t in fn_inputs]
        outs = [final.get(id(t)) or g.fresh(fn.op_name()) for t in fn_outputs]
        for t, name in zip(fn_outputs, outs):
            g.names[id(t)] = name
        writer(g, fn, names, fn_inputs, outs)

    missing = [name for r, name in zip(results, output_names) if id(r) not in g.names]
    if missing:
        raise OnnxError(f"export: outputs {missing} were not computed by any op the model ran")
    graph = onnx.helper.make_graph(
        g.nodes, type(model).__name__, [_value_info(onnx, n, x) for n, x in zip(input_names, inputs)],
        [_value_info(onnx, n, r) for n, r in zip(output_names, results)], g.initializers)
    proto = onnx.helper.make_model(graph, producer_name="minigrad",
                                   opset_imports=[onnx.helper.make_opsetid("", opset_version)])
    proto.ir_version = min(proto.ir_version, _ir_version_for(onnx, opset_version))
    data = proto.SerializeToString()                     # once, for the checker and the file (GoogLeNet: 27 MB)
    try:
        onnx.checker.check_model(data, full_check=True)
    except onnx.checker.ValidationError as error:
        raise OnnxError(f"export: the written graph fails onnx.checker: {error}") from None
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return proto


def _ir_version_for(onnx, opset_version):
    """The IR version that first carried this opset, so that runtimes older than the onnx package read the file."""
    for _release, ir, opset, *_ in onnx.helper.VERSION_TABLE:
        if opset >= opset_version:
            return ir
    return onnx.IR_VERSION
