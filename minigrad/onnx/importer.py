"""An ONNX graph as an nn.Module whose forward runs its nodes in order, each as minigrad's ops (operators.py).

Float initializers become Parameters named after their ONNX tensors (a Conv's filters stored as nn.Conv2d stores
its weight: the CPU kernels read them in place), the others buffers.  A Conv whose output only a Relu reads runs
as one fused op (F.conv2d_relu), as models.googlenet's convolutions do.  Everything that can be checked before
any input arrives is checked at load: the file, the operators, each node's number of inputs, that every name
a node reads is defined before it.  What depends on the input's shape (a window larger than the image,
shapes that do not agree) is found at the first forward, and named with its node.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from . import OnnxError, _onnx
from .operators import OPERATORS, Unsupported


class _Node:
    """One node: its operator's function, its input and output names, its attributes."""

    def __init__(self, proto, opset, model):
        onnx = _onnx()
        self.op_type, self.name = proto.op_type, proto.name or f"{proto.op_type} -> {proto.output[0]}"
        self.inputs, self.outputs = list(proto.input), list(proto.output)
        self.opset, self.model, self.relu = opset, model, False
        self.attrs = {}
        for a in proto.attribute:
            value = onnx.helper.get_attribute_value(a)
            if isinstance(value, onnx.TensorProto):
                value = onnx.numpy_helper.to_array(value)
            self.attrs[a.name] = value
        if proto.domain not in ("", "ai.onnx"):
            raise OnnxError(f"node {self.name}: operator {proto.domain}.{self.op_type} is not an ONNX operator that "
                            "minigrad has")
        if self.op_type not in OPERATORS:
            raise OnnxError(f"node {self.name}: minigrad has no {self.op_type} operator (it has "
                            f"{', '.join(sorted(OPERATORS))})")
        self.function, fewest, most = OPERATORS[self.op_type]
        given = len(self.inputs)
        if not fewest <= given <= most:
            raise OnnxError(f"node {self.name} ({self.op_type}): {given} inputs, where the operator takes "
                            f"{fewest}{'' if fewest == most else f' to {most}'}")

    @property
    def model_training(self):
        return self.model.training

    def run(self, values):
        args = [values[name] if name else None for name in self.inputs]
        while args and args[-1] is None:                        # omitted trailing optional inputs
            args.pop()
        try:
            out = self.function(self, *args)
        except Unsupported as error:
            raise OnnxError(f"node {self.name} ({self.op_type}): {error}") from None
        except (ValueError, TypeError) as error:
            raise OnnxError(f"node {self.name} ({self.op_type}): {error}") from None
        return out if isinstance(out, tuple) else (out,)


