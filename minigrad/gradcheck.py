"""Check analytic gradients against central finite differences in float64."""

from __future__ import annotations

import numpy as np

from .autograd import Tensor, no_grad
from .backend import array_module


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with its finite-difference estimate."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Compare the backward pass of `fn(*inputs)` with central differences.

    Every floating-point input is copied to float64; those that require grad are
    checked element by element.  The output is contracted with a random (not
    all-ones) upstream gradient, so errors that cancel in a plain sum still show.
    Returns True, or raises GradcheckError naming the input, the worst element,
    the analytic and numeric values and the error.
    """
    inputs = [_float64_leaf(t) for t in inputs]
    output = fn(*inputs)
    if not isinstance(output, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(output).__name__}")
    upstream = np.random.default_rng(seed).standard_normal(output.shape)       # on the host; moved where needed
    checked = [(i, t) for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")
    if output.requires_grad:
        output.backward(upstream)

    def objective():
        return float((fn(*inputs).numpy() * upstream).sum())

    for index, t in checked:
        analytic = t.grad.numpy() if t.grad is not None else np.zeros(t.shape)
        numeric = np.empty(t.shape)
        data = t.data                                   # perturbed in place, element by element, in any layout
        with no_grad():
            for k in np.ndindex(t.shape):
                original = data[k]
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
                f"> atol {atol} + rtol {rtol} * |numeric|; {(excess > 0).sum()} of {t.numel()} elements fail")
    return True


def _float64_leaf(t):
    """A float64 copy of a floating-point input, as a fresh leaf on the same device (other inputs pass through)."""
    if isinstance(t, Tensor) and t.dtype.kind == "f":
        return Tensor(array_module(t.data).array(t.data, dtype=np.float64), requires_grad=t.requires_grad)
    if isinstance(t, np.ndarray) and t.dtype.kind == "f":
        return Tensor(t.astype(np.float64))
    return t
