"""Models: counts derived by hand from the filter numbers, output sizes, the paper's table,
and a full forward/backward of GoogLeNet with its auxiliary heads."""

import subprocess
import sys

import numpy as np
import pytest

import minigrad
import minigrad.functional as F
import models
from minigrad import nn
from models import Inception, InceptionNaive
from models.summary import PAPER_TABLE1, PAPER_TABLE1_JSON, paper_comparison, summary


def inception_weights(c, n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_proj):
    """Weights of a reduced module from its filter counts: every 1x1 reads c channels,
    the 3x3 reads n3x3red channels over 9 taps, the 5x5 reads n5x5red over 25 taps."""
    return c * n1x1 + c * n3x3red + n3x3red * n3x3 * 9 + c * n5x5red + n5x5red * n5x5 * 25 + c * pool_proj


@pytest.fixture(scope="module")
def googlenet_rows():
    minigrad.manual_seed(0)
    return {r["name"]: r for r in summary(models.googlenet())}


# (name, input channels, grid side, filter counts) for every module row of Table 1
MODULES = [("3a", 192, 28, (64, 96, 128, 16, 32, 32)), ("3b", 256, 28, (128, 128, 192, 32, 96, 64)),
           ("4a", 480, 14, (192, 96, 208, 16, 48, 64)), ("4b", 512, 14, (160, 112, 224, 24, 64, 64)),
           ("4c", 512, 14, (128, 128, 256, 24, 64, 64)), ("4d", 512, 14, (112, 144, 288, 32, 64, 64)),
           ("4e", 528, 14, (256, 160, 320, 32, 128, 128)), ("5a", 832, 7, (256, 160, 320, 32, 128, 128)),
           ("5b", 832, 7, (384, 192, 384, 48, 128, 128))]


@pytest.mark.parametrize("name,c,side,counts", MODULES)
def test_inception_rows_count_what_their_filters_imply(googlenet_rows, name, c, side, counts):
    row = googlenet_rows[name]
    weights = inception_weights(c, *counts)
    biases = sum(counts)                                    # one per output channel of every convolution
    assert row["weights"] == weights and row["params"] == weights + biases
    assert row["multiply_adds"] == weights * side * side    # every weight is used once per output pixel
    assert (row["n1x1"], row["n3x3red"], row["n3x3"], row["n5x5red"], row["n5x5"], row["pool_proj"]) == counts
    assert row["output"] == (side, side, counts[0] + counts[2] + counts[4] + counts[5]) and row["depth"] == 2


def test_stem_and_classifier_rows(googlenet_rows):
    conv1, conv2, fc = googlenet_rows["conv1"], googlenet_rows["conv2"], googlenet_rows["fc"]
    assert conv1["weights"] == 64 * 3 * 7 * 7 == 9408
    assert conv1["multiply_adds"] == 9408 * 112 * 112
    assert conv2["weights"] == 64 * 64 + 192 * 64 * 3 * 3 == 114_688           # the paper's 112K (x 1024)
    assert conv2["multiply_adds"] == 114_688 * 56 * 56                          # 360M
    assert (conv2["n3x3red"], conv2["n3x3"], conv2["depth"]) == (64, 192, 2)
    assert fc["weights"] == 1024 * 1000 and fc["multiply_adds"] == 1024 * 1000


def test_output_size_of_every_stage_at_224(googlenet_rows):
    expected = {"conv1": (112, 112, 64), "pool1": (56, 56, 64), "conv2": (56, 56, 192), "pool2": (28, 28, 192),
                "3a": (28, 28, 256), "3b": (28, 28, 480), "pool3": (14, 14, 480), "4a": (14, 14, 512),
                "4b": (14, 14, 512), "4c": (14, 14, 512), "4d": (14, 14, 528), "4e": (14, 14, 832),
                "pool4": (7, 7, 832), "5a": (7, 7, 832), "5b": (7, 7, 1024), "pool5": (1, 1, 1024), "fc": (1000,)}
    for name, shape in expected.items():
        assert googlenet_rows[name]["output"] == shape, name


