"""The CUDA backend proven on the CPU: its sources compiled as C++ (kernels/cuda/host.py) and run one
thread at a time.  tests/test_kernels.py compares every kernel with the reference on drawn geometries
and launch shapes; here: every kernel is reached, the launcher refuses wrong calls, the whole engine
runs on the emulated kernels, and the kernel tests pass again under AddressSanitizer, which does
catch an out-of-bounds launch.

Skips without a C++ compiler; MINIGRAD_REQUIRE_CUDA_CHECKS=1 (CI) makes that a failure.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad
import minigrad.functional as F
import models
from kernels import reference as ref
from kernels.cuda.loader import MODULES

from backends import emulated
from conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent


def test_every_kernel_is_launched_by_the_wrappers():
    k = emulated()
    k.launch.launched.clear()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5))
    y = k.conv2d_forward(x, rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4), (1, 1), (1, 1), True)
    k.conv2d_backward(x, rng.standard_normal((4, 3, 3, 3)), y, (1, 1), (1, 1), True, y)
    pooled, argmax = k.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1), True)
    k.max_pool2d_backward(pooled, argmax, x.shape, (3, 3), (2, 2), (1, 1), True)
    k.avg_pool2d_backward(k.avg_pool2d_forward(x, (3, 3), (2, 2), (1, 1), True, False), x.shape, (3, 3), (2, 2),
                          (1, 1), True, False)
    k.relu_backward(x, k.relu_forward(x))
    out, scale = k.lrn_forward(x, 5, 1e-4, 0.75, 1.0)
    k.lrn_backward(x, out, scale, x, 5, 1e-4, 0.75, 1.0)
    k.split(k.concat([x, x], 1), [3, 3], 1)
    k.add_n([x, x, x])
    k.sgd_update(x.copy(), x, None, 0.1, 0.9, 1e-4, True)
    y, mean, invstd = k.batch_norm_forward(x, None, None, np.zeros(3), np.ones(3), True, 0.1, 1e-5, True)
    k.batch_norm_backward(x, x, None, mean, invstd, True, y)
    assert k.launch.launched == {name for names in MODULES.values() for name in names}


def test_the_launcher_refuses_a_wrong_call_before_any_kernel_runs():
    k = emulated()
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="relu_forward: the kernel takes 2 arguments after total, got 1"):
        k.launch("relu_forward", x.dtype, x.size, x)
    with pytest.raises(TypeError, match="argument y must be a C-contiguous float32 array, got ndarray float64"):
        k.launch("relu_forward", x.dtype, x.size, x, np.zeros((2, 3)))
    with pytest.raises(TypeError, match="argument x must be a C-contiguous float32 array"):
        k.launch("relu_forward", x.dtype, x.size, np.zeros((3, 2), np.float32).T, x)
    with pytest.raises(TypeError, match="argument argmax must be a C-contiguous int32 array"):
        k.launch("max_pool2d_forward", x.dtype, 1, x, 2, 3, 1, 1, 1, 1, 0, 0, 2, 3, x, x)
    with pytest.raises(TypeError, match="argument argmax must be a C-contiguous int32 array, got ndarray int64"):
        k.launch("max_pool2d_forward", x.dtype, 1, x, 2, 3, 1, 1, 1, 1, 0, 0, 2, 3, x, np.zeros(6, np.int64))


def test_the_gpu_launcher_compiles_each_module_once_per_dtype_and_device(monkeypatch):
    """CupyLauncher against a stand-in for CuPy that records what it is asked to compile and launch."""
    import types

    from kernels.cuda.loader import CupyLauncher

    events, device = [], types.SimpleNamespace(id=0)

    class RawModule:
        def __init__(self, code, options):
            events.append(("compile", "KERNEL(relu_forward)" in code, options))

        def get_function(self, name):
            return lambda grid, block, args: events.append(("launch", name, grid, block, args))

    fake = types.ModuleType("cupy")
    fake.RawModule = RawModule
    fake.cuda = types.SimpleNamespace(Device=lambda: device)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    launch = CupyLauncher()
    x32, x64 = np.zeros(300, np.float32), np.zeros(300)
    launch("relu_forward", x32.dtype, x32.size, x32, x32)
    launch("relu_backward", x32.dtype, x32.size, x32, x32, x32)      # same module and dtype: no compile
    launch("relu_forward", x64.dtype, x64.size, x64, x64)
    device.id = 1
    launch("relu_forward", x32.dtype, x32.size, x32, x32)
    compiles = [e for e in events if e[0] == "compile"]
    assert [c[1] for c in compiles] == [True] * 3
    assert [c[2][:2] for c in compiles] == [("-Dreal=float", "-DKERNEL_SUFFIX=_f32"),
                                            ("-Dreal=double", "-DKERNEL_SUFFIX=_f64"),
                                            ("-Dreal=float", "-DKERNEL_SUFFIX=_f32")]
    launches = [e for e in events if e[0] == "launch"]
    assert [e[1] for e in launches] == ["relu_forward_f32", "relu_backward_f32", "relu_forward_f64",
                                        "relu_forward_f32"]
    assert launches[0][2:4] == ((2,), (256,)) and launches[0][4][0] == 300     # 300 threads: 2 blocks of 256
    with pytest.raises(TypeError, match="the CUDA kernels take float32 or float64 arrays, not float16"):
        x16 = np.zeros(3, np.float16)
        launch("relu_forward", x16.dtype, x16.size, x16, x16)


@pytest.fixture
def on_emulated_cuda(monkeypatch):
    """Every op of the engine computes with the emulated CUDA kernels."""
    import kernels

    backend = emulated()
    monkeypatch.setattr(kernels, "for_array", lambda a: backend)
    return backend


def test_every_op_passes_gradcheck_on_the_emulated_cuda_kernels(on_emulated_cuda):
    rng = np.random.default_rng(0)
    x = minigrad.tensor(rng.standard_normal((2, 3, 5, 6)), requires_grad=True)
    w = minigrad.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    b = minigrad.tensor(rng.standard_normal(4), requires_grad=True)
    distinct = minigrad.tensor(rng.permutation(60).reshape(2, 3, 2, 5) * 0.1, requires_grad=True)
    checks = {
        "conv2d": (lambda x, w, b: F.conv2d(x, w, b, 2, 1), [x, w, b]),
        "conv2d_relu": (lambda x, w, b: F.conv2d_relu(x, w, b, 1, 1), [x, w, b]),
        "max_pool2d": (lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=True), [distinct]),
        "avg_pool2d": (lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False), [x]),
        "relu": (F.relu, [x]),
        "local_response_norm": (lambda t: F.local_response_norm(t, 3, 0.1, 0.75, 1.0), [x]),
        "cat": (lambda a, b: minigrad.cat([a, b], 1), [x, x]),
    }
    for name, (fn, inputs) in checks.items():
        on_emulated_cuda.launch.launched.clear()
        assert minigrad.gradcheck(fn, inputs), name
        assert on_emulated_cuda.launch.launched, f"{name} did not run on the emulated kernels"


def test_a_googlenet_style_network_matches_the_cpu_path(on_emulated_cuda, monkeypatch):
    import kernels

    minigrad.manual_seed(0)
    net = models.mini_googlenet(num_classes=5, input_size=12)
    x = minigrad.randn(2, 3, 12, 12)
    target = np.array([1, 3])
    results = []
    for backend in (on_emulated_cuda, kernels.cpu_backend("numba")):
        monkeypatch.setattr(kernels, "for_array", lambda a, backend=backend: backend)
        net.zero_grad()
        minigrad.manual_seed(1)                     # the same dropout mask in both runs
        loss = F.cross_entropy(net(x), target)
        loss.backward()
        results.append((loss.item(), [p.grad.numpy().copy() for p in net.parameters()]))
    (loss_cuda, grads_cuda), (loss_cpu, grads_cpu) = results
    assert abs(loss_cuda - loss_cpu) < 1e-5
    for a, b in zip(grads_cuda, grads_cpu):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _asan_runtime():
    from kernels.cuda.host import compiler

    cxx = compiler()
    if cxx is None:
        return None
    path = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


def _run_under_asan(arguments, **extra_env):
    runtime = _asan_runtime()
    require_tool(runtime, "no AddressSanitizer runtime (libasan) for the C++ compiler")
    env = {**os.environ, "LD_PRELOAD": runtime, "ASAN_OPTIONS": "detect_leaks=0", "MINIGRAD_CUDA_HOST_SANITIZE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
           **extra_env}
    return subprocess.run([sys.executable, *arguments], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)


def test_the_kernel_tests_pass_under_address_sanitizer():
    result = _run_under_asan(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_kernels.py", "-k", "cuda-host"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "AddressSanitizer" not in result.stderr


def test_address_sanitizer_catches_an_out_of_bounds_launch():
    """The check above could pass by detecting nothing: launching past the end of an array must be reported."""
    script = ("import numpy as np\nfrom backends import emulated\nk = emulated()\n"
              "small = np.zeros(10)\nk.launch('relu_forward', small.dtype, 12, small, np.zeros(10))\n")
    result = _run_under_asan(["-c", script])
    assert result.returncode != 0 and "AddressSanitizer: heap-buffer-overflow" in result.stderr, result.stderr[-2000:]


def test_the_emulation_flushes_float32_subnormals_as_the_gpu_does():
    """CuPy compiles every kernel with -ftz=true: in float32 a subnormal input reads as 0 and a subnormal result
    becomes 0 (float64 keeps them).  The emulation runs float32 kernels with the CPU's FTZ and DAZ modes, so it
    computes what the GPU does; the NumPy reference keeps float32 subnormals: a documented difference, for
    values below 1.2e-38 only."""
    k = emulated()
    tiny = np.array([1e-40, -1e-40, 2.0], np.float32)                   # subnormal in float32
    zeros = np.zeros(3, np.float32)
    assert np.array_equal(k.add_n([tiny, zeros]), [0.0, 0.0, 2.0])      # read as 0: the sum is 0
    assert np.array_equal(ref.add_n([tiny, zeros]), tiny)
    # ReLU compares with the subnormal read as 0 and passes the value's bits: -1e-40 survives, where the
    # reference clamps it
    assert np.array_equal(k.relu_forward(tiny), tiny) and ref.relu_forward(tiny)[1] == 0
    wide = np.array([1e-310, -1e-310, 2.0])                             # subnormal in float64: kept
    np.testing.assert_array_equal(k.add_n([wide, np.zeros(3)]), wide)
    np.testing.assert_array_equal(k.relu_forward(wide), ref.relu_forward(wide))
    # the modes are restored after each launch: NumPy's own float32 arithmetic keeps subnormals
    assert np.float32(1e-38) / np.float32(100) > 0
