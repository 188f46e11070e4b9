"""Fuzzing the public surface with often-invalid arguments.

Every call either returns the same result (and gradients) as the NumPy reference path, or raises
ValueError/TypeError with a message that starts with the op's name.  Anything else (another
exception, a crash in a compiled kernel, a wrong shape) fails.  The count of examples and of
distinct messages is printed at the end of the run (conftest.pytest_terminal_summary).
"""

import os
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad
import minigrad.functional as F
import models
from kernels.cuda.host import compiler
from minigrad import Tensor, nn
from minigrad.testing import assert_close

from conftest import FUZZ_STATS, examples

DTYPES = [np.float32, np.float32, np.float64, np.float64, np.float16, np.int64, np.int32, np.bool_]
LAYOUTS = ["contiguous", "transposed", "reversed", "strided"]


FLOATS = [np.float32, np.float64]


@st.composite
def arrays(draw, rank=None, min_side=0, max_side=7, dtypes=DTYPES, shape=None):
    """An array of a drawn (or given) shape, dtype and memory layout, holding normal values with
    some NaN and infinities."""
    if shape is None:
        rank = draw(st.integers(0, 5)) if rank is None else rank
        shape = tuple(draw(st.integers(min_side, max_side)) for _ in range(rank))
    rank = len(shape)
    dtype = draw(st.sampled_from(dtypes))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    layout = draw(st.sampled_from(LAYOUTS))
    big = tuple(2 * n for n in shape) if layout == "strided" else shape
    values = rng.standard_normal(big) * draw(st.sampled_from([1.0, 1.0, 1e3, 1e-3]))
    if draw(st.booleans()) and values.size:
        values.flat[rng.integers(0, values.size, 2)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    values = values.astype(dtype)
    if layout == "strided":
        values = values[tuple(slice(None, None, 2) for _ in shape)]
    elif layout == "transposed" and rank >= 2:
        values = np.ascontiguousarray(np.swapaxes(values, -1, -2)).swapaxes(-1, -2)   # same shape, F-like strides
    elif layout == "reversed" and rank >= 1:
        values = np.ascontiguousarray(values[..., ::-1])[..., ::-1]                   # negative last stride
    assert values.shape == shape
    return values


geometry = st.one_of(st.integers(-2, 6), st.sampled_from([0, 10**7, 2.5, True, None, "3"]),
                     st.tuples(st.integers(-1, 5), st.integers(-1, 5)), st.just((1, 2, 3)))


def tensor_of(array, grad):
    t = Tensor(array)
    if grad and array.dtype.kind == "f":
        t.requires_grad = True
    return t


# The kernel paths compared with the reference: the Numba kernels, and the CUDA kernels run on the
# CPU by the host emulation (where a C++ compiler is available; CI requires it).
FAST_PATHS = ["numba"] + (["cuda-host"] if compiler() or os.environ.get("MINIGRAD_REQUIRE_CUDA_CHECKS") == "1" else [])


def run(op, make_args, path):
    """(result array, gradients) or the exception, for one evaluation on one kernel path."""
    previous = os.environ.get("MINIGRAD_KERNELS")
    os.environ["MINIGRAD_KERNELS"] = path
    try:
        args = make_args()
        out = op(*args)
        grads = []
        if out.requires_grad and out.dtype.kind == "f":
            out.backward(np.ones(out.shape, out.dtype))
            grads = [a.grad.numpy() if isinstance(a, Tensor) and a.grad is not None else None
                     for a in args if isinstance(a, Tensor)]
        return out.numpy(), grads
    except (ValueError, TypeError) as error:
        return error
    finally:
        if previous is None:
            os.environ.pop("MINIGRAD_KERNELS")
        else:
            os.environ["MINIGRAD_KERNELS"] = previous


def check(name, op, make_args):
    """Every kernel path agrees with the reference: the same error, or the same values and gradients."""
    FUZZ_STATS["examples"] += 1
    reference = run(op, make_args, "reference")
    for path in FAST_PATHS:
        compare(name, run(op, make_args, path), reference)
    if not isinstance(reference, Exception):
        FUZZ_STATS["computed"][name] = FUZZ_STATS["computed"].get(name, 0) + 1


def compare(name, ours, reference):
    if isinstance(ours, Exception) or isinstance(reference, Exception):
        assert type(ours) is type(reference) and str(ours) == str(reference), (ours, reference)
        assert str(ours).startswith(f"{name}: "), f"message does not name the op: {ours}"
        FUZZ_STATS["messages"].add(str(ours))
        return
    (value, grads), (ref_value, ref_grads) = ours, reference
    assert value.shape == ref_value.shape and value.dtype == ref_value.dtype
    def magnitude(a):
        return max(1.0, float(np.nanmax(np.abs(np.where(np.isinf(a), 0, a)), initial=0)))
    assert_close(value, ref_value, "path", magnitude(ref_value))
    for g, rg in zip(grads, ref_grads):
        if g is not None:
            assert_close(g, rg, "path", magnitude(rg))


valid_geometry = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))
valid_padding = st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)))


