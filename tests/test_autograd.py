"""Autograd semantics: reuse, deep chains, retain_graph, no_grad, broadcasting, dtypes."""

import gc
import weakref

import numpy as np
import pytest

import minigrad
from minigrad import Tensor


def test_tensor_construction_and_dtypes():
    assert minigrad.tensor([1.0, 2.0]).dtype == np.float32                 # the default
    assert minigrad.tensor(np.array([1.0, 2.0])).dtype == np.float64       # float64 arrays stay float64
    assert minigrad.tensor([1, 2]).dtype.kind == "i"                       # labels stay integer
    assert minigrad.tensor([1, 2], dtype=np.float64).dtype == np.float64
    t = minigrad.tensor([[1.0, 2.0]], requires_grad=True)
    assert t.shape == (1, 2) and t.ndim == 2 and t.device == "cpu" and t.requires_grad and t.is_leaf
    assert t.numel() == 2 and t.size() == (1, 2) and t.size(1) == 2
    source = np.ones(3, np.float32)
    copy = minigrad.tensor(source)
    source[0] = 5
    assert copy.numpy()[0] == 1                                            # tensor() copies
    assert "requires_grad=True" in repr(t)


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="requires_grad: only floating-point"):
        minigrad.tensor([1, 2], requires_grad=True)


def test_reuse_accumulates_gradients():
    a = minigrad.tensor([1.5, -2.0, 3.0], requires_grad=True)
    b = a + a
    c = b * b                      # c = 4a^2, dc/da = 8a
    c.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), 8 * a.numpy())


def test_diamond_graph():
    x = minigrad.tensor([2.0], requires_grad=True)
    y = x * 3.0
    z = y * y + y                  # z = 9x^2 + 3x
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), [18 * 2.0 + 3])


def test_deep_chain_of_10000_ops_needs_no_recursion():
    x = minigrad.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 10_000], rtol=1e-3)


def test_graph_is_freed_and_second_backward_is_a_clear_error():
    x = minigrad.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward_and_grads_accumulate():
    x = minigrad.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * 2 * x.numpy())


def test_saved_arrays_are_released_after_backward():
    x = minigrad.tensor(np.ones((4, 4)), requires_grad=True)
    hidden = x * 2.0
    probe = weakref.ref(hidden.data)
    y = (hidden * hidden).sum()
    del hidden
    gc.collect()
    assert probe() is not None     # still saved for the backward of hidden * hidden
    y.backward()
    gc.collect()
    assert probe() is None         # freed once backward has used it


def test_conv2d_keeps_its_columns_only_when_a_backward_follows_and_until_it_ran(monkeypatch):
    pytest.importorskip("numba")
    import kernels
    import minigrad.functional as F

    monkeypatch.setenv("MINIGRAD_KERNELS", "numba")
    cpu = kernels.cpu_backend()
    given = []
    forward = cpu.conv2d_forward
    monkeypatch.setattr(cpu, "conv2d_forward", lambda *args: given.append(args[6]) or forward(*args))
    x, w = minigrad.randn(2, 3, 6, 6), minigrad.randn(4, 3, 3, 3, requires_grad=True)
    with minigrad.no_grad():
        F.conv2d(x, w, padding=1)
    F.conv2d(x, w.detach(), padding=1)
    assert given == [None, None]                   # no backward can follow: the kernel keeps nothing
    y = F.conv2d(x, w, padding=1)
    assert given[-1] is y.creator.saved and "columns" in given[-1]
    probe = weakref.ref(given.pop()["columns"])
    y.backward(np.ones(y.shape, np.float32))
    gc.collect()
    assert probe() is None                         # released with the graph


def test_backward_of_non_scalar_needs_grad():
    x = minigrad.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    with pytest.raises(RuntimeError, match="grad can be omitted only for a one-element output"):
        y.backward()
    y.backward(np.array([1.0, -1.0], np.float32))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, -2.0])
    with pytest.raises(ValueError, match=r"grad has shape \(3,\)"):
        (x * 2.0).backward(np.ones(3, np.float32))


