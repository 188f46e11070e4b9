"""The engine on a GPU (CuPy arrays): every op against the CPU path, gradient checks in float64,
devices, mixed-device errors, and a whole training step.  Marked gpu: skipped (with the reason)
where there is no GPU; `python -m benchmarks.gpu_check` runs them with MINIGRAD_REQUIRE_GPU=1.
The kernels themselves are compared with the reference on a GPU by tests/test_kernels.py's
"cuda" cases.
"""

import contextlib
import warnings

import numpy as np
import pytest

import minigrad
import minigrad.functional as F
import models
from minigrad import nn, optim
from minigrad.testing import assert_close

pytestmark = pytest.mark.gpu


def no_host_round_trips():
    """Best effort: CuPy's (deprecated) synchronisation detector, which raises on a device-to-host sync."""
    try:
        import cupyx
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cupyx.allow_synchronize(False)
    except (ImportError, AttributeError):
        return contextlib.nullcontext()


def normal(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


OPS = {   # name: (function of tensors, input shapes), the max-pool input without ties
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, 2, 1), [(2, 3, 9, 8), (4, 3, 3, 3), (4,)]),
    "conv2d_relu": (lambda x, w, b: F.conv2d_relu(x, w, b, 1, 2), [(2, 3, 9, 8), (5, 3, 5, 5), (5,)]),
    "conv2d 1x1": (lambda x, w: F.conv2d(x, w), [(2, 6, 5, 5), (3, 6, 1, 1)]),
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True), [(2, 3, 10, 9)]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False), [(2, 3, 10, 9)]),
    "relu": (F.relu, [(2, 3, 4, 5)]),
    "local_response_norm": (lambda x: F.local_response_norm(x, 5, 1e-2, 0.75, 1.0), [(2, 7, 4, 5)]),
    "cat": (lambda a, b: minigrad.cat([a, b], 1), [(2, 3, 4, 5), (2, 2, 4, 5)]),
    "split": (lambda x: minigrad.cat([p * (i + 1.0) for i, p in enumerate(x.split([1, 3, 2], 1))][::-1], 1),
              [(2, 6, 4, 5)]),
    "linear": (lambda x, w, b: F.linear(x, w, b), [(4, 6), (3, 6), (3,)]),
    "log_softmax": (lambda x: F.log_softmax(x, 1), [(4, 6)]),
    "cross_entropy": (lambda x: F.cross_entropy(x, np.array([0, 5, 2, 1])), [(4, 6)]),
    "arithmetic": (lambda a, b: ((a * b - a / (b * b + 1)) ** 2).sum(1), [(3, 4), (3, 4)]),
}


def inputs_for(name, shapes, dtype):
    if name == "max_pool2d":
        count = int(np.prod(shapes[0]))
        return [np.random.default_rng(0).permutation(count).reshape(shapes[0]).astype(dtype) * 0.1]
    return [normal(shape, i, dtype) for i, shape in enumerate(shapes)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(OPS))
def test_every_op_on_the_gpu_matches_the_cpu(name, dtype):
    fn, shapes = OPS[name]
    arrays = inputs_for(name, shapes, dtype)
    results = []
    for device in ("cpu", "cuda"):
        tensors = [minigrad.tensor(a, requires_grad=True, device=device) for a in arrays]
        with no_host_round_trips() if device == "cuda" else contextlib.nullcontext():
            out = fn(*tensors)
            upstream = minigrad.tensor(normal(out.shape, 9, dtype), device=device)
            out.backward(upstream)
        assert out.device == ("cpu" if device == "cpu" else "cuda:0")
        assert all(t.grad.device == out.device for t in tensors)
        results.append((out.numpy(), [t.grad.numpy() for t in tensors]))
    (cpu_out, cpu_grads), (gpu_out, gpu_grads) = results
    assert_close(gpu_out, cpu_out, "path")
    for g_gpu, g_cpu in zip(gpu_grads, cpu_grads):
        assert_close(g_gpu, g_cpu, "path")


@pytest.mark.parametrize("name", [n for n in OPS if n != "cross_entropy"])
def test_every_op_passes_gradcheck_on_the_gpu_in_float64(name):
    fn, shapes = OPS[name]
    tensors = [minigrad.tensor(a, requires_grad=True, device="cuda") for a in inputs_for(name, shapes, np.float64)]
    assert minigrad.gradcheck(fn, tensors)


def test_devices_and_moving_between_them():
    x = minigrad.randn(2, 3, requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda:0" and x.device == "cpu" and y.to("cuda:0") is y
    (y * 2).sum().backward()
    assert x.grad.device == "cpu"                      # the gradient came back across devices
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 2, np.float32))
    assert y.cpu().device == "cpu" and x.cuda().device == "cuda:0"
    with pytest.raises(ValueError, match="does not exist"):
        x.to("cuda:99")


def test_mixing_devices_in_one_op_is_a_clear_error():
    x_cpu, w_gpu = minigrad.randn(1, 3, 5, 5), minigrad.randn(2, 3, 3, 3, device="cuda")
    with pytest.raises(ValueError, match="conv2d: weight is on cuda:0 but input is on cpu"):
        F.conv2d(x_cpu, w_gpu)
    with pytest.raises(ValueError, match="linear: weight is on cuda:0 but input is on cpu"):
        F.linear(minigrad.randn(2, 3), minigrad.randn(4, 3, device="cuda"))
    with pytest.raises(ValueError, match="cat: input 1 is on cuda:0 but input 0 is on cpu"):
        minigrad.cat([x_cpu, x_cpu.to("cuda")], 1)
    with pytest.raises(ValueError, match="add: input 1 is on cuda:0 but input 0 is on cpu"):
        x_cpu + x_cpu.to("cuda")


def test_a_training_step_on_the_gpu_matches_the_cpu():
    losses, weights = [], []
    for device in ("cpu", "cuda"):
        minigrad.manual_seed(0)
        net = models.mini_googlenet(num_classes=10, input_size=16, dropout=0.0).to(device)
        opt = optim.SGD(optim.parameter_groups(net, 0.05, 5e-4), lr=0.05, momentum=0.9)
        x = minigrad.tensor(normal((8, 3, 16, 16), 0), device=device)
        target = np.arange(8) % 10
        for _ in range(3):
            loss = models.training_loss(net(x), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(loss.item())
        weights.append(net.state_dict())
    assert abs(losses[0] - losses[1]) < 1e-4 * max(1.0, abs(losses[0]))
    for name in weights[0]:
        np.testing.assert_allclose(weights[1][name], weights[0][name], rtol=1e-3, atol=1e-5, err_msg=name)


def test_module_to_moves_parameters_and_gradients():
    layer = nn.Conv2d(3, 4, 3)
    layer(minigrad.randn(1, 3, 5, 5)).sum().backward()
    assert layer.to("cuda") is layer
    assert all(p.device == "cuda:0" and p.grad.device == "cuda:0" for p in layer.parameters())
    assert all(p.device == "cpu" for p in layer.cpu().parameters())


def test_googlenet_forward_and_backward_on_the_gpu():
    minigrad.manual_seed(0)
    net = models.googlenet(input_size=96).to("cuda")
    outputs = net(minigrad.randn(2, 3, 96, 96, device="cuda"))
    models.training_loss(outputs, np.array([1, 2])).backward()
    assert all(p.grad is not None and p.grad.device == "cuda:0" for p in net.parameters())
