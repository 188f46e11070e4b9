"""The default CPU kernels (MINIGRAD_KERNELS=auto): the reference kernels first, Numba's once they pay.

Loading Numba's kernels takes 0.7-0.9 s before the first of them runs: importing Numba, its typing
registries, minigrad's Numba modules and each kernel's cached machine code.  That is more than a short
program's whole work: GoogLeNet's first output at batch 1 waited for it, where the reference kernels
compute that forward in 0.12-0.14 s.  So a process starts on the reference kernels (NumPy: nothing to
load) and switches by the ski-rental rule: the call that would take their estimated cost past what
loading Numba costs loads it and runs on it, as does every later call.  A program that ends before then
never pays for Numba; one that runs on pays at most about the load time again.

The cost is estimated from each call's arguments, before it runs, not timed, so the switch comes at the
same call in every run of a program and a seeded run gives the same bits each time.  A backward may then run on other
kernels than its forward: the contract allows it (`saved` holds only what a backend knows how to read).
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from . import contract, reference
from .geometry import conv_out_size

# The rates at which the reference kernels work: a convolution's multiply-adds (OpenBLAS's GEMM on the
# caller's thread) and the elements they pass through (NumPy's copies, padding, windows, temporaries), as
# estimated_seconds counts them.  Fitted to the reference kernels' time in five workloads on an AMD EPYC Zen
# 3 (2 cores), each within 25%: GoogLeNet's batch-1 forward (1.58 G multiply-adds, 43 M elements: 0.12-0.18
# s), its training step's forward and backward at batch 2 (9.3 G, 276 M: 0.69 s), and the small GoogLeNet's
# training step at 32x32 and 16x16 (batch 32 and 4).  A call's fixed cost (about 30 us) is left out: Numba's
# kernels pay one too, and on tiny arrays the two run alike (the small GoogLeNet's step at 8x8, batch 1: 6.9
# ms on the reference kernels, 7.0 ms on Numba's), so there is nothing to win back.
MULTIPLY_ADDS_PER_SECOND = 40e9
ELEMENTS_PER_SECOND = 0.5e9
# Loading Numba's kernels, measured on the same machine as what the call that switches takes beyond the
# others: 0.7 s for GoogLeNet's forward kernels (Numba's import and typing registries 0.35-0.45 s, minigrad's
# Numba modules 0.07, the cached machine code 0.13-0.18), 0.85-0.95 s for the small network's training step.
NUMBA_LOAD_SECONDS = 0.7


def _arrays(value):
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _arrays(item)


def estimated_seconds(name, args):
    """What reference kernel `name` will take on args, by the rates above, judged before it runs: the
    elements it takes, twice (its results are about as large), and a convolution's column matrices (im2col
    writes them, col2im reads them) and their GEMMs' multiply-adds."""
    elements = 2 * sum(a.size for a in _arrays(args))
    if name == "conv2d_forward":                     # (x, weight, bias, stride, padding, ...)
        x, weight, stride, padding = args[0], args[1], args[3], args[4]
        sizes = zip(x.shape[2:], weight.shape[2:], stride, padding)
        pixels, gemms = math.prod(conv_out_size(*size) for size in sizes), 1
    elif name == "conv2d_backward":                  # (x, weight, grad_y, stride, padding, need_input_grad, ...)
        x, weight = args[0], args[1]
        pixels, gemms = math.prod(args[2].shape[2:]), 2 if len(args) <= 5 or args[5] else 1
    else:
        return elements / ELEMENTS_PER_SECOND
    o, c, kh, kw = weight.shape
    columns = gemms * x.shape[0] * c * kh * kw * pixels
    return columns * o / MULTIPLY_ADDS_PER_SECOND + (elements + columns) / ELEMENTS_PER_SECOND


class Tiered:
    """Serves the reference kernels, charging each call's estimated time, while the charge stays within
    NUMBA_LOAD_SECONDS; the first call that would take it past loads `load_compiled()` (Numba's kernel
    module), which serves that call and every later one.  So no call that alone costs more than loading
    Numba runs on the reference kernels (nor allocates their full column matrices)."""

    def __init__(self, load_compiled):
        self.load_compiled = load_compiled
        self.spent = 0.0                             # estimated seconds in the reference kernels so far
        self.compiled = None
        self.charged = _ChargedReference(self)

    def backend(self):
        """The kernel module for the next call."""
        return self.compiled or self.charged

    def switch(self):
        if self.compiled is None:
            self.compiled = self.load_compiled()
        return self.compiled


class _ChargedReference:
    """kernels.reference's functions, each charging its estimated time to the tiers' account first, or
    handing its call to the compiled kernels when the account would go past the budget."""

    def __init__(self, tiers):
        for name in contract.FUNCTIONS:
            setattr(self, name, self._charging(tiers, name, getattr(reference, name)))

    @staticmethod
    def _charging(tiers, name, function):
        signature = inspect.signature(function)

        def call(*args, **kwargs):
            if kwargs:                               # as the engine calls: every argument by position
                args = signature.bind(*args, **kwargs).args
            cost = estimated_seconds(name, args)
            if tiers.compiled is not None or tiers.spent + cost > NUMBA_LOAD_SECONDS:
                return getattr(tiers.switch(), name)(*args)
            tiers.spent += cost
            return function(*args)
        call.__name__ = call.__qualname__ = name
        call.__doc__ = function.__doc__
        return call