def test_backward_without_graph_is_a_clear_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        minigrad.tensor([1.0]).backward()


def test_no_grad_records_nothing():
    x = minigrad.tensor([1.0], requires_grad=True)
    with minigrad.no_grad():
        y = x * 2.0
        assert not minigrad.is_grad_enabled()
    assert minigrad.is_grad_enabled()
    assert not y.requires_grad and y.creator is None


def test_detach_cuts_the_graph():
    x = minigrad.tensor([3.0], requires_grad=True)
    y = x.detach() * x
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0])


def _broadcast_gradient(shape, other_full):
    """d sum(a*b) / da by brute force: every position of the broadcast result adds its
    other-operand value into the element of `a` it was read from."""
    grad = np.zeros(shape)
    offset = other_full.ndim - len(shape)
    for index in np.ndindex(other_full.shape):
        source = tuple(0 if n == 1 else i for i, n in zip(index[offset:], shape))
        grad[source] += other_full[index]
    return grad


@pytest.mark.parametrize("a_shape,b_shape", [((2, 3), (3,)), ((2, 1), (1, 3)), ((4, 2, 3), (2, 1)), ((), (2,))])
def test_broadcasting_gradients_unbroadcast(a_shape, b_shape):
    rng = np.random.default_rng(0)
    a = Tensor(rng.standard_normal(a_shape), requires_grad=True)
    b = Tensor(rng.standard_normal(b_shape), requires_grad=True)
    (a * b).sum().backward()
    full = np.broadcast_shapes(a_shape, b_shape)
    assert a.grad.shape == a_shape and b.grad.shape == b_shape
    np.testing.assert_allclose(a.grad.numpy(), _broadcast_gradient(a_shape, np.broadcast_to(b.numpy(), full)))
    np.testing.assert_allclose(b.grad.numpy(), _broadcast_gradient(b_shape, np.broadcast_to(a.numpy(), full)))


def test_numpy_arrays_on_the_left_defer_to_tensor():
    x = minigrad.tensor([1.0, 2.0], requires_grad=True)
    y = np.array([3.0, 4.0], np.float32) * x
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


def test_scalars_keep_the_tensor_dtype():
    x = minigrad.tensor([1.0, 2.0])
    assert (x * 2.5 + 1).dtype == np.float32
    assert (1 / x).dtype == np.float32


def test_arithmetic_promotes_mixed_dtypes_but_kernel_ops_refuse_them():
    """Arithmetic promotes as PyTorch does (float32 + float64 -> float64); the kernel ops compute in one dtype
    and say so (conv2d's input and weight, cat's parts)."""
    a = minigrad.tensor([1.0], dtype=np.float32)
    b = minigrad.tensor([1.0], dtype=np.float64)
    assert (a + b).dtype == np.float64 and (b * a).dtype == np.float64
    with pytest.raises(TypeError, match=r"cat: mismatched dtypes float32 and float64 \(shapes \(1,\) and \(1,\)\)"):
        minigrad.cat([a, b], 0)


def test_shape_ops_and_reductions():
    x = minigrad.tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    assert x.reshape(6, 4).shape == (6, 4) and x.reshape((4, -1)).shape == (4, 6)
    assert x.permute(2, 0, 1).shape == (4, 2, 3) and x.transpose(0, 2).shape == (4, 3, 2)
    assert x.flatten().shape == (24,) and x.flatten(1).shape == (2, 12)
    assert x.sum().item() == 276 and x.sum(1).shape == (2, 4) and x.sum((0, 2), keepdim=True).shape == (1, 3, 1)
    np.testing.assert_allclose(x.mean(-1).numpy(), x.numpy().mean(-1))
    with pytest.raises(ValueError, match=r"reshape: cannot reshape a tensor of shape \(2, 3, 4\)"):
        x.reshape(5, 5)
    with pytest.raises(ValueError, match="dim 3 is out of range"):
        x.sum(3)
    with pytest.raises(ValueError, match="not a permutation"):
        x.permute(0, 0, 1)
    with pytest.raises(ValueError, match="item: only a one-element tensor"):
        x.item()
    with pytest.raises(ValueError, match=r"matmul: the operands' inner dimensions must agree .* got shapes \(2, 3\) and "
                                         r"\(2, 3\)"):
        minigrad.tensor(np.ones((2, 3))) @ minigrad.tensor(np.ones((2, 3)))
    with pytest.raises(TypeError, match="pow: only a Python or NumPy scalar exponent"):
        x ** x