@settings(max_examples=examples(150))
@given(st.booleans(), st.data())
def test_conv2d(valid, data):
    """Half the draws are valid convolutions (odd sizes, layouts, NaN/Inf); the rest anything."""
    grad = data.draw(st.booleans())
    if valid:
        x = data.draw(arrays(rank=4, min_side=1, max_side=9, dtypes=FLOATS))
        w = data.draw(arrays(shape=(data.draw(st.integers(1, 5)), x.shape[1], data.draw(st.integers(1, 4)),
                                    data.draw(st.integers(1, 4))), dtypes=[x.dtype]))
        bias = data.draw(st.one_of(st.none(), arrays(shape=(w.shape[0],), dtypes=[x.dtype])))
        stride, padding = data.draw(valid_geometry), data.draw(valid_padding)
    else:
        x = data.draw(arrays())
        w = data.draw(arrays(rank=data.draw(st.sampled_from([4, 4, 3])), max_side=4))
        bias = data.draw(st.one_of(st.none(), arrays(rank=1, max_side=5)))
        stride, padding = data.draw(geometry), data.draw(geometry)
    check("conv2d", lambda *a: F.conv2d(*a, stride=stride, padding=padding),
          lambda: [tensor_of(x, grad), tensor_of(w, grad)] + ([] if bias is None else [tensor_of(bias, grad)]))


@settings(max_examples=examples(150))
@given(st.booleans(), st.sampled_from(["max_pool2d", "avg_pool2d"]), st.booleans(), st.booleans(), st.booleans(),
       st.data())
