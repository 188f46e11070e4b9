"""Modules: registration, state dicts, modes, and that layers compute what their functional ops do."""

import copy

import numpy as np
import pytest

import minigrad
import minigrad.functional as F
from minigrad import nn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.LocalResponseNorm(3), nn.AvgPool2d(2))
        self.flatten = nn.Flatten()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 2 * 2, 5)

    def forward(self, x):
        return self.fc(self.drop(self.flatten(self.features(x))))


def test_parameters_are_registered_by_attribute():
    model = Small()
    names = [n for n, _ in model.named_parameters()]
    assert names == ["features.0.weight", "features.0.bias", "fc.weight", "fc.bias"]
    assert all(p.requires_grad for p in model.parameters())
    assert len(model.features) == 5 and isinstance(model.features[2], nn.MaxPool2d)
    assert "Conv2d(3, 4, kernel_size=(3, 3)" in repr(model)


def test_forward_backward_and_zero_grad():
    minigrad.manual_seed(0)
    model = Small()
    x = minigrad.randn(2, 3, 8, 8)
    loss = F.cross_entropy(model(x), np.array([1, 4]))
    loss.backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_train_and_eval_switch_dropout():
    model = Small()
    x = minigrad.randn(2, 3, 8, 8)
    model.eval()
    assert not any(m.training for m in model.modules())
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())     # no dropout in eval
    model.train()
    assert all(m.training for m in model.modules())


def test_state_dict_round_trip():
    a, b = Small(), Small()
    b.load_state_dict(a.state_dict())
    x = minigrad.randn(2, 3, 8, 8)
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    state = a.state_dict()
    state["fc.bias"][:] = 7                   # state_dict holds copies
    assert not np.any(a.fc.bias.numpy() == 7)


def test_conv2d_stores_its_filters_as_their_product_matrix(monkeypatch):
    """nn.Conv2d's weight is the (O, C, KH, KW) array PyTorch has, with the values drawn in that order,
    stored as (KH, KW, C, O) (the CPU kernels read it in place); a training step keeps that layout, and
    Numba's kernels give the weight's gradient in it too."""
    monkeypatch.setenv("MINIGRAD_KERNELS", "numba")
    minigrad.manual_seed(5)
    conv = nn.Conv2d(3, 4, (3, 2), padding=1)
    minigrad.manual_seed(5)
    bound = 1 / np.sqrt(3 * 3 * 2)
    drawn = minigrad.random.draw_uniform((4, 3, 3, 2), -bound, bound)
    weight = conv.weight.data
    assert weight.shape == (4, 3, 3, 2) and weight.transpose(2, 3, 1, 0).flags.c_contiguous
    np.testing.assert_array_equal(weight, drawn)
    optimizer = minigrad.optim.SGD(conv.parameters(), lr=0.1, momentum=0.9)
    conv(minigrad.randn(2, 3, 5, 5)).sum().backward()
    assert conv.weight.grad.data.strides == weight.strides
    optimizer.step()
    assert conv.weight.data is weight and not np.array_equal(weight, drawn)
    conv.load_state_dict(nn.Conv2d(3, 4, (3, 2), padding=1).state_dict())
    assert conv.weight.data is weight                   # loaded into the same storage
    stored = nn.stored_filters(drawn)                   # the same layout, for filters made elsewhere
    assert stored.strides == weight.strides and np.array_equal(stored, drawn)
    with pytest.raises(ValueError, match=r"stored_filters: values must be 4-D .* got shape \(4, 3\)"):
        nn.stored_filters(np.zeros((4, 3)))