IMPORT_ORDER_PROBE = """
import os, sys
os.environ.pop('GOMP_SPINCOUNT', None)
os.environ['MINIGRAD_KERNELS'] = 'numba'     # Numba's kernels from the first call (auto: the reference's first)
{first}
import minigrad, kernels, models, numba, numpy as np
from threadpoolctl import threadpool_info
from kernels.cpu.conv.plan import plan_for
net = models.mini_googlenet(input_size=16).eval()
with minigrad.no_grad():
    net(minigrad.zeros(1, 3, 16, 16))
blas = [p['num_threads'] for p in threadpool_info() if 'numpy' in p['filepath']]    # NumPy's OpenBLAS
plans = [str(plan_for(np.dtype(np.float32), (1, 3, 16, 16), w.shape, (1, 1), (w.shape[2] // 2,) * 2))
         for name, w in net.named_parameters() if w.ndim == 4]
print(repr((kernels.BLAS_SERIAL, blas, kernels.cpu_backend_name(), numba.get_num_threads(), numba.threading_layer(),
            os.environ['GOMP_SPINCOUNT'], 'cupy' in sys.modules, plans)))
"""


@pytest.mark.parametrize("first", ["", "import numpy", "import scipy.linalg, numpy"])
def test_either_import_order_runs_the_same_kernels_and_threads(first):
    """Whatever the program imported first, a forward runs on the same kernels, plans and Numba threads, with
    NumPy's OpenBLAS on one thread (no worker left to spin between minigrad's kernels), and CuPy stays
    unimported (not timed here: python -m benchmarks.import_order)."""
    import ast
    import os
    import subprocess
    import sys
    pytest.importorskip("threadpoolctl")
    if "scipy" in first:
        pytest.importorskip("scipy")

    def probe(first):
        lines = subprocess.run([sys.executable, "-c", IMPORT_ORDER_PROBE.format(first=first)], capture_output=True,
                               text=True, check=True).stdout.splitlines()
        return ast.literal_eval(lines[-1])
    serial, blas, backend, threads, layer, spin, cupy_imported, plans = probe(first)
    assert serial and blas == [1] and backend == "numba" and spin == "10000" and not cupy_imported
    assert threads == (os.cpu_count() or 1) and len(plans) >= 10
    if first:
        assert probe(first) == probe("")


def test_thread_settings_off_leaves_openblas_and_the_environment_alone():
    import os
    import subprocess
    import sys
    pytest.importorskip("threadpoolctl")
    code = ("import os; os.environ.pop('GOMP_SPINCOUNT', None); import minigrad, kernels\n"
            "from threadpoolctl import threadpool_info\n"
            "print(kernels.BLAS_SERIAL, [p['num_threads'] for p in threadpool_info() if 'numpy' in p['filepath']], "
            "'GOMP_SPINCOUNT' in os.environ)")
    env = {**os.environ, "MINIGRAD_THREAD_SETTINGS": "off"}
    env.pop("OPENBLAS_NUM_THREADS", None)
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == ["False", f"[{os.cpu_count()}]", "False"]


ALLOCATOR_PROBE = """
import ctypes, minigrad, kernels
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
for size in (8 << 20, 64 << 20):                # below and above glibc's largest mmap threshold (32 MiB)
    before = libc.mallinfo2().hblkhd             # bytes in blocks mapped apart
    block = libc.malloc(size)
    during = libc.mallinfo2()
    mapped = during.hblkhd - before >= size
    libc.free(block)
    kept = not mapped and libc.mallinfo2().arena == during.arena  # in the heap, and the heap not trimmed
    print(kernels.ALLOCATOR_KEEPS_MEMORY, mapped, kept)
"""


