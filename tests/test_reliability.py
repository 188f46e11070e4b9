"""Reliability: autograd misuse, memory over many steps, numerics at extremes, determinism."""

import numpy as np
import pytest

import minigrad
import minigrad.functional as F
import models
from kernels import reference

# ---- autograd misuse ---------------------------------------------------------------------

def test_in_place_change_after_use_is_detected_not_a_wrong_gradient():
    a = minigrad.tensor([1.0, 2.0], requires_grad=True)
    b = a * 3.0
    y = (b * b).sum()                                 # b is saved for backward
    view = b.detach()                                 # shares b's data and its version counter
    with minigrad.no_grad():
        view += 1.0
    with pytest.raises(RuntimeError, match=r"input 0 of mul was modified by an in-place operation after it "
                                           r"was used \(version 0 then, 1 now\)"):
        y.backward()


def test_in_place_on_leaves_and_graph_tensors():
    w = minigrad.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="add_: a leaf tensor that requires grad cannot be changed in place"):
        w.add_(1.0)
    with pytest.raises(RuntimeError, match="mul_: in-place changes to a tensor inside a recorded graph"):
        (w * 2.0).mul_(3.0)
    with minigrad.no_grad():
        w.add_(1.0).mul_(2.0)
    assert w.item() == 4.0
    t = minigrad.tensor([1.0, 2.0])
    t += 1
    t.zero_()
    assert t.numpy().tolist() == [0.0, 0.0]


def test_optimizer_steps_count_as_in_place_changes():
    w = minigrad.nn.Parameter(np.array([1.0, 2.0]))
    optimizer = minigrad.optim.SGD([w], lr=0.1)
    (w * w).sum().backward()
    y = (w * w).sum()
    optimizer.step()                                  # changes w, which y's graph saved
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_freed_graph_non_scalar_and_integer_misuse():
    x = minigrad.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="a second time"):
        y.backward()
    with pytest.raises(RuntimeError, match="grad can be omitted only for a one-element output"):
        (x * 2.0).backward()
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients"):
        minigrad.tensor([1, 2]).requires_grad = True


# ---- memory --------------------------------------------------------------------------------

def test_memory_is_flat_over_training_steps():
    """The full figure (300 steps) is in BENCHMARKS.md/RELIABILITY.md: python -m benchmarks.memory."""
    from benchmarks.memory import train_steps
    rss = {}
    train_steps(50, batch=8, on_step=lambda step, mb: rss.__setitem__(step, mb))
    growth = (max(v for k, v in rss.items() if k >= 20) - rss[20]) / rss[20]
    assert growth < 0.05, f"resident memory grew {growth:.1%} between steps 20 and 50"


# ---- numerics --------------------------------------------------------------------------------

def test_lrn_is_stable_for_huge_inputs():
    x = (np.random.default_rng(0).standard_normal((2, 8, 5, 5)) * 1e6).astype(np.float32)
    t = minigrad.Tensor(x, requires_grad=True)
    y = F.local_response_norm(t, 5)
    y.backward(np.ones(y.shape, np.float32))
    y64, scale64 = reference.lrn_forward(x.astype(np.float64), 5, 1e-4, 0.75, 1.0)
    assert np.isfinite(y.numpy()).all() and np.isfinite(t.grad.numpy()).all()
    np.testing.assert_allclose(y.numpy(), y64, rtol=1e-5)
    expected = reference.lrn_backward(x.astype(np.float64), y64, scale64, np.ones_like(y64), 5, 1e-4, 0.75, 1.0)
    np.testing.assert_allclose(t.grad.numpy(), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_softmax_and_cross_entropy_are_stable_at_plus_minus_1e4():
    logits = minigrad.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], requires_grad=True)
    loss = F.cross_entropy(logits, np.array([1, 2]))
    loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(logits.grad.numpy()).all()
    np.testing.assert_allclose(loss.item(), (2e4 + np.log(3)) / 2, rtol=1e-6)


def test_float32_googlenet_agrees_with_float64():
    """Forward and backward of a whole GoogLeNet (64x64, no auxiliary heads) in float32 against
    the same network in float64: relative errors stay at float32's level.  The gradients are compared
    all together: where a ReLU's input or a max-pool's window is at a near-tie, the two precisions may
    decide it differently, which moves a few elements of an early layer's gradient by their own size
    (with this seed, conv1's weight gradient by 1.3%, the whole gradient by 3e-4)."""
    minigrad.manual_seed(0)
    net32 = models.googlenet(num_classes=10, aux_logits=False, input_size=64).eval()
    net64 = models.googlenet(num_classes=10, aux_logits=False, input_size=64).eval()
    for p32, p64 in zip(net32.parameters(), net64.parameters()):
        p64.data = p32.data.astype(np.float64)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64))
    target = np.array([3, 7])
    results = []
    for net, dtype in ((net32, np.float32), (net64, np.float64)):
        logits = net(minigrad.Tensor(x.astype(dtype)))
        F.cross_entropy(logits, target).backward()
        results.append((logits.numpy(), [p.grad.numpy() for p in net.parameters()]))
    (logits32, grads32), (logits64, grads64) = results
    assert np.abs(logits32 - logits64).max() <= 1e-4 * np.abs(logits64).max()
    grad32, grad64 = (np.concatenate([g.ravel() for g in grads]) for grads in (grads32, grads64))
    error = np.linalg.norm(grad32 - grad64) / np.linalg.norm(grad64)
    assert error < 1e-3, f"relative gradient error {error:.2e}"


# ---- determinism ---------------------------------------------------------------------------------

def test_same_seed_gives_bit_identical_losses():
    def losses():
        minigrad.manual_seed(5)
        net = models.mini_googlenet(num_classes=4, in_channels=1, input_size=16)     # dropout included
        optimizer = minigrad.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        x = minigrad.randn(8, 1, 16, 16)
        out = []
        for _ in range(5):
            loss = F.cross_entropy(net(x), np.arange(8) % 4)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            out.append(loss.item())
        return out
    assert losses() == losses()
