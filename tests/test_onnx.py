"""minigrad.onnx against independent implementations: every minigrad model exported and run by onnxruntime;
networks of PyTorch layers exported by torch.onnx.export, loaded, and compared with PyTorch forward and
backward; the zoo's GoogLeNet and BN-Inception graphs against onnxruntime; imported networks trained and
gradient-checked; and each kind of bad file or unsupported attribute refused with the node named.
(ONNX's own conformance suite runs in test_onnx_conformance.py.)"""

import io
import os
import re

import numpy as np
import pytest

import minigrad
import minigrad.functional as F
import models
from minigrad import Tensor, nn, optim
from minigrad.gradcheck import check_model
from minigrad.onnx import OnnxError
from minigrad.testing import assert_close, normal

onnx = pytest.importorskip("onnx", reason="the onnx package is not installed (pip install -e '.[test]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[test]')")

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def run_onnxruntime(proto_or_path, *arrays, feeds=None):
    """The outputs of onnxruntime on the graph's inputs in order (or `feeds`, by name)."""
    data = proto_or_path.SerializeToString() if hasattr(proto_or_path, "SerializeToString") else proto_or_path
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, feeds or dict(zip([i.name for i in session.get_inputs()], arrays)))


def assert_library_close(actual, expected):
    """Another runtime's result: the library tolerance, its absolute part scaled by the values' magnitude."""
    expected = np.asarray(expected)
    assert_close(actual, expected, "library", scale=max(1.0, float(np.abs(expected).max())))


# ---- export: minigrad's networks run by onnxruntime ---------------------------------------------------------