def test_totals_with_and_without_auxiliary_heads(googlenet_rows):
    trunk = sum(r["multiply_adds"] for n, r in googlenet_rows.items() if "auxiliary" not in n and "total" not in n)
    inference = googlenet_rows["total (inference)"]
    assert inference["multiply_adds"] == trunk and 1.5e9 < trunk < 1.6e9    # "1.5 billion multiply-adds"
    assert inference["depth"] == 22                                          # "22 layers deep"
    aux1, aux2 = googlenet_rows["aux1 (auxiliary)"], googlenet_rows["aux2 (auxiliary)"]
    # 4x4 grid after the 5x5/3 pool: conv 1x1 (c -> 128), fc 128*16 -> 1024, classifier 1024 -> 1000
    for aux, c in ((aux1, 512), (aux2, 528)):
        assert aux["weights"] == c * 128 + 128 * 16 * 1024 + 1024 * 1000
        assert aux["multiply_adds"] == c * 128 * 16 + 128 * 16 * 1024 + 1024 * 1000
    training = googlenet_rows["total (training, with auxiliary heads)"]
    assert training["params"] == inference["params"] + aux1["params"] + aux2["params"]


def test_naive_and_reduced_3a():
    reduced = summary(models.googlenet())[6]
    naive = [r for r in summary(models.googlenet(naive=True)) if r["name"] == "3a"][0]
    assert reduced["name"] == "3a"
    # naive 3a: 1x1 (192->64), 3x3 (192->128), 5x5 (192->32) straight on the 192 input channels
    naive_weights = 192 * 64 + 192 * 128 * 9 + 192 * 32 * 25
    assert naive["weights"] == naive_weights and naive["multiply_adds"] == naive_weights * 28 * 28
    assert naive["output"] == (28, 28, 64 + 128 + 32 + 192)
    # the paper's 5x5 example: 28x28x192 -> 32 filters directly vs through a 1x1 reduction to 16
    assert 192 * 32 * 25 * 28 * 28 == 120_422_400
    assert (192 * 16 + 16 * 32 * 25) * 28 * 28 == 12_443_648
    assert reduced["multiply_adds"] == inception_weights(192, 64, 96, 128, 16, 32, 32) * 28 * 28 == 128_049_152
    assert naive["multiply_adds"] == 303_464_448                  # 2.37x the reduced module


def test_naive_network_grows_by_its_input_width_every_module():
    rows = {r["name"]: r for r in summary(models.googlenet(naive=True))}
    width = 192
    for name, _, _, (n1x1, _, n3x3, _, n5x5, _) in MODULES:
        width = n1x1 + n3x3 + n5x5 + width          # the pool branch passes all input channels through
        assert rows[name]["output"][2] == width, name
    assert width == 4944


def test_alexnet_parameters():
    rows = summary(models.alexnet())
    convs = 96 * 3 * 11 * 11 + 256 * 96 * 5 * 5 + 384 * 256 * 3 * 3 + 384 * 384 * 3 * 3 + 256 * 384 * 3 * 3
    fcs = 256 * 6 * 6 * 4096 + 4096 * 4096 + 4096 * 1000
    biases = 96 + 256 + 384 + 384 + 256 + 4096 + 4096 + 1000
    total = rows[-1]
    assert total["params"] == convs + fcs + biases == 62_378_344
    googlenet_total = summary(models.googlenet(aux_logits=False))[-1]["params"]
    assert 8 < total["params"] / googlenet_total < 10                 # GoogLeNet: ~9x fewer parameters


