"""The study guide: the walkthrough holds what the code computes, its figures exist and can be drawn,
and `python -m minigrad.explain` explains (and refuses) what it should."""

import re
from pathlib import Path

import pytest

from docs import build
from minigrad.explain import main as explain

ROOT = Path(__file__).resolve().parent.parent


def test_every_generated_block_holds_what_the_code_computes():
    """Rerun `python -m docs.build --no-measure` after changing what a block shows (a kernel, Table 1 ...)."""
    written = build.read_blocks(build.WALKTHROUGH.read_text())
    for name, text in build.generated_blocks().items():
        assert written.get(("generated", name)) == text, f"docs/walkthrough.md's block {name!r} is stale"
    assert written.get(("measured", "profile")), "the measured profile block is empty"


def test_the_walkthrough_shows_the_worked_numbers():
    text = build.WALKTHROUGH.read_text()
    assert "192 channels * 32 filters * 5*5 = 120,422,400 multiply-adds (120.4M)" in text
    assert "= 12,443,648 (12.4M): 9.7x fewer" in text
    assert "column matrix: (C*KH*KW) x (N*OH*OW) = 18 x 25" in text


def test_the_custom_op_section_runs_as_written():
    """Section 9's code blocks, run in order: the op and its hypothesis gradient check (which must pass); then
    the op's values against its definition."""
    text = build.WALKTHROUGH.read_text()
    section = text[text.index("## 9. Your own op"):]
    namespace = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        exec(compile(block, "walkthrough section 9", "exec"), namespace)
    import numpy as np

    from minigrad.testing import normal
    x = normal((2, 3), 0)
    np.testing.assert_array_equal(namespace["leaky_relu"](namespace["Tensor"](x), 0.2).numpy(),
                                  np.where(x < 0, 0.2 * x, x))


def test_every_figure_the_walkthrough_shows_exists():
    text = build.WALKTHROUGH.read_text()
    figures = re.findall(r"\]\((figures/[\w.]+\.png)\)", text)
    assert len(figures) == 9
    for figure in figures:
        assert (build.DOCS / figure).stat().st_size > 10_000, figure


def test_the_figures_can_be_drawn():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for draw in (build.figure_im2col, build.figure_col2im, build.figure_max_pool, build.figure_inception):
        fig = draw(plt)
        assert fig.axes
        plt.close(fig)
    rows = [{"op": "conv2d_relu", "layer": "a", "forward_s": 0.01, "backward_s": 0.02},
            {"op": "max_pool2d", "layer": "b", "forward_s": 0.003, "backward_s": 0.001}]
    plt.close(build.figure_profile(plt, rows))


def test_a_block_missing_from_the_walkthrough_is_an_error():
    with pytest.raises(ValueError, match="walkthrough.md lacks the blocks"):
        build.fill("no blocks here", {("generated", "im2col"): "x"})
    text = "a\n<!-- begin generated: x -->\nold\n<!-- end generated: x -->\nb"
    assert build.fill(text, {("generated", "x"): "new"}) == "a\n<!-- begin generated: x -->\nnew\n<!-- end generated: x -->\nb"


def test_the_readme_links_the_walkthrough_and_shows_a_figure():
    readme = (ROOT / "README.md").read_text()
    assert "(docs/walkthrough.md)" in readme
    shown = re.findall(r"!\[[^\]]*\]\((docs/figures/[\w.]+\.png)\)", readme)
    assert shown and all((ROOT / f).exists() for f in shown)


def test_explain_conv2d_prints_the_matrices_and_checks_the_definition(capsys):
    assert explain(["conv2d", "--input", "1,2,5,5", "--kernel", "3", "--stride", "1", "--padding", "1"]) == 0
    out = capsys.readouterr().out
    assert "im2col: the column matrix, 18 x 25 = (C*KH*KW) x (N*OH*OW)" in out
    assert "multiply-adds: N*O*OH*OW * C*KH*KW = 1*1*5*5 * 2*3*3 = 450" in out
    assert "gives the same values (largest difference 0;" in out
    assert explain(["conv2d", "--input", "2,1,4,5", "--kernel", "2,3", "--stride", "2,1", "--padding", "0,1",
                    "--out-channels", "2", "--random"]) == 0
    assert "gives the same values" in capsys.readouterr().out


def test_explain_max_pool2d_shows_windows_argmax_and_the_gradient(capsys):
    assert explain(["max_pool2d", "--input", "1,1,6,6", "--kernel", "3", "--stride", "2", "--ceil-mode"]) == 0
    out = capsys.readouterr().out
    assert out.count("output[0, 0, ") == 9 and "argmax" in out and "receive a gradient" in out


@pytest.mark.parametrize("args,message", [
    (["conv2d", "--input", "1,2,5"], "--input must be 4 comma-separated integers, got '1,2,5'"),
    (["conv2d", "--input", "1,1,3,3", "--kernel", "5", "--padding", "0"], "conv2d: kernel_size (5, 5) is larger than"),
    (["conv2d", "--input", "8,64,56,56"], "too large to print"),
    (["conv2d", "--stride", "0"], "conv2d: stride must be >= 1"),
    (["max_pool2d", "--padding", "2"], "max_pool2d: padding (2, 2) must be at most half of kernel_size"),
    (["conv2d", "--out-channels", "0"], "--out-channels must be an integer from 1 to 1000000, got 0"),
    (["conv2d", "--seed", "-1"], "--seed must be an integer from 0 to 4294967295, got -1"),
    (["relu"], "op: invalid choice: 'relu'"),
])
def test_explain_refuses_bad_geometry_in_one_line(args, message, capsys):
    assert explain(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