@pytest.mark.parametrize("name", list(models.MODELS))
def test_every_model_exported_runs_in_onnxruntime_with_the_same_outputs(name, tmp_path):
    size = models.memory.SMALL_SIZE.get(name, 32)
    model = models.get_model(name, num_classes=10, input_size=size)
    x = Tensor(normal((2, model.in_channels, size, size), 1, np.float32))
    path = tmp_path / f"{name}.onnx"
    proto = minigrad.onnx.export(model, x, path)
    assert model.training                                  # exported in eval mode, left as it was
    model.eval()
    expected = model(x).numpy()
    (theirs,) = run_onnxruntime(str(path), x.numpy())
    assert_library_close(theirs, expected)
    # and back into minigrad: the same network, the same numbers
    loaded = minigrad.onnx.load(path)
    np.testing.assert_array_equal(loaded(x).numpy(), expected)
    weights = {i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert weights and weights <= set(model.state_dict())          # named as the model names them


def test_googlenet_is_written_as_onnx_operators_not_decompositions():
    model = models.googlenet(num_classes=10, input_size=96)
    proto = minigrad.onnx.export(model, Tensor(normal((1, 3, 96, 96), 2, np.float32)), None)
    ops = [n.op_type for n in proto.graph.node]
    assert {"Conv", "Relu", "MaxPool", "LRN", "Concat", "AveragePool", "Gemm"} <= set(ops)
    assert set(ops) <= {"Conv", "Relu", "MaxPool", "LRN", "Concat", "AveragePool", "Gemm", "Reshape"}
    assert ops.count("Conv") == 57 and ops.count("Concat") == 9
    pools = [n for n in proto.graph.node if n.op_type == "MaxPool"]
    assert all(onnx.helper.get_attribute_value(next(a for a in p.attribute if a.name == "ceil_mode")) == 1
               for p in pools if any(a.name == "strides" and list(a.ints) == [2, 2] for a in p.attribute))


class _EveryOp(nn.Module):
    """The ops a network of minigrad's layers may run beyond models.MODELS: negative and -inf padding, BN without
    affine, split, arithmetic with scalars, matmul, permute."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6, affine=False)
        self.fc = nn.Linear(12, 5)
        self.bn.running_mean.data[...] = normal(6, 3, np.float32)
        self.bn.running_var.data[...] = np.abs(normal(6, 4, np.float32)) + 0.5

    def forward(self, x):
        y = self.bn(F.local_response_norm(self.conv(x), 5, alpha=0.1, beta=0.6, k=2.0))
        y = F.pad(y, (1, -1, 0, 2), value=-np.inf)
        y = F.max_pool2d(y, 3, 2, 1, ceil_mode=True)
        a, b = y.split([2, 4], dim=1)
        y = F.cat([b * 0.5 - 1.0, a / 3.0, -a], dim=1) ** 2
        y = F.avg_pool2d(y, 2, 2, 0, ceil_mode=True, count_include_pad=False)
        z = y.sum(dim=(2, 3)).reshape(y.shape[0], -1)                     # (N, 8)
        z = F.cat([z, z.split([4, 4], 1)[0]], 1)                          # (N, 12)
        z = F.relu(self.fc(z)) @ Tensor(normal((5, 5), 5, np.float32))
        return F.log_softmax(z.permute(1, 0), dim=0).permute(1, 0) + F.softmax(z, dim=1)


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_a_network_of_every_exported_op_agrees_with_onnxruntime(opset):
    minigrad.manual_seed(0)
    model = _EveryOp()
    x = Tensor(normal((3, 3, 9, 11), 6, np.float32))
    proto = minigrad.onnx.export(model, x, None, opset_version=opset)
    assert proto.opset_import[0].version == opset
    model.eval()
    expected = model(x).numpy()
    (theirs,) = run_onnxruntime(proto, x.numpy())
    assert_library_close(theirs, expected)
    assert_library_close(minigrad.onnx.load(proto.SerializeToString())(x).numpy(), expected)


def test_an_even_sized_lrn_is_exported_with_onnx_centring():
    """ONNX sums floor((size-1)/2) channels below and ceil((size-1)/2) above, minigrad (as PyTorch) size/2 below:
    the written graph must compute minigrad's op under ONNX's definition.  onnxruntime takes odd sizes only,
    so the oracle is ONNX's formula in NumPy."""
    class Even(nn.Module):
        def forward(self, x):
            return F.local_response_norm(x, 4, alpha=0.25, beta=0.75, k=1.5)   # exact in float32, as ONNX stores them

    x = Tensor(normal((2, 7, 3, 3), 12, np.float64))
    proto = minigrad.onnx.export(Even(), x, None)
    lrn = next(n for n in proto.graph.node if n.op_type == "LRN")
    reversed_order = np.arange(7)[::-1]
    onnx_lrn = _onnx_lrn(x.numpy()[:, reversed_order], 4, 0.25, 0.75, 1.5)[:, reversed_order]
    assert [n.op_type for n in proto.graph.node] == ["Gather", "LRN", "Gather"] and lrn.input[0] != "input"
    assert_close(onnx_lrn, Even()(x).numpy(), "library")
    assert_close(minigrad.onnx.load(proto.SerializeToString())(x).numpy(), Even()(x).numpy(), "library")


def _onnx_lrn(x, size, alpha, beta, bias):
    """LRN as the ONNX operator specification defines it."""
    squares = np.zeros_like(x)
    channels = x.shape[1]
    for c in range(channels):
        low, high = max(0, c - (size - 1) // 2), min(channels - 1, c + -(-(size - 1) // 2))
        squares[:, c] = (x[:, low:high + 1] ** 2).sum(axis=1)
    return x / (bias + alpha / size * squares) ** beta


# ---- import: networks of PyTorch layers, as torch.onnx.export writes them -----------------------------------

def _torch_networks(torch):
    nn_ = torch.nn

    class Branches(nn_.Module):                     # an Inception module: four branches, concatenated
        def __init__(self, c):
            super().__init__()
            self.b1 = nn_.Conv2d(c, 4, 1)
            self.b3 = nn_.Sequential(nn_.Conv2d(c, 3, 1), nn_.ReLU(), nn_.Conv2d(3, 5, 3, padding=1))
            self.b5 = nn_.Sequential(nn_.Conv2d(c, 2, 1), nn_.ReLU(), nn_.Conv2d(2, 3, 5, padding=2))
            self.pool = nn_.Sequential(nn_.MaxPool2d(3, 1, padding=1), nn_.Conv2d(c, 2, 1))

        def forward(self, x):
            return torch.relu(torch.cat([self.b1(x), self.b3(x), self.b5(x), self.pool(x)], 1))

    plain = nn_.Sequential(
        nn_.Conv2d(3, 6, 5, stride=2, padding=2), nn_.BatchNorm2d(6), nn_.ReLU(),
        nn_.MaxPool2d(3, 2, ceil_mode=True), nn_.AvgPool2d(3, 1, padding=1, count_include_pad=False),
        nn_.Flatten(), nn_.Dropout(0.3), nn_.Linear(6 * 4 * 4, 7), nn_.LogSoftmax(dim=1))
    inception = nn_.Sequential(
        nn_.Conv2d(3, 8, 3, padding=1), nn_.ReLU(), Branches(8), nn_.AvgPool2d(2, 2, ceil_mode=True),
        nn_.ZeroPad2d((0, 1, 1, 0)), nn_.AdaptiveAvgPool2d(1), nn_.Flatten(), nn_.Linear(14, 5), nn_.Softmax(dim=1))
    return {"plain": plain, "inception": inception}


@pytest.mark.parametrize("opset", [9, 11, 13, 17])
@pytest.mark.parametrize("network", ["plain", "inception"])
def test_torch_exported_networks_load_and_match_pytorch_forward_and_input_gradient(torch, network, opset):
    torch.manual_seed(0)
    net = _torch_networks(torch)[network].eval()
    with torch.no_grad():                            # running statistics away from their initial 0 and 1
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    x = normal((2, 3, 15, 15), 7, np.float32)
    buffer = io.BytesIO()
    torch.onnx.export(net, torch.from_numpy(x), buffer, dynamo=False, opset_version=opset)
    model = minigrad.onnx.load(buffer.getvalue())
    assert not model.training

    theirs_x = torch.tensor(x, requires_grad=True)
    theirs = net(theirs_x)
    upstream = normal(tuple(theirs.shape), 8, np.float32)
    theirs.backward(torch.from_numpy(upstream))
    ours_x = Tensor(x, requires_grad=True)
    ours = model(ours_x)
    ours.backward(upstream)
    assert_library_close(ours.numpy(), theirs.detach().numpy())
    assert_library_close(ours_x.grad.numpy(), theirs_x.grad.numpy())


def test_imported_weights_are_trainable_named_parameters_and_pass_gradcheck(torch):
    torch.manual_seed(1)
    net = _torch_networks(torch)["plain"].eval()
    buffer = io.BytesIO()
    torch.onnx.export(net, torch.zeros(1, 3, 15, 15), buffer, dynamo=False, opset_version=17,
                      do_constant_folding=False)
    model = minigrad.onnx.load(buffer.getvalue())
    names = dict(model.named_parameters())
    graph_floats = {t.name for t in onnx.load_from_string(buffer.getvalue()).graph.initializer
                    if t.data_type == onnx.TensorProto.FLOAT}
    assert set(names) == graph_floats and set(names) <= set(model.state_dict())
    # fine-tuning: a few steps of SGD on a cross-entropy loss lower it
    x, labels = Tensor(normal((8, 3, 15, 15), 9, np.float32)), Tensor(np.arange(8) % 7)
    model.train()
    optimizer = optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        loss = F.nll_loss(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # every parameter's gradient against central differences, in float64
    rows = check_model(model, normal((2, 3, 15, 15), 10))
    assert rows and all(passed for *_, passed in rows), rows


# ---- the zoo's GoogLeNet (inception_v1) and BN-Inception (inception_v2) ------------------------------------

@pytest.mark.parametrize("name", ["inception_v1", "inception_v2"])
def test_zoo_graphs_match_onnxruntime_and_fuse_conv_relu(name):
    path = os.path.join(LIGHT, f"light_{name}.onnx")
    model = minigrad.onnx.load(path)
    # the light graphs take some biases as inputs beside the image (data_0): random values for all of them
    feeds = {name: normal(model.input_shapes[name], seed, np.float32) * (50 if name == "data_0" else 0.1)
             for seed, name in enumerate(model.input_names)}
    (theirs,) = run_onnxruntime(path, feeds=feeds)
    ours = model(*[Tensor(feeds[name]) for name in model.input_names])
    assert_library_close(ours.numpy(), theirs)
    convs = [n for n in model.nodes if n.op_type == "Conv"]
    if name == "inception_v1":                      # every convolution is followed by its ReLU: all fused
        assert len(convs) == 57 and all(n.relu for n in convs)


def test_zoo_squeezenet_matches_onnxruntime_before_its_softmax():
    """The light SqueezeNet's weights are all 0.02: its 1000 class scores are equal up to rounding and reach
    1e9, so its softmax turns a rounding difference into a different answer (ONNX's own test of it is
    excluded, tests/test_onnx_conformance.py).  The scores before the softmax are compared instead."""
    import onnx
    proto = onnx.load(os.path.join(LIGHT, "light_squeezenet.onnx"))
    softmax = proto.graph.node[-1]
    assert softmax.op_type == "Softmax"
    scores = softmax.input[0]
    proto.graph.node.remove(softmax)
    del proto.graph.output[:]
    proto.graph.output.append(onnx.helper.make_tensor_value_info(scores, onnx.TensorProto.FLOAT, None))
    model = minigrad.onnx.load(proto.SerializeToString())
    feeds = {name: normal(model.input_shapes[name], seed, np.float32) * (50 if seed == 0 else 0.1)
             for seed, name in enumerate(model.input_names)}
    (theirs,) = run_onnxruntime(proto, feeds=feeds)
    ours = model(*[Tensor(feeds[name]) for name in model.input_names])
    assert_library_close(ours.numpy(), theirs)


def test_zoo_googlenet_keeps_the_floor_grid_and_its_padded_final_pool():
    """The zoo's GoogLeNet pools with floor (55/27/13/6, where Caffe's ceil gives 56/28/14/7) and averages the 6x6
    map with a 7x7 window padded at its end: the study guide explains it; this checks the file says so."""
    proto = onnx.shape_inference.infer_shapes(onnx.load(os.path.join(LIGHT, "light_inception_v1.onnx")))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in proto.graph.value_info}
    strided = [shapes[n.output[0]][2] for n in proto.graph.node if n.op_type == "MaxPool"
               and any(a.name == "strides" and list(a.ints) == [2, 2] for a in n.attribute)]
    assert strided == [55, 27, 13, 6]
    final = next(n for n in proto.graph.node if n.op_type == "AveragePool")
    assert [list(a.ints) for a in final.attribute if a.name == "pads"] == [[0, 0, 1, 1]]


# ---- bad input: one clear error each ------------------------------------------------------------------------

def _graph(nodes, inputs, outputs, initializers=()):
    make = onnx.helper
    graph = make.make_graph(nodes, "g", [make.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s) for n, s in inputs],
                            [make.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in outputs],
                            [onnx.numpy_helper.from_array(a, n) for n, a in initializers])
    return make.make_model(graph, opset_imports=[make.make_opsetid("", 17)]).SerializeToString()


def _conv_model(**attributes):
    node = onnx.helper.make_node("Conv", ["x", "w"], ["y"], name="the_conv", **attributes)
    return _graph([node], [("x", [1, 4, 8, 8])], ["y"], [("w", normal((4, 4 // attributes.get("group", 1), 3, 3), 0,
                                                                         np.float32))])


@pytest.mark.parametrize("data,message", [
    (b"hello, not a model", "not an ONNX model"),
    (lambda: _conv_model()[:40], "not an ONNX model"),
    (lambda: _graph([onnx.helper.make_node("Frobnicate", ["x"], ["y"], name="mystery")], [("x", [1])], ["y"]),
     "node mystery: minigrad has no Frobnicate operator"),
    (lambda: _graph([onnx.helper.make_node("Relu", ["nowhere"], ["y"], name="lost")], [("x", [1])], ["y"]),
     re.escape("node lost (Relu) reads 'nowhere', which no input, initializer or earlier node defines")),
    (lambda: _graph([onnx.helper.make_node("Relu", ["x", "x"], ["y"], name="twice")], [("x", [1])], ["y"]),
     re.escape("node twice (Relu): 2 inputs, where the operator takes 1")),
])
def test_bad_files_are_refused_with_the_reason(data, message):
    with pytest.raises(OnnxError, match=message):
        minigrad.onnx.load(data() if callable(data) else data)


def test_a_missing_file_is_named():
    with pytest.raises(OnnxError, match="nowhere.onnx"):
        minigrad.onnx.load("nowhere.onnx")


@pytest.mark.parametrize("attributes,message", [
    ({"group": 2}, r"node the_conv \(Conv\): group 2 is not supported"),
    ({"dilations": [2, 2]}, r"node the_conv \(Conv\): dilations \[2, 2\] are not supported"),
    ({"kernel_shape": [5, 5]}, r"node the_conv \(Conv\): kernel_shape \(5, 5\) does not match"),
])
def test_unsupported_attributes_are_named_with_their_node(attributes, message):
    model = minigrad.onnx.load(_conv_model(**attributes))
    with pytest.raises(OnnxError, match=message):
        model(Tensor(np.zeros((1, 4, 8, 8), np.float32)))


def test_shapes_that_do_not_agree_are_named_with_their_node():
    model = minigrad.onnx.load(_conv_model())
    with pytest.raises(OnnxError, match=r"node the_conv \(Conv\): conv2d: weight expects 4 input channels but input "
                                        "has 3"):
        model(Tensor(np.zeros((1, 3, 8, 8), np.float32)))
    with pytest.raises(OnnxError, match="the graph takes 1 inputs"):
        model(Tensor(np.zeros((1, 4, 8, 8), np.float32)), Tensor(np.zeros(1, np.float32)))


def test_export_refuses_what_has_no_onnx_form():
    class Custom(minigrad.Function):
        def forward(self, x):
            return x * 2

        def backward(self, grad):
            return grad * 2

    class Net(nn.Module):
        def forward(self, x):
            return Custom()(x)

    x = Tensor(np.zeros((1, 3), np.float32))
    with pytest.raises(OnnxError, match=r"op custom \(.*Custom\) has no ONNX form"):
        minigrad.onnx.export(Net(), x, None)
    with pytest.raises(ValueError, match="opset_version must be an int from 13"):
        minigrad.onnx.export(nn.ReLU(), x, None, opset_version=7)
    with pytest.raises(TypeError, match="example_input must be a Tensor"):
        minigrad.onnx.export(nn.ReLU(), np.zeros(3), None)
    bn = nn.BatchNorm2d(3, track_running_stats=False)
    with pytest.raises(OnnxError, match="batch_norm on the batch's own statistics"):
        minigrad.onnx.export(bn, Tensor(np.zeros((2, 3, 2, 2), np.float32)), None)


# ---- the commands: models.summary FILE.onnx, models.classify -------------------------------------------------

def test_summary_of_the_zoo_googlenet_shows_its_grid_and_googlenets_filters(capsys):
    from models.summary import main
    assert main([os.path.join(LIGHT, "light_inception_v1.onnx"), "--paper"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("inception_3a "))
    assert row.split()[2:11] == ["27x27x256", "2", "64", "96", "128", "16", "32", "32", "160K"]
    assert "the output is 27x27x256 where the paper's is 28x28x256" in out
    assert "total (inference): 6,998,552 parameters" in out


@pytest.mark.parametrize("name", ["googlenet", "googlenet-bn"])
def test_summary_of_an_exported_network_matches_the_models_own(name, tmp_path):
    from models.summary import summary
    from models.summary.graph import onnx_summary
    model = models.get_model(name)
    minigrad.onnx.export(model, Tensor(np.zeros((1, 3, 224, 224), np.float32)), tmp_path / "net.onnx")
    ours = {r["name"]: r for r in onnx_summary(minigrad.onnx.load(tmp_path / "net.onnx"))}
    native = {r["name"]: r for r in summary(model)}
    keys = ["output", "depth", "n1x1", "n3x3red", "n3x3", "n5x5red", "n5x5", "pool_proj", "params", "weights",
            "multiply_adds"]
    for row in ["conv1", "pool1", "conv2", "3a", "4e", "5b", "pool5", "fc", "total (inference)"]:
        assert {k: ours[row][k] for k in keys} == {k: native[row][k] for k in keys}, row


def _mini(tmp_path):
    model = models.get_model("mini-googlenet")
    path = tmp_path / "mini.onnx"
    minigrad.onnx.export(model, Tensor(np.zeros((1, 3, 32, 32), np.float32)), path)
    return model, path


def test_classify_prints_the_networks_top_classes(tmp_path, capsys):
    from models.classify import main, prepare, read_photo
    model, path = _mini(tmp_path)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"thing {i}\n" for i in range(10)))
    assert main(["--model", str(path), "--image", "china", "--labels", str(labels), "--top", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    model.eval()
    scores = model(Tensor(prepare(read_photo("china"), 32, "caffe"))).numpy()[0]
    best = np.argsort(-scores)[:3]
    assert [line.split()[-1] for line in out[2:]] == [str(i) for i in best] and len(out) == 5
    assert "caffe" in out[1] and "BGR" in out[1]


def test_classify_reads_a_training_checkpoint(tmp_path, capsys):
    from minigrad import checkpoint
    from models.classify import main, prepare, read_photo
    minigrad.manual_seed(3)
    model = models.get_model("mini-googlenet", num_classes=4)
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    checkpoint.save(tmp_path / "checkpoint.npz", arrays, {"model": "mini-googlenet", "input": {
        "num_classes": 4, "in_channels": 3, "input_size": 32}})
    assert main(["--model", "mini-googlenet", "--checkpoint", str(tmp_path / "checkpoint.npz"),
                 "--image", "flower", "--preprocess", "plain", "--top", "1"]) == 0
    model.eval()
    best = int(np.argmax(model(Tensor(prepare(read_photo("flower"), 32, "plain"))).numpy()))
    assert capsys.readouterr().out.splitlines()[-1].endswith(f"class {best}")


@pytest.mark.parametrize("argv,message", [
    (["--model", "nonet", "--image", "china"], "--model: unknown model 'nonet'; expected one of googlenet"),
    (["--model", "googlenet", "--image", "nowhere.jpg"], "--image: no file 'nowhere.jpg'"),
    (["--model", "missing.onnx", "--image", "china"], "missing.onnx: "),
    (["--model", "googlenet", "--image", "china", "--top", "0"], "--top must be an integer from 1 to 100"),
    (["--model", "googlenet", "--image", "china", "--labels", "none.txt"], "--labels: no file 'none.txt'"),
])
def test_classify_refuses_bad_input_in_one_line(argv, message, capsys):
    from models.classify import main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_classify_refuses_labels_that_do_not_fit(tmp_path, capsys):
    from models.classify import main
    _, path = _mini(tmp_path)
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    assert main(["--model", str(path), "--image", "china", "--labels", str(labels)]) == 2
    assert "names 2 classes; the network gives 10" in capsys.readouterr().err