@pytest.mark.skipif(not hasattr(__import__("ctypes").CDLL(None), "mallinfo2"), reason="not glibc >= 2.33")
@pytest.mark.parametrize("setting, expected", [(None, ["True", "False", "True"] * 2),
                                               ("off", ["False", "True", "False"] * 2)])
def test_importing_minigrad_keeps_freed_memory_unless_told_not_to(setting, expected):
    """After `import minigrad` an array of 8 or 64 MiB comes from the heap and stays there when freed (the
    next step reuses it, no page faults), not from a fresh mapping unmapped when freed;
    MINIGRAD_ALLOCATOR_SETTINGS=off leaves glibc's defaults."""
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "MINIGRAD_ALLOCATOR_SETTINGS"}
    if setting:
        env["MINIGRAD_ALLOCATOR_SETTINGS"] = setting
    out = subprocess.run([sys.executable, "-c", ALLOCATOR_PROBE], capture_output=True, text=True, check=True,
                         env=env).stdout.split()
    assert out == expected


def test_contiguous_changes_the_memory_layout_not_the_values():
    x = minigrad.randn(2, 3, 4, 5, requires_grad=True)
    assert x.is_contiguous() and not x.is_contiguous("channels_last")
    y = x.contiguous("channels_last")
    assert y.is_contiguous("channels_last") and y.shape == x.shape
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    assert y.contiguous("channels_last") is y and x.contiguous() is x
    (y * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full(x.shape, 2, np.float32))
    with pytest.raises(ValueError, match="contiguous: channels_last needs a 4-D tensor"):
        minigrad.randn(3, 4).contiguous("channels_last")
    with pytest.raises(ValueError, match="is_contiguous: memory_format must be one of"):
        x.is_contiguous("nhwc")


def test_an_op_with_several_outputs_sums_each_outputs_gradient_and_zero_fills_unused_ones():
    x = Tensor(np.arange(6.0), requires_grad=True)
    a, b, c = x.split(2)
    y = (a * 3).sum() + (a * a).sum() + (c * 5).sum()        # a used twice, b not at all
    y.backward(retain_graph=True)
    np.testing.assert_array_equal(x.grad.data, [3.0, 5.0, 0.0, 0.0, 5.0, 5.0])
    b.sum().backward()                                        # a graph rooted at another output of the op
    np.testing.assert_array_equal(x.grad.data, [3.0, 5.0, 1.0, 1.0, 5.0, 5.0])


def test_pieces_of_a_split_are_views_whose_in_place_changes_count_against_the_input():
    x = Tensor(np.arange(6.0), requires_grad=True)
    h = x * 1.0
    squared = h * h                                           # saves h for its backward
    first, _ = h.split(3)
    with minigrad.no_grad():
        first.add_(1.0)                                       # writes into h's memory
    assert h.data[0] == 1.0
    with pytest.raises(RuntimeError, match="input 0 of mul was modified by an in-place operation"):
        squared.sum().backward()


@pytest.mark.parametrize("make_view", [lambda h: h.reshape(2, 3), lambda h: h.reshape(2, 3).T, lambda h: h.flatten()])
def test_views_share_their_inputs_version_counter(make_view):
    x = Tensor(np.arange(6.0), requires_grad=True)
    h = x * 1.0
    squared = h * h
    view = make_view(h)
    with minigrad.no_grad():
        view.mul_(2.0)
    assert h.data[1] == 2.0
    with pytest.raises(RuntimeError, match="input 0 of mul was modified by an in-place operation"):
        squared.sum().backward()


def test_a_reshape_that_copies_does_not_share_the_version_counter():
    h = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True) * 1.0
    copied = h.T.reshape(6)                                    # not expressible as a view: a copy
    with minigrad.no_grad():
        copied.mul_(2.0)
    assert h._version[0] == 0 and h.data[0, 1] == 1.0


