"""Seeing inside: the autograd graph as DOT text (minigrad.viz), what a network does to a photo
(models.inspect), and where its layers sit on the machine's roofline (benchmarks.roofline)."""

import shutil

import numpy as np
import pytest

import minigrad
import models
from minigrad import viz


def test_an_inception_modules_graph_names_its_ops_shapes_and_parameters():
    module = models.Inception(192, 64, 96, 128, 16, 32, 32)
    y = module(minigrad.randn(1, 192, 28, 28, requires_grad=True))     # an input that wants a gradient: drawn
    dot = viz.graph(y, module, title="inception 3a")
    assert dot.startswith("digraph minigrad {") and dot.rstrip().endswith("}")
    assert dot.count("shape=box") == 8                           # six fused convolutions, the pool, the concat
    assert dot.count('label="conv2d_relu\\n(1, 64, 28, 28)"') == 1 and 'label="cat\\n(1, 256, 28, 28)"' in dot
    for name in ("branch1x1.conv.weight", "branch3x3.1.conv.bias", "branch_pool.1.conv.weight"):
        assert f'label="{name}\\n' in dot
    assert dot.count("fillcolor") == 12                          # every parameter of the module, once
    assert dot.count('label="input\\n(1, 192, 28, 28)"') == 1
    assert dot.count(" -> ") == 6 * 2 + 6 + 1 + 4 + 1            # weights and biases, inputs, pool, concat, output


def test_graph_refuses_what_has_no_graph():
    x = minigrad.randn(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match=r"graph: the tensor of shape \(2, 3\) has no graph"):
        viz.graph(x)
    y = (x * 2).sum()
    y.backward()
    with pytest.raises(ValueError, match="the graph was freed by backward"):
        viz.graph(y)
    with pytest.raises(TypeError, match="graph: expected a Tensor"):
        viz.graph([1, 2])


def test_render_draws_with_graphviz_or_says_how_to_install_it(tmp_path):
    dot = viz.graph((minigrad.randn(2, 3, requires_grad=True) * 2).sum())
    with pytest.raises(ValueError, match="must end in .svg, .png or .pdf"):
        viz.render(dot, tmp_path / "graph.gif")
    if shutil.which("dot") is None:
        with pytest.raises(RuntimeError, match="Graphviz's `dot` program is not installed"):
            viz.render(dot, tmp_path / "graph.svg")
    else:
        assert (tmp_path / "graph.svg").exists() is False
        viz.render(dot, tmp_path / "graph.svg")
        assert "<svg" in (tmp_path / "graph.svg").read_text()


# ---- models.inspect ---------------------------------------------------------------------------------------

def test_inspect_writes_its_figures_and_report_for_a_module(tmp_path, capsys):
    from models.inspect import main
    assert main(["--model", "mini-googlenet", "--image", "china", "--out", str(tmp_path), "--layer", "3b"]) == 0
    for name in ("filters.png", "feature_maps.png", "sparsity.png", "correlation.png"):
        assert (tmp_path / name).stat().st_size > 5_000, name
    report = (tmp_path / "report.md").read_text()
    assert "## Module 3b" in report and "The weights are random" in report
    for branch in ("branch1x1", "branch3x3", "branch5x5", "branch_pool"):
        assert f"| {branch} |" in report
    assert "3b.branch5x5.1" in report                                   # every ReLU layer's zero share
    assert "neighbouring-channel |correlation|" in capsys.readouterr().out


def test_inspect_reads_an_onnx_file_and_a_training_checkpoint(tmp_path):
    from minigrad import checkpoint
    from models.inspect import main
    model = models.get_model("mini-googlenet", num_classes=4, in_channels=1, input_size=16)
    minigrad.onnx.export(model, minigrad.zeros(1, 1, 16, 16), tmp_path / "mini.onnx")
    assert main(["--model", str(tmp_path / "mini.onnx"), "--image", "flower", "--out", str(tmp_path / "a")]) == 0
    assert "| branch 1 (" in (tmp_path / "a" / "report.md").read_text()
    checkpoint.save(tmp_path / "checkpoint.npz", {f"model/{k}": v for k, v in model.state_dict().items()},
                    {"model": "mini-googlenet", "input": {"num_classes": 4, "in_channels": 1, "input_size": 16}})
    assert main(["--model", str(tmp_path / "checkpoint.npz"), "--image", "flower", "--out", str(tmp_path / "b"),
                 "--layer", "4a"]) == 0
    assert "The weights are random" not in (tmp_path / "b" / "report.md").read_text()


def test_spectral_order_brings_correlated_channels_together():
    from models.inspect import correlation, neighbour_correlation, spectral_order
    rng = np.random.default_rng(0)
    sources = rng.standard_normal((2, 64))                  # two groups of channels, interleaved
    maps = np.stack([sources[i % 2] + 0.3 * rng.standard_normal(64) for i in range(10)]).reshape(10, 8, 8)
    corr, dead = correlation(maps)
    order = spectral_order(corr)
    assert dead == 0 and sorted(order % 2)[:5] == [0] * 5
    assert set(order[:5] % 2) in ({0}, {1})                 # each group contiguous
    assert neighbour_correlation(corr, order) > 2 * neighbour_correlation(corr, np.arange(10))


@pytest.mark.parametrize("argv,message", [
    (["--model", "nonet", "--image", "china", "--out", "OUT"], "--model: unknown model 'nonet'; expected one of"),
    (["--model", "mini-googlenet", "--image", "nowhere.jpg", "--out", "OUT"], "--image: no file 'nowhere.jpg'"),
    (["--model", "mini-googlenet", "--image", "china", "--out", "OUT", "--layer", "9z"],
     "--layer: no module '9z'; the network has 3a, 3b, 4a"),
    (["--model", "mini-googlenet", "--image", "china", "--out", "/proc/forbidden/out"], "cannot write to --out"),
    (["--model", "plain", "--image", "china", "--out", "OUT"], "has no Inception modules to look into"),
])
def test_inspect_refuses_bad_input_in_one_line(argv, message, tmp_path, capsys):
    from models.inspect import main
    assert main([a.replace("OUT", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_unreadable_photo_is_named(tmp_path, capsys):
    from models.inspect import main
    (tmp_path / "photo.jpg").write_text("not a photo")
    assert main(["--model", "mini-googlenet", "--image", str(tmp_path / "photo.jpg"), "--out", str(tmp_path)]) == 2
    assert "is not a photo PIL can read" in capsys.readouterr().err


# ---- benchmarks.roofline ------------------------------------------------------------------------------------

def test_roofline_places_every_convolution_and_pool_and_compares_naive(tmp_path, capsys):
    from benchmarks.roofline import main
    assert main(["mini-googlenet", "--out", str(tmp_path), "--batch", "2", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| reduced |") or
            line.startswith("| naive |")]
    convs = {(r[1], r[3]) for r in rows if r[0] == "| reduced" and r[2].startswith("conv2d")}
    assert len(convs) == 2 * (1 + 3 * 6)                      # every convolution, forward and backward
    assert any(r[0] == "| naive" for r in rows) and any(r[2] == "max_pool2d" for r in rows)
    assert [line.split(" | ")[0] for line in out.splitlines() if line.startswith("| 3")] == ["| 3a", "| 3b"]
    assert (tmp_path / "roofline.png").stat().st_size > 10_000 and (tmp_path / "roofline.md").exists()
    assert main(["resnet", "--out", str(tmp_path)]) == 2