def test_the_shipped_paper_table_holds_table_1_as_printed():
    """models/summary/table1.json (Table 1 as printed, shipped with the project): every row of the network,
    and the printed params and ops the summary compares with."""
    names = [row[0] for row in PAPER_TABLE1_JSON["rows"]]
    assert names[:3] == ["conv1", "pool1", "conv2"] and {"3a", "4e", "5b", "fc", "softmax"} <= set(names)
    assert PAPER_TABLE1 == {
        "conv1": (2.7, 34), "conv2": (112, 360), "3a": (159, 128), "3b": (380, 304), "4a": (364, 73),
        "4b": (437, 88), "4c": (463, 100), "4d": (580, 119), "4e": (840, 170), "5a": (1072, 54),
        "5b": (1388, 71), "fc": (1000, 1)}


def test_summary_agrees_with_the_paper_where_the_paper_agrees_with_itself(googlenet_rows):
    verdicts = {name: paper_comparison(row)[2] for name, row in googlenet_rows.items() if paper_comparison(row)}
    assert {n for n, ok in verdicts.items() if ok} == {"conv2", "3a", "3b", "4b", "fc"}
    # conv1 (a depthwise-separable 7x7 in the paper) and the rows whose printed params disagree with
    # their own filter counts (4c, 4d, 5a, 5b as documented; 4a and 4e by 2.75K and 7K) are flagged
    assert {n for n, ok in verdicts.items() if not ok} == {"conv1", "4a", "4c", "4d", "4e", "5a", "5b"}
    assert "depthwise-separable" in paper_comparison(googlenet_rows["conv1"])[3]


def test_summary_command_line():
    run = lambda *args: subprocess.run([sys.executable, "-m", "models.summary", *args], capture_output=True, text=True)
    result = run("googlenet", "--paper")
    assert result.returncode == 0 and "differs [1]" in result.stdout and "1,583M multiply-adds" in result.stdout
    bad = run("resnet")
    assert bad.returncode == 2 and "model: unknown model 'resnet'; expected one of googlenet" in bad.stderr
    small = run("googlenet", "--input-size", "32")
    assert small.returncode == 2 and "too small" in small.stderr and "Traceback" not in small.stderr


def test_googlenet_forward_backward_reaches_every_parameter():
    minigrad.manual_seed(1)
    net = models.googlenet(num_classes=10)
    x = minigrad.randn(2, 3, 224, 224)
    target = np.array([3, 7])
    logits, aux1, aux2 = net(x)
    assert logits.shape == aux1.shape == aux2.shape == (2, 10)
    loss = F.cross_entropy(logits, target) + 0.3 * (F.cross_entropy(aux1, target) + F.cross_entropy(aux2, target))
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and np.abs(p.grad.numpy()).max() > 0, f"{name} got no gradient"
    net.eval()
    assert net(x).shape == (2, 10)                       # eval: the auxiliary heads are skipped


def test_auxiliary_gradients_flow_into_the_trunk():
    minigrad.manual_seed(2)
    net = models.googlenet(num_classes=5, input_size=96)      # 96x96: 6x6 at 4a, enough for the 5x5/3 pool
    _, aux1, _ = net(minigrad.randn(1, 3, 96, 96))
    F.cross_entropy(aux1, np.array([1])).backward()
    assert np.abs(net.layers.conv1.conv.weight.grad.numpy()).max() > 0      # below 4a: reached
    assert getattr(net.layers, "4b").branch1x1.conv.weight.grad is None     # above 4a: not on aux1's path


def test_reference_initialisation():
    net = models.googlenet(num_classes=10)
    conv = getattr(net.layers, "3a").branch3x3[1].conv
    bound = np.sqrt(3 / (96 * 3 * 3))
    assert np.abs(conv.weight.numpy()).max() <= bound and np.abs(conv.weight.numpy()).max() > 0.9 * bound
    assert np.all(conv.bias.numpy() == np.float32(0.2))
    assert np.all(net.layers.fc.bias.numpy() == 0) and np.all(net.aux1.classifier.bias.numpy() == 0)
    assert np.all(net.aux1.fc.bias.numpy() == np.float32(0.2))