def test_backward_twice_through_an_op_with_several_outputs_is_refused():
    x = Tensor(np.ones(4), requires_grad=True)
    a, b = x.split(2)
    y = a.sum() + b.sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_a_value_used_directly_and_through_a_longer_path_gets_both_gradients():
    """s feeds the final op directly and through s*s: the node computing s must run after s*s's
    backward (a depth-first order that marks s visited when first pushed ran it too early)."""
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    s = x * 2.0
    minigrad.cat([s, s * s], 0).backward(np.ones(4))
    np.testing.assert_array_equal(x.grad.data, 2.0 + 8.0 * x.data)          # d/dx (2x + 4x^2)
    y = Tensor(np.array([3.0]), requires_grad=True)
    a = y * 1.0
    b = a * a
    ((a + b * a) + (b * b)).backward()                                     # a + a^3 + a^4
    np.testing.assert_allclose(y.grad.data, 1 + 3 * 9.0 + 4 * 27.0)


@pytest.mark.parametrize("path", ["reference", "numba"])
def test_leaves_keep_fresh_gradients_uncopied_and_copy_shared_ones(monkeypatch, path):
    """conv2d and linear return new arrays (Function.fresh_grads): their leaves keep them as .grad.
    An op that hands one array to several inputs (add) gets each leaf a copy of its own."""
    from minigrad import functional as F

    monkeypatch.setenv("MINIGRAD_KERNELS", path)
    returned = {}
    for op in (F.Conv2d, F.Linear):
        def recording(self, grad, backward=op.backward, op=op):
            returned[op] = backward(self, grad)
            return returned[op]
        monkeypatch.setattr(op, "backward", recording)
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 5, 5)), requires_grad=True)
    w, b = Tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True), Tensor(np.zeros(4), requires_grad=True)
    lw = Tensor(rng.standard_normal((2, 36)), requires_grad=True)
    y = F.linear(F.conv2d(x, w, b).reshape(2, -1), lw)
    y.sum().backward()
    assert all(t.grad.data is g for t, g in zip((x, w, b), returned[F.Conv2d]))
    assert lw.grad.data is returned[F.Linear][1]
    p, q = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    (p + q).sum().backward()
    assert not np.may_share_memory(p.grad.data, q.grad.data)
    p.grad.data += 1
    np.testing.assert_array_equal(q.grad.data, np.ones(3))


def test_backward_and_the_optimizers_allocate_and_launch_on_the_arrays_device(monkeypatch):
    """CuPy allocates and launches on the current GPU, whatever the arrays' device, so every allocation and
    kernel call of backward and of an optimizer step must run inside on_device_of(...) of the arrays it
    works on.  A fake device context stands in for CuPy's: it marks the inside of every on_device_of block,
    and every kernel call and array-module allocation records whether it ran inside one."""
    import contextlib

    import kernels
    from minigrad import autograd, nn, optim

    inside, events = [False], []

    @contextlib.contextmanager
    def fake_device(a):
        previous, inside[0] = inside[0], True
        try:
            yield
        finally:
            inside[0] = previous

    class Recording:
        def __init__(self, target, kind):
            self.target, self.kind = target, kind

        def __getattr__(self, name):
            value = getattr(self.target, name)
            if not callable(value):
                return value
            return lambda *args, **kwargs: events.append((self.kind, name, inside[0])) or value(*args, **kwargs)

    real_for_array, real_module = kernels.for_array, autograd.array_module
    monkeypatch.setattr(kernels, "for_array", lambda a: Recording(real_for_array(a), "kernel"))
    for module in (autograd, optim):
        monkeypatch.setattr(module, "on_device_of", fake_device)
        monkeypatch.setattr(module, "array_module", lambda a: Recording(real_module(a), "array"))
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    x = minigrad.randn(2, 2, 4, 4, requires_grad=True)
    for make in (lambda ps: optim.SGD(ps, 0.1, momentum=0.9), lambda ps: optim.Adam(ps)):
        opt = make(model.parameters())
        average = optim.Polyak(model, 0.9)
        events.clear()
        y = model(x)
        (y * y).sum().backward()                     # seed, node sums, leaf accumulation
        model(x).sum().backward()                    # gradients added to existing .grad
        opt.step()
        average.update()
        assert {kind for kind, _, _ in events} == {"kernel", "array"}
        assert [e for e in events if not e[2]] == [], "outside its arrays' device"