def test_filters_start_on_a_cache_line_however_they_were_made():
    """A convolution's filters matrix starts on a 64-byte boundary (its 1x1 GEMMs read it in whole vectors)
    after construction, skip_init, .to() a dtype and back, freezing, and loading into a frozen model; a
    misaligned array put in by hand is re-stored by .to()."""
    from kernels.memory import ALIGNMENT, aligned_copy, aligned_empty, aligned_like, is_aligned

    def aligned(conv):
        return is_aligned(conv.weight.data) and conv.weight.data.transpose(2, 3, 1, 0).flags.c_contiguous
    for _ in range(5):                                  # each at whatever offset NumPy's allocator is at
        np.empty(np.random.default_rng().integers(1, 40), np.uint8)
        assert aligned(nn.Conv2d(3, 5, 3))
        with nn.skip_init():
            assert aligned(nn.Conv2d(3, 5, 1))
    conv = nn.Conv2d(4, 8, 1)
    assert aligned(conv.to(np.float64)) and aligned(conv.to(np.float32))
    values = conv.weight.numpy().copy()
    raw = np.empty(values.size + 1, np.float32)[1:]     # 4 bytes past wherever NumPy put it
    conv.weight.data = raw.reshape(1, 1, 4, 8).transpose(3, 2, 0, 1)
    conv.weight.data[...] = values
    assert not is_aligned(conv.weight.data) and aligned(conv.to("cpu"))
    np.testing.assert_array_equal(conv.weight.numpy(), values)
    assert aligned(conv.freeze())
    conv.load_state_dict(nn.Conv2d(4, 8, 1).state_dict())
    assert aligned(conv) and conv.weight.is_frozen
    for shape in [(3,), (2, 5, 7), (0, 4)]:            # (an empty array's address is NumPy's to choose)
        a = aligned_empty(shape, np.float64, zero=True)
        assert a.shape == shape and a.dtype == np.float64 and a.flags.c_contiguous and not a.any()
        assert is_aligned(a) or a.size == 0
    permuted = np.arange(120.0).reshape(2, 3, 4, 5).transpose(3, 2, 0, 1)
    copy = aligned_copy(permuted)
    assert is_aligned(copy) and copy.strides == permuted.strides and np.array_equal(copy, permuted)
    assert aligned_like(permuted).strides == permuted.strides and ALIGNMENT == 64


def test_skip_init_builds_layers_without_drawing_their_values():
    """Inside nn.skip_init a layer's parameters have their shapes and layouts but draw nothing from minigrad's
    generator; outside, drawing resumes, also after an exception in the block."""
    minigrad.manual_seed(3)
    expected = minigrad.random.draw_uniform((5,), 0, 1)
    minigrad.manual_seed(3)
    with nn.skip_init():
        conv, linear = nn.Conv2d(3, 4, (3, 2)), nn.Linear(6, 2)
    assert conv.weight.shape == (4, 3, 3, 2) and conv.weight.data.transpose(2, 3, 1, 0).flags.c_contiguous
    assert conv.bias.shape == (4,) and linear.weight.shape == (2, 6) and linear.bias.shape == (2,)
    assert all(p.requires_grad for p in (*conv.parameters(), *linear.parameters()))
    np.testing.assert_array_equal(minigrad.random.draw_uniform((5,), 0, 1), expected)   # nothing was drawn
    with pytest.raises(RuntimeError), nn.skip_init():
        raise RuntimeError
    minigrad.manual_seed(3)
    nn.Linear(1, 1, bias=False)
    assert not np.array_equal(minigrad.random.draw_uniform((5,), 0, 1), expected)       # drawn again


def test_freeze_fixes_the_parameters_and_kernels_keep_what_they_derive(monkeypatch):
    """Module.freeze: the module in eval mode, every parameter read-only and no longer requiring grad (an
    optimizer takes them and skips them); the same outputs and input gradients bit for bit, the CPU kernels
    transforming each Winograd layer's filters once (forward and input gradient) and reading them after;
    every way of writing refused, each naming how to undo it; load_state_dict and .to() keep it frozen on
    new arrays (the kept transforms dropped); replacing .data or a deepcopy ends the freeze; unfreeze()
    restores everything."""
    monkeypatch.setenv("MINIGRAD_KERNELS", "numba")
    winograd = pytest.importorskip("kernels.cpu.conv.winograd", reason="numba is not installed")
    minigrad.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 48, 3, padding=1)).eval()
    x = minigrad.randn(2, 16, 7, 7, requires_grad=True)

    def outputs():
        x.grad = None
        y = model(x)
        (y * y).sum().backward()
        return y.numpy().copy(), x.grad.numpy().copy()
    expected = outputs()
    made = []
    transform = winograd.transform_filters
    monkeypatch.setattr(winograd, "transform_filters", lambda *a, **kw: made.append(kw["flip"]) or transform(*a, **kw))
    assert model.freeze() is model and not model.training
    weights = [model[0].weight, model[2].weight]
    assert all(p.is_frozen and not p.requires_grad and p.grad is None and not p.data.flags.writeable
               for p in model.parameters())           # the gradients of the first outputs() dropped
    for _ in range(3):
        for got, want in zip(outputs(), expected):
            np.testing.assert_array_equal(got, want)
    assert made == [False, False, True, True]          # each layer's forward, then its input gradient's, once
    assert all(len(w.weight_cache()) == 2 for w in weights)

    weight = weights[0]
    with pytest.raises(ValueError, match="read-only"):
        weight.data[0] = 1
    with pytest.raises(ValueError, match="read-only"):
        weight.data -= 1
    with pytest.raises(RuntimeError, match=r"add_: the tensor \(shape \(32, 16, 3, 3\)\) is frozen.*unfreeze_"):
        weight.add_(1)
    before = weight.numpy().copy()
    minigrad.optim.SGD(model.parameters(), lr=0.1).step()     # frozen ones are taken, and skipped without grads
    np.testing.assert_array_equal(weight.numpy(), before)
    weight.requires_grad = True                        # a gradient may still be asked for; a step may not
    model(x).sum().backward()
    with pytest.raises(RuntimeError, match=r"SGD.step: parameter 0 \(shape \(32, 16, 3, 3\)\) is frozen.*unfreeze"):
        minigrad.optim.SGD([weight], lr=0.1).step()
    weight.requires_grad, weight.grad = False, None

    other = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 48, 3, padding=1)).eval()
    model.load_state_dict(other.state_dict())
    assert weight.is_frozen and weight.weight_cache() == {}
    assert weight.data.strides == other[0].weight.data.strides        # still stored as its product's matrix
    np.testing.assert_array_equal(model(x).numpy(), other(x).numpy())
    model.to(np.float64)
    assert weight.is_frozen and weight.dtype == np.float64 and not weight.data.flags.writeable
    model.to(np.float32)

    copied = copy.deepcopy(model)                      # the copies are new arrays, not frozen views
    assert not copied[2].weight.is_frozen and copied[2].weight.weight_cache() is None
    copied[2].weight.data[...] = 0                     # zero filters, read by the kernels: only the bias is left
    np.testing.assert_array_equal(copied(x).numpy(), np.broadcast_to(copied[2].bias.numpy()[:, None, None], (2, 48, 7, 7)))
    weight.data.flags.writeable = True                 # writable again by hand: nothing kept is read
    assert weight.weight_cache() is None and weight.is_frozen
    weight.data = weight.data.copy()                   # replaced: no longer frozen
    assert not weight.is_frozen and weight.weight_cache() is None
    assert model.unfreeze() is model and model.training
    assert all(not p.is_frozen and p.requires_grad and p.data.flags.writeable for p in model.parameters())
    np.testing.assert_array_equal(model.eval()(x).numpy(), other(x).numpy())