@pytest.mark.parametrize("build", [lambda: models.googlenet(num_classes=10), lambda: models.mini_plain_net(),
                                   lambda: models.alexnet(num_classes=10, input_size=67),
                                   lambda: models.plain_net(num_classes=10, input_size=64)])
def test_every_weight_is_drawn_by_the_reference_initialisation(build):
    """The builders skip the layers' default draws (nn.skip_init): reference_init must then set every
    convolution and linear parameter, none left as uninitialised memory."""
    minigrad.manual_seed(0)
    net = build()
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            weight, bias = module.weight.numpy(), module.bias.numpy()
            bound = np.sqrt(3 / np.prod(weight.shape[1:]))
            assert 0.5 * bound < np.abs(weight).max() <= np.float32(bound)        # float32 rounds the bound
            assert np.all((bias == np.float32(0.2)) | (bias == 0))


def test_input_sizes():
    assert models.googlenet(aux_logits=False, input_size=64)(minigrad.randn(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(ValueError, match=r"GoogLeNet: input_size \(64, 64\) leaves a \(4, 4\) grid at 4a"):
        models.googlenet(input_size=64)
    with pytest.raises(ValueError, match=r"GoogLeNet: input_size \(8, 8\) is too small"):
        models.googlenet(input_size=8, aux_logits=False)
    net = models.googlenet(aux_logits=False)
    with pytest.raises(ValueError, match=r"GoogLeNet: expected input of shape \(N, 3, 224, 224\), got \(1, 3, 200, 200\)"):
        net(minigrad.randn(1, 3, 200, 200))
    with pytest.raises(ValueError, match="get_model: unknown model 'vgg'"):
        models.get_model("vgg")


@pytest.mark.parametrize("naive", [False, True])
def test_mini_googlenet_trains_a_step(naive):
    minigrad.manual_seed(3)
    net = models.mini_googlenet(num_classes=10, in_channels=1, input_size=16, naive=naive)
    x = minigrad.randn(4, 1, 16, 16)
    loss = F.cross_entropy(net(x), np.array([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    assert isinstance(getattr(net.layers, "3a"), InceptionNaive if naive else Inception)


def test_plain_net_has_googlenets_depth_and_widths():
    rows = {r["name"]: r for r in summary(models.plain_net())}
    assert rows["total (inference)"]["depth"] == 22
    assert rows["3a"]["output"] == (28, 28, 256) and rows["5b"]["output"] == (7, 7, 1024)
    assert rows["3a"]["weights"] == 192 * 256 * 9 + 256 * 256 * 9


def test_the_plain_network_matches_the_reduced_ones_cost():
    """MATCHED_PLAIN_SCALE is what the bisection finds: the plain network's multiply-adds within 1% of the
    reduced mini_googlenet's, at the same depth."""
    from models.baselines import MATCHED_PLAIN_SCALE, _convolution_multiply_adds, matched_plain_scale
    assert matched_plain_scale() == MATCHED_PLAIN_SCALE
    reduced, plain = models.mini_googlenet(), models.mini_plain_net()
    assert abs(_convolution_multiply_adds(plain) / _convolution_multiply_adds(reduced) - 1) <= 0.01
    weighted = lambda m: sum(isinstance(x, (nn.Conv2d, nn.Linear)) for x in m.modules())      # noqa: E731
    assert weighted(plain) == 8 and weighted(reduced) == 1 + 3 * 6 + 1       # both 8 deep; the modules 6 wide


def test_factorized_modules_replace_each_5x5_by_two_3x3():
    net = models.mini_googlenet(factorized=True)
    kernels = [m.kernel_size for m in getattr(net.layers, "3a").branch5x5.modules() if isinstance(m, nn.Conv2d)]
    assert kernels == [(1, 1), (3, 3), (3, 3)]
    assert net(minigrad.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="factorized applies to the reduced modules"):
        models.mini_googlenet(naive=True, factorized=True)
