"""The Table-1 rows of an imported ONNX network (python -m models.summary FILE.onnx), from its graph.

The graph runs once on a zero image, which gives every value's shape.  Its layers are found from the graph's
structure, as the paper's table groups them: wherever a single value carries everything the rest of the network
needs, one layer ends; a stretch between two such points that ends in a Concat is an Inception module, any other
stretch is read node by node (a convolution with the ReLU and batch normalisation after it, a pool, LRN, dropout,
a fully connected layer, the softmax).  A row is named after the weights it reads as the file names them
(`inception_3a/1x1_w_0` -> inception_3a, `layers.3a.branch1x1.conv.weight` -> 3a); consecutive convolutions of
one name are one row (GoogLeNet's conv2: a 1x1 reduction, then 3x3).
"""

from __future__ import annotations

import math

import numpy as np

import minigrad

from . import COLUMNS

WEIGHTED = {"Conv", "Gemm", "MatMul"}
ROW_TYPES = {"MaxPool": "max pool", "AveragePool": "avg pool", "GlobalAveragePool": "avg pool",
             "LRN": "local response norm", "Softmax": "softmax", "LogSoftmax": "softmax"}


def onnx_summary(model, input_size=None):
    """Rows in the format of models.summary.summary (the format_table input) for an OnnxModel."""
    image = _image_input(model)
    shape = (1, *model.input_shape(input_size))
    feeds = [np.zeros(shape if name == image else [d or 1 for d in model.input_shapes[name]], np.float32)
             for name in model.input_names]
    with minigrad.no_grad():
        values = model.values(*[minigrad.Tensor(a) for a in feeds])
    data_nodes = _data_nodes(model, image)
    naming = _Naming(model, data_nodes)
    rows = []
    for segment in _segments(data_nodes, image, model.output_names):
        if any(n.op_type == "Concat" for n in segment):
            rows.append(_module_row(segment, values, naming))
        else:
            for node in segment:
                _add_node(rows, node, values, naming)
    for row in rows:
        row.pop("_first", None)                    # a convolution row's own filters, kept for merging
    trunk = list(rows)
    rows.append({"name": "total (inference)", "type": "total", "patch": None, "output": None,
                 "depth": sum(r["depth"] for r in trunk), **dict.fromkeys(COLUMNS),
                 **{k: sum(r[k] for r in trunk) for k in ("params", "weights", "multiply_adds")}})
    return rows


def _image_input(model):
    for name in model.input_names:
        if len(model.input_shapes[name]) == 4:
            return name
    raise ValueError(f"summary: the graph has no image input (N, C, H, W); its inputs are {model.input_shapes}")


def _data_nodes(model, image):
    """The nodes that compute on the image (not on weights or shapes alone), in order."""
    reached, chosen = {image}, []
    for node in model.nodes:
        if any(name in reached for name in node.inputs) and node.op_type != "Shape":
            chosen.append(node)
            reached.update(node.outputs)
    return chosen


def _segments(nodes, image, outputs):
    """The nodes cut wherever one value alone is still to be read: each stretch between two such points."""
    readers = {}
    for index, node in enumerate(nodes):
        for name in node.inputs:
            readers.setdefault(name, []).append(index)
    live, segment = {image}, []
    for index, node in enumerate(nodes):
        segment.append(node)
        live.update(o for o in node.outputs if o)
        live = {name for name in live if name in outputs or any(i > index for i in readers.get(name, []))}
        if len(live) <= 1:
            yield segment
            segment = []
    if segment:
        yield segment


class _Naming:
    """Row names from weight names: the file's own ('/' separates Caffe's layer from its blob), less a first
    part that every weight shares (a torch Sequential's `layers.`)."""

    def __init__(self, model, nodes):
        names = [n.inputs[1] for n in nodes if n.op_type in WEIGHTED and len(n.inputs) > 1]
        firsts = {self._parts(name)[0] for name in names}
        self.drop = 1 if len(firsts) == 1 and len(names) > 1 and all(len(self._parts(n)) > 2 for n in names) else 0

    @staticmethod
    def _parts(name):
        return name.split("/") if "/" in name else name.split(".")

    def of(self, node):
        if node.op_type in WEIGHTED and len(node.inputs) > 1:
            parts = self._parts(node.inputs[1])
            return parts[min(self.drop, len(parts) - 1)]
        path = node.name.strip("/")                 # a node named by its module (layers.pool1/MaxPool, /4/Pad)
        if "/" not in path:
            return node.name
        parts = path.rsplit("/", 1)[0].split(".")
        return parts[min(self.drop, len(parts) - 1)]


def _shape(values, name):
    shape = values[name].shape
    return (*shape[2:], shape[1]) if len(shape) == 4 else tuple(shape[1:])


def _size(values, name):
    return int(np.prod(values[name].shape)) if name in values else 0