def test_load_state_dict_names_every_mismatch():
    model = Small()
    state = model.state_dict()
    state["fc.weight"] = np.zeros((5, 3), np.float32)
    state["fc.bias"] = state["fc.bias"].astype(np.float64)
    del state["features.0.bias"]
    state["extra"] = np.zeros(1)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    for part in ["missing: features.0.bias", "unexpected: extra",
                 "shape of fc.weight: checkpoint (5, 3), model (5, 16)", "dtype of fc.bias: checkpoint float64"]:
        assert part in message
    state = Small().state_dict()
    del state["fc.bias"]
    model.load_state_dict(state, strict=False)     # missing names allowed when not strict
    np.testing.assert_array_equal(model.fc.weight.numpy(), state["fc.weight"])


def test_layers_match_their_functional_ops():
    x = minigrad.randn(2, 3, 9, 9)
    conv = nn.Conv2d(3, 6, (3, 5), stride=2, padding=(1, 2))
    np.testing.assert_array_equal(conv(x).numpy(), F.conv2d(x, conv.weight, conv.bias, 2, (1, 2)).numpy())
    bound = 1 / np.sqrt(3 * 3 * 5)                 # PyTorch's default initialisation range
    assert np.abs(conv.weight.numpy()).max() <= bound and conv.weight.dtype == np.float32
    pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
    assert pool(x).shape == (2, 3, 5, 5)
    assert nn.AvgPool2d(3, 3, ceil_mode=True)(x).shape == (2, 3, 3, 3)
    assert nn.Conv2d(3, 2, 1, bias=False, dtype=np.float64).bias is None


def test_parameters_take_their_devices_layout():
    """On a GPU every parameter is C-contiguous (a 1x1 convolution's filters, stored on the CPU as (KH, KW, C, O)
    behind their shape, would arrive Fortran-ordered: copied by every kernel call, and no one-pass SGD); on the
    CPU a convolution's filters are stored as their product's matrix again.  NumPy stands in for CuPy."""
    from minigrad.nn import placed_for, stored_filters
    filters = stored_filters(np.random.default_rng(0).standard_normal((8, 4, 1, 1)).astype(np.float32))
    assert filters.flags.f_contiguous and not filters.flags.c_contiguous
    on_gpu = placed_for(filters, "cuda:0", filters=True)
    assert on_gpu.flags.c_contiguous and np.array_equal(on_gpu, filters)
    back = placed_for(on_gpu, "cpu", filters=True)
    assert back.transpose(2, 3, 1, 0).flags.c_contiguous and np.array_equal(back, filters)
    assert placed_for(back, "cpu", filters=True) is back                  # already so: no copy
    bias = np.zeros(8, np.float32)
    assert placed_for(bias, "cpu") is bias
