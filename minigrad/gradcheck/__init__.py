"""Check analytic gradients against central finite differences, in float64.

    minigrad.gradcheck(fn, [x, w])                    # element by element: every entry of every gradient
    minigrad.gradcheck(fn, [x, w], fast_mode=True)    # directional: v^T J u for a few random directions u

Element-wise mode perturbs each element of each input that requires grad, up and down by eps, and compares
the central difference with the backward pass (the output contracted with a random upstream gradient v, so
that errors cancelling in a plain sum still show).  Fast mode, as PyTorch's, compares the directional
derivative instead: for a random unit direction u of one input, v^T J u from the backward pass (the gradient
dotted with u) against (f(x + eps u) - f(x - eps u)) / (2 eps) dotted with v: two evaluations per direction
and input, whatever the input's size, so a whole network can be checked.  Both apply the rule
|analytic - numeric| <= atol + rtol * |numeric|.

`python -m minigrad.gradcheck MODEL` checks every parameter of a network this way (see main()).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..autograd import Tensor, no_grad
from ..backend import array_module, to_numpy


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with its finite-difference estimate."""


RULE = "|analytic - numeric| <= atol + rtol * |numeric|"


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, fast_mode=False, directions=3):
    """Compare the backward pass of `fn(*inputs)` with central differences; True, or GradcheckError.

    Every floating-point input is copied to float64 (a warning says so for float32 ones: the check is then
    about the op's mathematics, not its float32 rounding); those that require grad are checked.  fast_mode:
    `directions` random directions per input instead of every element.  The error names the input, the
    element or direction, the analytic and numeric values and the rule."""
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"gradcheck: inputs must be a list or tuple of inputs, got {type(inputs).__name__}")
    for index, t in enumerate(inputs):
        if isinstance(t, Tensor) and t.dtype.kind == "f" and t.dtype != np.float64 and t.requires_grad:
            warnings.warn(f"gradcheck: input {index} is {t.dtype}; it is checked as a float64 copy, so the check "
                          "covers the op's gradient formula, not its rounding in that dtype", stacklevel=2)
    inputs = [_float64_leaf(t) for t in inputs]
    checked = [(i, t) for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        kinds = ", ".join(f"{type(t).__name__} {getattr(t, 'dtype', '')}".strip() for t in inputs) or "none"
        raise ValueError(f"gradcheck: no floating-point input requires grad, so there is nothing to check "
                         f"(inputs: {kinds})")
    output = fn(*inputs)
    if not isinstance(output, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(output).__name__}")
    if output.dtype.kind != "f":
        raise TypeError(f"gradcheck: fn must return a floating-point Tensor, got dtype {output.dtype}")
    upstream = np.random.default_rng(seed).standard_normal(output.shape)       # on the host; moved where needed
    if output.requires_grad:
        output.backward(upstream)

    def objective():
        out = fn(*inputs)
        if out.shape != output.shape:
            raise GradcheckError(f"gradcheck: fn's output changed shape from {output.shape} to {out.shape} when its "
                                 "inputs were perturbed")
        return float((to_numpy(out.data) * upstream).sum())

    rng = np.random.default_rng(seed + 1)
    for index, t in checked:
        analytic = to_numpy(t.grad.data) if t.grad is not None else np.zeros(t.shape)
        if analytic.shape != t.shape:
            raise GradcheckError(f"gradcheck: the gradient of input {index} has shape {analytic.shape} but the input "
                                 f"has shape {t.shape}")
        if fast_mode:
            _check_directions(index, t, analytic, objective, eps, atol, rtol, directions, rng)
        else:
            _check_elements(index, t, analytic, objective, eps, atol, rtol)
    return True


def _perturbed(data, step, objective):
    """objective() with data moved by +step and by -step (in place, restored)."""
    xp = array_module(data)
    original = data.copy()
    step = xp.asarray(step)
    with no_grad():
        data += step
        plus = objective()
        data[...] = original
        data -= step
        minus = objective()
        data[...] = original
    return plus, minus


def _check_elements(index, t, analytic, objective, eps, atol, rtol):
    numeric = np.empty(t.shape)
    data = t.data                                   # perturbed in place, element by element, in any layout
    with no_grad():
        for k in np.ndindex(t.shape):
            original = data[k].copy()               # CuPy's data[k] is a 0-d view: it would follow the change
            data[k] = original + eps
            plus = objective()
            data[k] = original - eps
            minus = objective()
            data[k] = original
            numeric[k] = (plus - minus) / (2 * eps)
    error = np.abs(analytic - numeric)
    excess = error - (atol + rtol * np.abs(numeric))
    if (excess > 0).any() or not np.isfinite(analytic).all():
        worst = np.unravel_index(np.nanargmax(np.where(np.isfinite(excess), excess, np.inf)), t.shape)
        raise GradcheckError(
            f"gradcheck: gradient of input {index} (shape {t.shape}) is wrong at index {tuple(map(int, worst))}: "
            f"analytic {analytic[worst]:.6g} vs numeric {numeric[worst]:.6g}, error {error[worst]:.3g} "
            f"> atol {atol} + rtol {rtol} * |numeric| ({RULE}); {(excess > 0).sum()} of {t.numel()} elements fail")


def directional(t, analytic, objective, eps, direction):
    """(analytic, numeric) derivative of the objective along `direction` (an array of t's shape)."""
    plus, minus = _perturbed(t.data, eps * direction, objective)
    return float((analytic * direction).sum()), (plus - minus) / (2 * eps)


def _check_directions(index, t, analytic, objective, eps, atol, rtol, directions, rng):
    for d in range(directions):
        u = rng.standard_normal(t.shape)
        u /= np.linalg.norm(u) or 1.0
        got, numeric = directional(t, analytic, objective, eps, u)
        if not np.isfinite(got) or abs(got - numeric) > atol + rtol * abs(numeric):
            raise GradcheckError(
                f"gradcheck (fast mode): gradient of input {index} (shape {t.shape}) is wrong along random direction "
                f"{d} of {directions}: analytic v^T J u {got:.6g} vs numeric {numeric:.6g}, error "
                f"{abs(got - numeric):.3g} > atol {atol} + rtol {rtol} * |numeric| ({RULE})")


def _float64_leaf(t):
    """A float64 copy of a floating-point input, as a fresh leaf on the same device (other inputs pass through)."""
    if isinstance(t, Tensor) and t.dtype.kind == "f":
        return Tensor(array_module(t.data).array(t.data, dtype=np.float64), requires_grad=t.requires_grad)
    if isinstance(t, np.ndarray) and t.dtype.kind == "f":
        return Tensor(t.astype(np.float64))
    return t


def check_model(model, x, directions=3, samples=2, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Every parameter's gradient of `model` (any nn.Module, converted to float64 in place and put in eval
    mode: dropout off, so that its output is a function of its parameters) at the input x: `directions`
    directional checks and `samples` randomly drawn elements per parameter, against central differences of
    sum(model(x) * v) for a random v.  Returns one row per parameter: (name, shape, worst relative error,
    passed), the relative error being |analytic - numeric| / max(|numeric|, atol / rtol)."""
    frozen = [name for name, p in model.named_parameters() if p.is_frozen]
    if frozen:
        raise ValueError(f"check_model: the parameters {', '.join(frozen[:3])}{', ...' if len(frozen) > 3 else ''} "
                         "are frozen (read-only, no gradient): call model.unfreeze() to check their gradients")
    model.double().eval()
    x = Tensor(array_module(x.data).asarray(x.data, dtype=np.float64) if isinstance(x, Tensor) else
               np.asarray(x, dtype=np.float64))
    output = model(x)
    output = output[0] if isinstance(output, tuple) else output
    v = np.random.default_rng(seed).standard_normal(output.shape)
    model.zero_grad()
    output.backward(v)

    def objective():
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        return float((to_numpy(out.data) * v).sum())

    rng = np.random.default_rng(seed + 1)
    rows = []
    for name, p in model.named_parameters():
        analytic = to_numpy(p.grad.data) if p.grad is not None else np.zeros(p.shape)
        checks = []
        for _ in range(directions):
            u = rng.standard_normal(p.shape)
            u /= np.linalg.norm(u) or 1.0
            checks.append(directional(p, analytic, objective, eps, u))
        for _ in range(samples):
            one = np.zeros(p.shape)
            one[tuple(rng.integers(0, n) for n in p.shape)] = 1.0
            checks.append(directional(p, analytic, objective, eps, one))
        worst = max(abs(a - n) / max(abs(n), atol / rtol) for a, n in checks)
        passed = all(np.isfinite(a) and abs(a - n) <= atol + rtol * abs(n) for a, n in checks)
        rows.append((name, p.shape, worst, passed))
    return rows


def main(argv=None):
    """python -m minigrad.gradcheck MODEL: every parameter's gradient of a network, checked in float64."""
    from .. import cli
    return cli.run("python -m minigrad.gradcheck", _main, argv)


def parse_args(argv):
    from .. import cli

    parser = cli.Parser(prog="python -m minigrad.gradcheck", description="Check every parameter's gradient of a "
                        "network against central differences in float64: a few random directions and elements "
                        "per parameter.  Exit 1 if any fails.")
    parser.add_argument("model", help="a model name (python -m models.summary lists them), or an ONNX file")
    parser.add_argument("--input-size", type=cli.integer(1, 512), help="input height and width (default: small, "
                        "the least the model takes comfortably)")
    parser.add_argument("--batch", type=cli.integer(1, 64), default=2, help="images in the input (default 2)")
    parser.add_argument("--seed", type=cli.integer(0, 2**32 - 1), default=0)
    parser.add_argument("--directions", type=cli.integer(1, 100), default=2, help="random directions per parameter")
    parser.add_argument("--samples", type=cli.integer(0, 100), default=2, help="random elements per parameter")
    return parser.parse_args(argv)


def load_model(name, input_size):
    """(model, input shape): a model of models.MODELS built for a small input, or an ONNX file's network."""
    from .. import cli
    if name.endswith(".onnx"):
        from .. import onnx
        try:
            model = onnx.load(name)
        except (onnx.OnnxError, OSError) as error:
            raise cli.CommandError(str(error)) from None
        return model, model.input_shape(input_size)
    import models  # the command names the project's models; the engine itself knows none
    name = models.model_name(name, alternatives=" or a .onnx file")
    size = input_size or models.memory.SMALL_SIZE.get(name, 32)
    try:
        model = models.get_model(name, num_classes=10, input_size=size)
    except ValueError as error:
        raise cli.CommandError(str(error)) from None
    return model, (model.in_channels, *model.input_size)


def _main(argv):
    from ..random import manual_seed

    args = parse_args(argv)
    manual_seed(args.seed)
    model, shape = load_model(args.model, args.input_size)
    x = np.random.default_rng(args.seed).standard_normal((args.batch, *shape))
    rows = check_model(model, x, args.directions, args.samples, seed=args.seed)
    width = max(len(name) for name, *_ in rows)
    print(f"{args.model}: {len(rows)} parameters, input {tuple(x.shape)}, float64; {args.directions} random directions "
          f"and {args.samples} random elements each, against central differences ({RULE})")
    for name, shape, worst, passed in rows:
        print(f"{name.ljust(width)}  {str(tuple(shape)):>20}  worst relative error {worst:.2e}  "
              f"{'pass' if passed else 'FAIL'}")
    failed = [name for name, *_, passed in rows if not passed]
    print(f"{'FAILED' if failed else 'passed'}: {len(rows) - len(failed)} of {len(rows)} parameters"
          + (f" ({', '.join(failed[:5])}{', ...' if len(failed) > 5 else ''} wrong)" if failed else ""))
    return 1 if failed else 0