def _conv_cost(node, values):
    """(weights, params, multiply-adds) of one Conv or fully connected node, for one image."""
    w = values[node.inputs[1]]
    weights = int(np.prod(w.shape))
    params = weights + sum(_size(values, name) for name in node.inputs[2:3] if name)
    out = values[node.outputs[0]].shape
    pixels = math.prod(out[2:]) if node.op_type == "Conv" else 1
    per_output = math.prod(w.shape[1:]) if node.op_type == "Conv" else weights // max(1, out[-1])
    return weights, params, out[1] * per_output * pixels if node.op_type == "Conv" else weights


def _row(name, kind, patch, output, depth=0, weights=0, params=0, macs=0, **columns):
    return {"name": name, "type": kind, "patch": patch, "output": output, "depth": depth,
            **dict.fromkeys(COLUMNS), **columns, "params": params, "weights": weights, "multiply_adds": macs}


def _window(node, values):
    if node.op_type == "GlobalAveragePool":
        h, w = values[node.inputs[0]].shape[2:]
        return f"{h}x{w}/1"
    kernel, strides = node.attrs.get("kernel_shape", [1, 1]), node.attrs.get("strides", [1, 1])
    return f"{kernel[0]}x{kernel[1]}/{strides[0]}"


def _add_node(rows, node, values, naming):
    op, output = node.op_type, _shape(values, node.outputs[0])
    previous = rows[-1] if rows else None
    if op in WEIGHTED and len(node.inputs) > 1 and node.inputs[1] in values and values[node.inputs[1]].ndim >= 2:
        weights, params, macs = _conv_cost(node, values)
        name = naming.of(node)
        if op == "Conv":
            patch = _window(node, values)
            if previous and previous["type"] == "convolution" and previous["name"] == name:   # conv2: 1x1, then 3x3
                previous.update(patch=patch, output=output, depth=previous["depth"] + 1,
                                weights=previous["weights"] + weights, params=previous["params"] + params,
                                multiply_adds=previous["multiply_adds"] + macs,
                                n3x3red=previous["_first"], n3x3=output[-1])
                return
            rows.append(_row(name, "convolution", patch, output, 1, weights, params, macs, _first=output[-1]))
        else:
            rows.append(_row(name, "linear", None, output, 1, weights, params, macs))
    elif op in ROW_TYPES:
        rows.append(_row(naming.of(node), ROW_TYPES[op], _window(node, values) if "Pool" in op else None, output))
    elif op == "Dropout":
        rows.append(_row(naming.of(node), f"dropout ({node.attrs.get('ratio', 0.5):.0%})", None, output))
    elif previous is not None:                     # ReLU, batch norm, reshapes: part of the layer before
        if op == "BatchNormalization":
            previous["params"] += sum(_size(values, name) for name in node.inputs[1:3])
        if len(output) == len(previous["output"] or ()):
            previous["output"] = output


def _module_row(segment, values, naming):
    """An Inception module: its branches (each Concat input traced back to the module's input) give the
    filter columns where the module is GoogLeNet's (1x1; 1x1 -> 3x3; 1x1 -> 5x5; pool -> 1x1)."""
    produced = {o: n for n in segment for o in n.outputs}
    concat = [n for n in segment if n.op_type == "Concat"][-1]
    branches = []
    for name in concat.inputs:
        chain, frontier = [], [name]
        while frontier:
            node = produced.get(frontier.pop())
            if node is not None and node not in chain:
                chain.append(node)
                frontier.extend(node.inputs)
        branches.append(list(reversed(chain)))
    costs = [_conv_cost(n, values) for n in segment if n.op_type in WEIGHTED and len(n.inputs) > 1]
    convs = [[n for n in branch if n.op_type == "Conv"] for branch in branches]
    names = [naming.of(n) for n in segment if n.op_type in WEIGHTED and len(n.inputs) > 1]
    params = sum(c[1] for c in costs) + sum(_size(values, name) for n in segment if n.op_type == "BatchNormalization"
                                            for name in n.inputs[1:3])
    row = _row(max(set(names), key=names.count) if names else concat.name, "inception", None,
               _shape(values, concat.outputs[0]), max((len(c) for c in convs), default=0),
               sum(c[0] for c in costs), params, sum(c[2] for c in costs))
    row.update(_googlenet_columns(branches, convs, values))
    return row


def _googlenet_columns(branches, convs, values):
    columns = {}
    for branch, chain in zip(branches, convs):
        kernels = [tuple(values[n.inputs[1]].shape[2:]) for n in chain]
        filters = [values[n.inputs[1]].shape[0] for n in chain]
        pooled = any(n.op_type == "MaxPool" for n in branch)
        if pooled and kernels == [(1, 1)]:
            columns["pool_proj"] = filters[0]
        elif kernels == [(1, 1)]:
            columns["n1x1"] = filters[0]
        elif kernels == [(1, 1), (3, 3)]:
            columns.update(n3x3red=filters[0], n3x3=filters[1])
        elif kernels == [(1, 1), (5, 5)]:
            columns.update(n5x5red=filters[0], n5x5=filters[1])
        else:
            return {}                              # not GoogLeNet's module: no columns rather than wrong ones
    return columns if len(columns) == len(COLUMNS) else {}