class OnnxModel(nn.Module):
    """An ONNX graph: forward(*inputs) takes its real inputs (not its initializers) in order and returns its
    output, or a tuple of them.  In eval mode after loading (Dropout off, BatchNormalization on its running
    statistics); in training mode those train as minigrad's do."""

    def __init__(self, proto):
        super().__init__()
        onnx = _onnx()
        graph = proto.graph
        self.name = graph.name or "onnx"
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
        initializers = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in initializers]
        self.output_names = [o.name for o in graph.output]
        self.input_shapes = {i.name: tuple(d.dim_value if d.HasField("dim_value") else None
                                           for d in i.type.tensor_type.shape.dim) for i in graph.input}
        self.nodes = [_Node(n, self.opset, self) for n in graph.node]
        filters = {n.inputs[1] for n in self.nodes if n.op_type == "Conv" and len(n.inputs) > 1}
        statistics = self._running_statistics(initializers)
        self._attributes = {}
        for name, array in initializers.items():
            if name in statistics:
                self._keep(name, nn.Buffer(array.copy()))
            elif array.dtype.kind == "f":
                array = array.astype(np.float32 if array.dtype == np.float16 else array.dtype)
                data = nn.stored_filters(array) if name in filters and array.ndim == 4 else array.copy()
                self._keep(name, nn.Parameter(data))
            else:
                self._keep(name, nn.Buffer(array.copy()))
        self._check_names()
        self._fuse_relus()
        self.eval()

    def _running_statistics(self, initializers):
        """The initializers that BatchNormalization reads as running mean and variance: buffers, updated in place
        when the network trains.  Where the node reads one through Identity nodes, or another input reads it too
        (exporters merge equal initializers: a fresh BN's weight and variance are both ones), the node gets a
        copy of its own, so that training never writes into a weight."""
        producers = {o: n for n in self.nodes for o in n.outputs}
        readers = {}
        for n in self.nodes:
            for name in n.inputs:
                readers[name] = readers.get(name, 0) + 1
        statistics = set()
        for node in self.nodes:
            if node.op_type != "BatchNormalization":
                continue
            for i, kind in ((3, "running_mean"), (4, "running_var")):
                name = source = node.inputs[i]
                while source in producers and producers[source].op_type == "Identity":
                    source = producers[source].inputs[0]
                if source not in initializers:
                    continue
                if name == source and readers[name] == 1:
                    statistics.add(name)
                    continue
                copy = f"{node.name}:{kind}"
                initializers[copy] = initializers[source].copy()
                node.inputs[i] = copy
                statistics.add(copy)
        return statistics

    def _keep(self, name, tensor):
        """Store a Parameter or buffer under its ONNX name (as state_dict names it), apart from the Module's
        own attributes."""
        attribute = name if name not in vars(self) and not hasattr(type(self), name) else f"onnx:{name}"
        setattr(self, attribute, tensor)
        self._attributes[name] = attribute

    def _check_names(self):
        defined = set(self.input_names) | set(self._attributes)
        for node in self.nodes:
            for name in node.inputs:
                if name and name not in defined:
                    raise OnnxError(f"node {node.name} ({node.op_type}) reads {name!r}, which no input, initializer or "
                                    "earlier node defines")
            defined.update(o for o in node.outputs if o)
        missing = [o for o in self.output_names if o not in defined]
        if missing:
            raise OnnxError(f"the graph's outputs {missing} are computed by no node")

    def _fuse_relus(self):
        """A Conv whose output is read by exactly one node, a Relu, and is not a graph output: one fused op, the
        Relu then passes the value on."""
        readers = {}
        for node in self.nodes:
            for name in node.inputs:
                readers.setdefault(name, []).append(node)
        for node in self.nodes:
            if node.op_type == "Conv" and node.outputs[0] not in self.output_names:
                after = readers.get(node.outputs[0], [])
                if len(after) == 1 and after[0].op_type == "Relu":
                    node.relu = True
                    after[0].function = lambda node, x: x

    def tensor(self, name):
        """The Parameter or buffer of initializer `name`."""
        return getattr(self, self._attributes[name])

    def input_shape(self, size=None):
        """The first input's (C, H, W) as the graph declares it (H and W `size` where given or undeclared)."""
        shape = self.input_shapes[self.input_names[0]][1:]
        if len(shape) == 3:
            return (shape[0], *(size or s or 224 for s in shape[1:]))
        return tuple(s or 1 for s in shape)

    def forward(self, *inputs):
        values = self._run(inputs, keep_all=False)
        outputs = tuple(values[name] for name in self.output_names)
        return outputs[0] if len(outputs) == 1 else outputs

    def values(self, *inputs):
        """Every value the graph computes on these inputs, by name (for looking inside: models.summary)."""
        return self._run(inputs, keep_all=True)

    def _run(self, inputs, keep_all):
        if len(inputs) != len(self.input_names):
            raise OnnxError(f"{self.name}: the graph takes {len(self.input_names)} inputs ({', '.join(self.input_names)}),"
                            f" got {len(inputs)}")
        from ..autograd import Tensor
        values = {name: self.tensor(name) for name in self._attributes}
        for name, x in zip(self.input_names, inputs):
            values[name] = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
        last_reader = {}
        for index, node in enumerate(self.nodes):
            for name in node.inputs:
                last_reader[name] = index
        for index, node in enumerate(self.nodes):
            for name, out in zip(node.outputs, node.run(values)):
                if name:
                    values[name] = out
            if not keep_all:                          # an activation no later node reads is let go
                for name in node.inputs:
                    if last_reader.get(name) == index and name not in self.output_names and name not in self._attributes:
                        values.pop(name, None)
        return values


def load_model(path_or_bytes):
    onnx = _onnx()
    if isinstance(path_or_bytes, (bytes, bytearray)):
        data, where = bytes(path_or_bytes), "the given bytes"
    else:
        try:
            with open(path_or_bytes, "rb") as f:
                data = f.read()
        except OSError as error:
            raise OnnxError(f"{path_or_bytes}: {error.strerror or error}") from None
        where = str(path_or_bytes)
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as error:                                # protobuf's DecodeError, and its kin
        raise OnnxError(f"{where}: not an ONNX model, or a truncated one ({type(error).__name__}: {error})") from None
    if not proto.HasField("graph") or not proto.graph.output:
        raise OnnxError(f"{where}: not an ONNX model (no graph with outputs)")
    return OnnxModel(proto)