def test_pooling(valid, name, ceil_mode, count_include_pad, grad, data):
    if valid:
        x = data.draw(arrays(rank=4, min_side=1, max_side=9, dtypes=FLOATS))
        kernel = data.draw(st.integers(1, 4))
        stride = data.draw(st.one_of(st.none(), valid_geometry))
        padding = data.draw(st.integers(0, kernel // 2))
    else:
        x = data.draw(arrays())
        kernel, stride, padding = data.draw(geometry), data.draw(geometry), data.draw(geometry)
    if name == "max_pool2d":
        op = lambda t: F.max_pool2d(t, kernel, stride, padding, ceil_mode)
    else:
        op = lambda t: F.avg_pool2d(t, kernel, stride, padding, ceil_mode, count_include_pad)
    check(name, op, lambda: [tensor_of(x, grad)])


@settings(max_examples=examples(100))
@given(arrays(), st.booleans())
def test_relu(x, grad):
    check("relu", F.relu, lambda: [tensor_of(x, grad)])


@settings(max_examples=examples(100))
@given(st.booleans(), st.one_of(st.integers(-1, 9), st.sampled_from([10**9, 2.5, None])),
       st.sampled_from([1e-4, 0.0, -1.0, 1e6]), st.sampled_from([0.75, 0.5, -0.5]),
       st.sampled_from([1.0, 2.0, 0.0, -1.0]), st.booleans(), st.data())
def test_local_response_norm(valid, size, alpha, beta, k, grad, data):
    x = data.draw(arrays(rank=4, min_side=1, dtypes=FLOATS) if valid else arrays())
    if valid:
        size, k = abs(size) if isinstance(size, int) and size else 5, abs(k) or 1.0
    check("local_response_norm", lambda t: F.local_response_norm(t, size, alpha, beta, k), lambda: [tensor_of(x, grad)])


@settings(max_examples=examples(60))
@given(st.booleans(), st.booleans(), st.booleans(), st.sampled_from([1e-5, 1e-3, -1.0, float("nan")]),
       st.sampled_from([0.1, 0.0, 1.0, -0.5, 2.0]), st.booleans(), st.data())
def test_batch_norm(valid, training, affine, eps, momentum, grad, data):
    """batch_norm with drawn inputs, statistics and parameters (often of the wrong shape or dtype); the running
    statistics are fresh copies on each path, so that every path updates the same values.  Weights and biases
    are finite and eps at least 1e-5: an infinite weight makes inf - inf in one formula's order and not in
    another's, and eps 0 on a constant channel divides by zero, where the paths' NaN and inf need not agree."""
    x = data.draw(arrays(rank=4, min_side=1, dtypes=FLOATS) if valid else arrays())
    channels = x.shape[1] if x.ndim >= 2 else 1
    c = channels if valid or data.draw(st.booleans()) else data.draw(st.integers(0, 4))
    dtype = x.dtype if valid or data.draw(st.booleans()) else data.draw(st.sampled_from(DTYPES))
    stats = [np.zeros(c, dtype), np.ones(c, dtype)] if data.draw(st.booleans()) else None
    params = [np.nan_to_num(data.draw(arrays(shape=(c,), dtypes=[dtype])), posinf=1.0, neginf=-1.0)
              for _ in range(2)] if affine else []

    def make():
        running = [Tensor(a.copy()) for a in stats] if stats else [None, None]
        return [tensor_of(x, grad)] + [tensor_of(p, grad) for p in params] + running
    check("batch_norm", lambda t, *rest: F.batch_norm(t, *rest[len(params):], *rest[:len(params)], training=training,
                                                      momentum=momentum, eps=eps), make)


@settings(max_examples=examples(100))
@given(arrays(max_side=5), st.data())
def test_linear_dropout_log_softmax_losses(x, data):
    grad = data.draw(st.booleans())
    features = x.shape[-1] if x.ndim and data.draw(st.booleans()) else data.draw(st.integers(0, 4))
    w = data.draw(arrays(rank=2, max_side=4))
    if data.draw(st.booleans()):
        w = np.resize(w, (max(w.shape[0], 1), features)).astype(w.dtype)
    check("linear", F.linear, lambda: [tensor_of(x, grad), tensor_of(w, grad)])
    dim = data.draw(st.integers(-3, 3))
    check("log_softmax", lambda t: F.log_softmax(t, dim), lambda: [tensor_of(x, grad)])
    target = data.draw(st.one_of(arrays(rank=1, max_side=6, dtypes=[np.int64, np.int32, np.float32]),
                                 st.just(np.arange(x.shape[0]) % max(1, x.shape[-1]) if x.ndim == 2 else np.zeros(1, int))))
    target = np.where(np.isfinite(target), target, 0).astype(target.dtype) if target.dtype.kind == "f" else target
    check("cross_entropy", lambda t: F.cross_entropy(t, target), lambda: [tensor_of(x, grad)])
    p = data.draw(st.sampled_from([0.0, 0.5, 1.0, -0.1, float("nan"), 2]))
    check("dropout", lambda t: F.dropout(t, p, training=False), lambda: [tensor_of(x, grad)])


@settings(max_examples=examples(100))
@given(st.lists(arrays(max_side=4), min_size=0, max_size=4), st.integers(-5, 5), st.booleans())
def test_cat(parts, dim, grad):
    check("cat", lambda *t: minigrad.cat(list(t), dim), lambda: [tensor_of(p, grad) for p in parts])


@settings(max_examples=examples(100))
@given(arrays(max_side=5), st.booleans(), st.data())
def test_split(x, valid, data):
    """Half the draws split a real dimension into sizes adding up to it; the rest anything.  The pieces
    are recombined, each scaled differently, so that every piece's gradient is checked."""
    grad = data.draw(st.booleans())
    if valid and x.ndim:
        dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
        cuts = sorted(data.draw(st.lists(st.integers(0, x.shape[dim]), max_size=3)))
        sections = data.draw(st.sampled_from([np.diff([0, *cuts, x.shape[dim]]).tolist(), max(1, x.shape[dim] // 2)]))
    else:
        dim = data.draw(st.integers(-5, 5))
        sections = data.draw(st.one_of(st.integers(-1, 4), st.lists(st.integers(-1, 4), max_size=4), st.just("2")))

    def pieces_recombined(t):
        pieces = minigrad.split(t, sections, dim)
        return minigrad.cat([p * (i + 1.0) for i, p in enumerate(pieces)], dim % t.ndim)
    check("split", pieces_recombined, lambda: [tensor_of(x, grad)])


positive = st.one_of(st.integers(-2, 12), st.sampled_from([2.5, None, True, "8"]))


@settings(max_examples=examples(60))
@given(st.sampled_from(["Conv2d", "Linear", "Dropout"]), positive, positive, positive, positive)
def test_module_constructors(kind, a, b, c, d):
    FUZZ_STATS["examples"] += 1
    try:
        if kind == "Conv2d":
            nn.Conv2d(a, b, c, stride=d)
        elif kind == "Linear":
            nn.Linear(a, b)
        else:
            nn.Dropout(a)
    except (ValueError, TypeError) as error:
        assert str(error).startswith(f"{kind}: ")
        FUZZ_STATS["messages"].add(str(error))


@settings(max_examples=examples(40))
@given(st.sampled_from(["googlenet", "mini_googlenet", "alexnet", "plain_net"]),
       st.one_of(st.integers(-1, 5), st.sampled_from([2.5, None])), st.integers(-3, 260),
       st.one_of(st.integers(-1, 4), st.just(None)))
def test_model_constructors(name, num_classes, input_size, in_channels):
    FUZZ_STATS["examples"] += 1
    kwargs = {"num_classes": num_classes, "input_size": input_size}
    if in_channels is not None:
        kwargs["in_channels"] = in_channels
    if name == "googlenet":
        kwargs["aux_logits"] = False
    try:
        getattr(models, name)(**kwargs)
    except (ValueError, TypeError) as error:
        assert str(error).split(":")[0].lower().replace("_", "") in (name.replace("_", ""), "googlenet"), str(error)
        FUZZ_STATS["messages"].add(str(error))


# Every command's options, by the kind of value each takes; positional arguments first.  The fuzzer draws
# values of every kind for every option, the wrong kinds included.
INT, REAL, NAME, NAMES, INTS, PATH, FLAG = "int", "real", "name", "names", "ints", "path", "flag"
COMMANDS = {
    "models.train": ([], {"--model": NAME, "--data": NAME, "--image-size": INT, "--epochs": INT, "--batch-size": INT,
                          "--optimizer": NAME, "--lr": REAL, "--momentum": REAL, "--weight-decay": REAL,
                          "--lr-step": INT, "--lr-gamma": REAL, "--polyak": REAL, "--held-out": REAL,
                          "--crop-padding": INT, "--seed": INT, "--device": NAME, "--out": PATH, "--flip": FLAG}),
    "benchmarks.__main__": ([], {"--batch": INT, "--repeat": INT, "--configs": NAMES, "--device": NAME, "--out": PATH,
                                 "--quick": FLAG, "--compare": NAME}),
    "benchmarks.googlenet": ([], {"--batches": INTS, "--rounds": INT, "--repeat": INT, "--modules": NAMES,
                                  "--module-batch": INT, "--per-op": NAMES, "--json": PATH}),
    "benchmarks.profile": ([NAME], {"--batch": INT, "--input-size": INT, "--top": INT}),
    "benchmarks.kernels": ([], {"--batch": INT, "--repeat": INT, "--rounds": INT, "--compile-time": FLAG, "--json": PATH}),
    "benchmarks.memory": ([], {"--steps": INT}),
    "benchmarks.distributed": ([], {"--model": NAME, "--batch": INT, "--steps": INT}),
    "benchmarks.plan": ([NAME], {"--batch": INT, "--input-size": INT, "--threads": INT}),
    "benchmarks.onnx": ([], {"--models": NAMES, "--batch": INT, "--repeat": INT}),
    "benchmarks.accuracy": ([], {"--models": NAMES, "--data": NAMES, "--seeds": INT, "--epochs": INT, "--out": PATH,
                                 "--quick": FLAG}),
    "benchmarks.ab": ([NAME], {"--layers": INTS, "--batch": INT, "--pairs": INT}),
    "benchmarks.gpu_check": ([], {"--repeat": INT, "--configs": NAMES, "--module-batch": INT, "--batches": INTS,
                                  "--skip-tests": FLAG}),
    "models.summary": ([NAME], {"--paper": FLAG, "--input-size": INT}),
    "models.classify": ([], {"--model": NAME, "--image": NAME, "--labels": PATH, "--top": INT, "--checkpoint": PATH,
                             "--preprocess": NAME}),
    "minigrad.gradcheck": ([NAME], {"--input-size": INT, "--batch": INT, "--seed": INT, "--directions": INT,
                                    "--samples": INT}),
    "minigrad.explain": ([NAME], {"--input": INTS, "--kernel": INTS, "--stride": INTS, "--padding": INTS, "--seed": INT,
                                  "--out-channels": INT, "--random": FLAG}),
    "docs.build": ([], {"--no-measure": FLAG, "--no-figures": FLAG}),
}
VALUES = {INT: ["nan", "inf", "-inf", "-1", "0", "1", "2", "3", "8", "100", "5000", "1e9", "99999999999", "2.5", "x", ""],
          REAL: ["nan", "inf", "-inf", "-1", "0", "1e-3", "0.5", "0.99", "1", "2", "1e300", "x", ""],
          NAME: ["mini-googlenet", "googlenet", "alexnet", "resnet", "sgd", "adam", "cpu", "cuda", "torch", "digits",
                 "nowhere", "conv2d", "max_pool2d", "HEAD", ""],
          NAMES: ["3a", "3a,4e", "3a,9z", "none", "", "5b"],
          INTS: ["8", "8,32", "0,8", "8,x", "1,2,5,5", "3,3", "16,16,3,7", "-1", ""],
          PATH: ["TMP", "TMP/sub", "/proc/forbidden/out"]}


@st.composite
def command_lines(draw):
    """(command, argv): a command and a drawn list of its options and values (any kind of value)."""
    name = draw(st.sampled_from(sorted(COMMANDS)))
    positional, options = COMMANDS[name]
    argv = [draw(st.sampled_from(VALUES[kind])) for kind in positional]
    for flag in draw(st.lists(st.sampled_from(sorted(options)), max_size=4, unique=True)):
        argv.append(flag)
        if options[flag] != FLAG:
            argv.append(draw(st.sampled_from(VALUES[draw(st.sampled_from([options[flag]] * 3 + [INT, REAL, NAME]))])))
    if name == "benchmarks.__main__":
        argv += ["--networks", "none"]        # its networks' memory checks build each network: covered elsewhere
    return name, argv


@settings(max_examples=examples(150))
@given(command_lines())
def test_every_commands_options(command):
    """Every command's option parsing (python -m models.train, benchmarks, ...: each one's parse_args, which
    checks everything before any work): values that parse are finite and in range; anything else is one
    line, a CommandError (TrainingError for models.train), never a traceback or another exit."""
    import importlib

    from minigrad.cli import CommandError
    from models.train import TrainingError
    name, argv = command
    FUZZ_STATS["examples"] += 1
    module = importlib.import_module(name)
    with tempfile.TemporaryDirectory() as folder:
        argv = [a.replace("TMP", folder) for a in argv]
        cwd = os.getcwd()
        os.chdir(folder)                                        # a default --out lands in the temporary folder
        try:
            args = module.parse_args(argv)
        except (CommandError, TrainingError) as error:
            message = str(error)
            assert message and "\n" not in message and "Traceback" not in message, (name, argv, message)
            FUZZ_STATS["messages"].add(message)
            return
        finally:
            os.chdir(cwd)
    for key, value in vars(args).items():                   # what parsed is usable
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, float):
                assert np.isfinite(v), (name, argv, key)
            if isinstance(v, int) and not isinstance(v, bool) and key not in ("threads",):
                assert 0 <= v <= 2**32, (name, argv, key)


@settings(max_examples=examples(60))
@given(st.sampled_from(["SGD", "Adam", "StepLR", "Polyak", "MaxPool2d", "AvgPool2d", "LocalResponseNorm", "Dropout",
                        "Conv2d", "Linear", "Flatten"]),
       st.lists(st.one_of(st.sampled_from([0, 1, 3, -1, 0.5, 1.5, float("nan"), float("inf"), -float("inf"), True,
                                           None, "3", (0.9,), (0.9, 0.999), (2, 2), [1, 1, 1], np.float32(0.1)])),
                min_size=0, max_size=3))
def test_optimizer_and_layer_constructors(kind, values):
    """Optimizers, the scheduler, the averaging and the layers, given drawn arguments: built, or a ValueError or
    TypeError naming the class; a built optimizer never holds a NaN or infinite hyper-parameter."""
    FUZZ_STATS["examples"] += 1
    w = nn.Parameter(np.ones((2, 2), np.float32))
    makers = {
        "SGD": lambda *v: minigrad.optim.SGD([w], *v), "Adam": lambda *v: minigrad.optim.Adam([w], *v),
        "StepLR": lambda *v: minigrad.optim.lr_scheduler.StepLR(minigrad.optim.SGD([w], 0.1), *v),
        "Polyak": lambda *v: minigrad.optim.Polyak(nn.Linear(2, 2), *v),
        "MaxPool2d": nn.MaxPool2d, "AvgPool2d": nn.AvgPool2d, "LocalResponseNorm": nn.LocalResponseNorm,
        "Dropout": nn.Dropout, "Conv2d": nn.Conv2d, "Linear": nn.Linear, "Flatten": nn.Flatten}
    try:
        built = makers[kind](*values)
    except (ValueError, TypeError) as error:
        message = str(error)
        assert message.startswith(f"{kind}:") or message.startswith(f"{kind.lower()}") or "missing" in message \
            or "positional argument" in message or "takes" in message, (kind, values, message)
        FUZZ_STATS["messages"].add(message)
        return
    for group in getattr(built, "param_groups", []):
        for key in ("lr", "momentum", "weight_decay", "eps"):
            if key in group:
                assert np.isfinite(group[key]) and group[key] >= 0, (kind, values, group)


@settings(max_examples=examples(40))
@given(st.lists(st.sampled_from(["mini-googlenet", "resnet", "--input-size", "--batch", "--top", "--paper", "0", "-1",
                                 "16", "8", "2", "x"]), max_size=5), st.sampled_from(["summary", "profile"]))
def test_summary_and_profile_commands(argv, which):
    """models.summary and benchmarks.profile: a table (exit 0), or exit 2 with one line and no traceback."""
    import contextlib
    import io

    from benchmarks.profile import main as profile_main
    from models.summary import main as summary_main
    FUZZ_STATS["examples"] += 1
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = (summary_main if which == "summary" else profile_main)(argv)
        except SystemExit as exit:
            code = exit.code
    assert code in (0, 2), (argv, code, err.getvalue())
    if code == 2:
        message = err.getvalue().strip().splitlines()[-1]
        assert "error:" in message and "Traceback" not in err.getvalue()
        FUZZ_STATS["messages"].add(message)


MIXABLE = {   # ops with several tensor inputs: (function, valid input shapes)
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, 1, 1), [(2, 3, 6, 6), (4, 3, 3, 3), (4,)]),
    "conv2d_relu": (lambda x, w, b: F.conv2d_relu(x, w, b, 2, 0), [(1, 2, 5, 5), (3, 2, 3, 3), (3,)]),
    "linear": (lambda x, w, b: F.linear(x, w, b), [(3, 5), (2, 5), (2,)]),
    "cat": (lambda *parts: minigrad.cat(list(parts), 1), [(2, 3, 4, 4), (2, 1, 4, 4), (2, 2, 4, 4)]),
    "add": (lambda a, b: a + b, [(3, 4), (3, 4)]),
    "mul": (lambda a, b: a * b, [(3, 4), (1, 4)]),
}


@pytest.mark.gpu
@settings(max_examples=examples(60))
@given(st.sampled_from(sorted(MIXABLE)), st.data())
def test_mixed_devices_are_refused_naming_the_op_and_argument(name, data):
    """Inputs of one op on different devices: a ValueError naming the op and the argument, never a result."""
    fn, shapes = MIXABLE[name]
    devices = data.draw(st.lists(st.sampled_from(["cpu", "cuda"]), min_size=len(shapes), max_size=len(shapes))
                        .filter(lambda d: len(set(d)) == 2))
    FUZZ_STATS["examples"] += 1
    inputs = [minigrad.tensor(np.ones(s, np.float32), requires_grad=True, device=d) for s, d in zip(shapes, devices)]
    with pytest.raises(ValueError) as error:
        fn(*inputs)
    message = str(error.value)
    assert message.startswith(f"{name}: ") and "cuda:0" in message and " is on " in message
    FUZZ_STATS["messages"].add(message)


def test_the_fuzzers_ran():
    """Not a no-op: the suite above ran and saw errors of many kinds."""
    if FUZZ_STATS["examples"] == 0:
        pytest.skip("run together with the fuzz tests above")
    assert len(FUZZ_STATS["messages"]) > 30
