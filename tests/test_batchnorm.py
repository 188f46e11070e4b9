"""Batch normalisation against PyTorch (training and eval, the running statistics over several steps), its
gradients by finite differences, its bad input; the training pieces Inception-v3 used (label smoothing,
RMSprop, gradient clipping) against PyTorch; Inception-v3 and BN-GoogLeNet as built."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad
import minigrad.functional as F
import models
from minigrad import Tensor, nn, optim
from minigrad.testing import assert_close, normal, seeds

from conftest import examples


def leaf(array, dtype=np.float64):
    return Tensor(np.asarray(array, dtype=dtype), requires_grad=True)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("affine,track", [(True, True), (False, True), (True, False)])
def test_batchnorm2d_matches_pytorch_over_several_steps(torch, momentum, affine, track):
    """Training steps (batch statistics, the running ones updated: by momentum, or cumulatively with None),
    then eval mode (the running ones); outputs, input and parameter gradients, buffers."""
    ours = nn.BatchNorm2d(5, eps=1e-3, momentum=momentum, affine=affine, track_running_stats=track, dtype=np.float64)
    theirs = torch.nn.BatchNorm2d(5, eps=1e-3, momentum=momentum, affine=affine, track_running_stats=track).double()
    if affine:
        for p in (ours.weight, ours.bias):
            p.data[...] = normal(5, 7)
        with torch.no_grad():
            theirs.weight.copy_(torch.from_numpy(ours.weight.numpy()))
            theirs.bias.copy_(torch.from_numpy(ours.bias.numpy()))
    for step, training in enumerate([True, True, True, False]):
        ours.train(training)
        theirs.train(training)
        x = normal((4, 5, 3, 2), step) * 2 + step
        a, b = leaf(x), torch.tensor(x, requires_grad=True)
        y, z = ours(a), theirs(b)
        assert_close(y, z.detach().numpy(), "library")
        g = normal(y.shape, 10 + step)
        y.backward(g)
        z.backward(torch.tensor(g))
        assert_close(a.grad, b.grad.numpy(), "library")
        if affine:
            assert_close(ours.weight.grad, theirs.weight.grad.numpy(), "library")
            assert_close(ours.bias.grad, theirs.bias.grad.numpy(), "library")
            ours.zero_grad()
            theirs.zero_grad()
        if track:
            assert_close(ours.running_mean, theirs.running_mean.numpy(), "library")
            assert_close(ours.running_var, theirs.running_var.numpy(), "library")
            assert int(ours.num_batches_tracked.numpy()) == int(theirs.num_batches_tracked)


@settings(max_examples=examples(12))
@given(st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)), st.booleans(),
       st.booleans(), st.booleans(), seeds)
def test_batch_norm_gradients_by_finite_differences(shape, training, affine, relu, seed):
    if training and shape[0] * shape[2] * shape[3] < 2:
        shape = (2, *shape[1:])
    c = shape[1]
    running = [Tensor(np.abs(normal(c, seed + 3))), Tensor(np.abs(normal(c, seed + 4)) + 0.5)]
    x = normal(shape, seed) * 2
    if relu:                                          # values away from the ReLU's kink: no finite-difference crossing
        x = np.where(np.abs(x) < 0.2, x + 0.5, x)
    inputs = [leaf(x)] + ([leaf(normal(c, seed + 1) + 1.5), leaf(normal(c, seed + 2))] if affine else [])

    def fn(t, *params):
        return F.batch_norm(t, *[Tensor(r.data.copy()) for r in running], *params, training=training, relu=relu)
    assert minigrad.gradcheck(fn, inputs)
    assert minigrad.gradcheck(fn, inputs, fast_mode=True)


def test_functional_batch_norm_takes_2d_and_3d_inputs_as_pytorch_does(torch):
    for shape in ((6, 3), (4, 3, 5)):
        x = normal(shape, 1)
        ours = F.batch_norm(Tensor(x), None, None, training=True)
        theirs = torch.nn.functional.batch_norm(torch.tensor(x), None, None, training=True)
        assert ours.shape == shape
        assert_close(ours, theirs.numpy(), "library")


def test_buffers_are_saved_and_converted():
    bn = nn.BatchNorm2d(3)
    bn(minigrad.randn(2, 3, 4, 4))
    state = bn.state_dict()
    assert list(state) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert int(state["num_batches_tracked"]) == 1 and not np.allclose(state["running_mean"], 0)
    other = nn.BatchNorm2d(3)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.running_var.numpy(), bn.running_var.numpy())
    model = nn.Sequential(nn.Conv2d(3, 3, 3), nn.BatchNorm2d(3)).double()
    assert {t.dtype for _, t in model._tensors() if t.dtype.kind == "f"} == {np.dtype(np.float64)}
    assert model[1].num_batches_tracked.dtype == np.int64 and model.float()[1].running_mean.dtype == np.float32
    assert [name for name, _ in model.named_buffers()] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]


@pytest.mark.parametrize("call,error,message", [
    (lambda: nn.BatchNorm2d(4)(minigrad.randn(2, 3, 4, 4)), ValueError, r"BatchNorm2d: expected 4 channels, got input"),
    (lambda: nn.BatchNorm2d(3)(minigrad.randn(2, 3, 4)), ValueError, r"BatchNorm2d: expected a 4-D input"),
    (lambda: nn.BatchNorm2d(3, eps=-1), ValueError, "BatchNorm2d: eps must be a finite number >= 0"),
    (lambda: nn.BatchNorm2d(3, momentum=1.5), ValueError, r"BatchNorm2d: momentum must be a number in \[0, 1\]"),
    (lambda: nn.BatchNorm2d(0), ValueError, "BatchNorm2d: num_features must be a positive int"),
    (lambda: nn.BatchNorm2d(3)(minigrad.randn(1, 3, 1, 1)), ValueError,
     r"batch_norm: expected more than 1 value per channel when training, got input of shape \(1, 3, 1, 1\)"),
    (lambda: F.batch_norm(minigrad.randn(2, 3, 4, 4), minigrad.zeros(4), minigrad.zeros(4)), ValueError,
     r"batch_norm: running_mean must have shape \(3,\) for input of shape \(2, 3, 4, 4\), got \(4,\)"),
    (lambda: F.batch_norm(minigrad.randn(2, 3, 4, 4), minigrad.zeros(3, dtype=np.float64), minigrad.zeros(3)), TypeError,
     "batch_norm: running_mean has dtype float64 but input has dtype float32"),
    (lambda: F.batch_norm(minigrad.randn(2, 3, 4, 4), None, None, eps=-1e-5), ValueError, "batch_norm: eps must be"),
    (lambda: F.batch_norm(minigrad.randn(2, 3, 4, 4), None, None, momentum=2), ValueError, "batch_norm: momentum"),
    (lambda: F.batch_norm(minigrad.randn(2, 3, 4, 4), minigrad.zeros(3), None), ValueError, "give both running_mean"),
])
def test_bad_input_to_batch_norm_is_one_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---- the training pieces Inception-v3 used ------------------------------------------------------------------

@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
def test_label_smoothing_matches_pytorch(torch, smoothing):
    logits, target = normal((5, 7), 0), np.array([0, 3, 6, 2, 2])
    a, b = leaf(logits), torch.tensor(logits, requires_grad=True)
    ours = F.cross_entropy(a, target, label_smoothing=smoothing)
    theirs = torch.nn.functional.cross_entropy(b, torch.tensor(target), label_smoothing=smoothing)
    assert_close(ours.numpy(), theirs.detach().numpy(), "library")
    ours.backward()
    theirs.backward()
    assert_close(a.grad, b.grad.numpy(), "library")
    with pytest.raises(ValueError, match=r"cross_entropy: label_smoothing must be a number in \[0, 1\]"):
        F.cross_entropy(a, target, label_smoothing=1.5)


@pytest.mark.parametrize("options", [{}, {"momentum": 0.9}, {"centered": True, "weight_decay": 0.01},
                                     {"alpha": 0.9, "eps": 1.0, "momentum": 0.5, "centered": True}])
def test_rmsprop_matches_pytorch(torch, options):
    start = normal((3, 4), 1)
    ours, theirs = nn.Parameter(start.copy()), torch.nn.Parameter(torch.tensor(start))
    a, b = optim.RMSprop([ours], lr=0.01, **options), torch.optim.RMSprop([theirs], lr=0.01, **options)
    for step in range(4):
        g = normal((3, 4), 10 + step)
        ours.grad, theirs.grad = Tensor(g.copy()), torch.tensor(g)
        a.step()
        b.step()
    assert_close(ours, theirs.detach().numpy(), "library")
    with pytest.raises(ValueError, match=r"RMSprop: alpha must be a number in \[0, 1\]"):
        optim.RMSprop([ours], alpha=2)


@pytest.mark.parametrize("max_norm,norm_type", [(1.0, 2.0), (100.0, 2.0), (0.5, 1.0), (0.5, float("inf"))])
def test_clip_grad_norm_matches_pytorch(torch, max_norm, norm_type):
    grads = [normal((3, 4), 0), normal(5, 1)]
    ours = [nn.Parameter(np.zeros_like(g)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for p, q, g in zip(ours, theirs, grads):
        p.grad, q.grad = Tensor(g.copy()), torch.tensor(g)
    total = nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert_close(total.numpy(), expected.numpy(), "library")
    for p, q in zip(ours, theirs):
        assert_close(p.grad, q.grad.numpy(), "library")
    with pytest.raises(ValueError, match="clip_grad_norm_: max_norm must be >= 0"):
        nn.utils.clip_grad_norm_(ours, -1.0)


# ---- the networks ----------------------------------------------------------------------------------------------

def test_inception_v3_has_torchvisions_size_and_cost():
    """27,161,264 parameters with the auxiliary head, 23,834,568 without (torchvision's counts); 5.71G
    multiply-adds at 299x299 (inference, without the head)."""
    rows = models.summary(models.inception_v3())
    inference = next(r for r in rows if r["name"] == "total (inference)")
    training = next(r for r in rows if r["name"].startswith("total (training"))
    assert training["params"] == 27_161_264 and inference["params"] == 23_834_568
    assert inference["multiply_adds"] == 5_713_216_096
    assert [r["type"] for r in rows if r["name"].startswith("Mixed")] == \
        ["inception A (fig. 5)"] * 3 + ["grid reduction (fig. 10)"] + ["inception C (fig. 6)"] * 4 + \
        ["grid reduction (fig. 10)"] + ["inception E (fig. 7)"] * 2
    assert next(r for r in rows if r["name"] == "Mixed_7c")["output"] == (8, 8, 2048)


def test_inception_v3_trains_one_step_and_matches_its_pytorch_twin(torch):
    from benchmarks.torch_reference import to_torch
    minigrad.manual_seed(0)
    net = models.inception_v3(num_classes=10)
    x = minigrad.randn(2, 3, 299, 299)
    twin = to_torch(net)
    net.eval()
    twin.eval()
    with minigrad.no_grad():
        ours = net(x).numpy()
    theirs = twin(torch.from_numpy(np.ascontiguousarray(x.numpy()))).detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3 * np.abs(theirs).max())
    net.train()
    logits, aux = net(x)
    assert logits.shape == aux.shape == (2, 10)
    models.training_loss((logits, aux), np.array([1, 2])).backward()
    assert all(p.grad is not None for p in net.parameters())


def test_bn_googlenet_has_a_batch_norm_after_every_convolution_and_no_lrn():
    net = models.googlenet(batch_norm=True, num_classes=10, input_size=96)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(norms) == 59 and all(c.bias is None for c in convs)
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in net.modules()) and net.name == "BN-GoogLeNet"
    out = net(minigrad.randn(2, 3, 96, 96))
    models.training_loss(out, np.array([1, 2])).backward()


def test_inception_v3_summary_command_prints_the_table_and_how_the_release_differs(capsys):
    from models.summary import main
    assert main(["inception-v3"]) == 0
    out = capsys.readouterr().out
    assert "Mixed_6e" in out and "23,834,568 parameters" in out and "5,713M multiply-adds" in out
    assert "has 4 (Mixed_6b-6e)" in out and "keep a 5x5 branch" in out


def test_summary_takes_pythons_spelling_of_the_model_name(capsys):
    from models.summary import main
    assert main(["inception_v3"]) == 0
    assert "total (inference): 23,834,568 parameters" in capsys.readouterr().out
