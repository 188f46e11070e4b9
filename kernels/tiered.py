"""The default CPU kernels (MINIGRAD_KERNELS=auto): the reference kernels first, Numba's once they pay.

Loading Numba's kernels takes 0.7-0.9 s before the first of them runs: importing Numba, its typing
registries, minigrad's Numba modules and each kernel's cached machine code.  That is more than a short
program's whole work: GoogLeNet's first output at batch 1 waited for it, where the reference kernels
compute that forward in 0.12-0.14 s.  So a process starts on the reference kernels (NumPy: nothing to
load) and switches by the ski-rental rule: once they have cost, by estimate, as much time as loading
Numba does, Numba is loaded and every later call runs on it.  A program that ends before then never pays
for Numba; one that runs on pays at most about the load time again.

The cost is estimated from the work each call did, not timed, so the switch comes at the same call in
every run of a program and a seeded run gives the same bits each time.  A backward may then run on other
kernels than its forward: the contract allows it (`saved` holds only what a backend knows how to read).
"""

from __future__ import annotations

import math

import numpy as np

from . import contract, reference

# The rates at which the reference kernels work: a convolution's multiply-adds (OpenBLAS's GEMM on the
# caller's thread) and the elements a call takes and returns (NumPy's passes, several per element: padding,
# windows, temporaries).  Fitted to the reference kernels' time in two workloads on an AMD EPYC Zen 3 (2
# cores): GoogLeNet's batch-1 forward (1.58 G multiply-adds, 24.5 M elements: 0.12-0.13 s) and the small
# GoogLeNet's batch-32 training step (0.70 G, 43.2 M: 0.16-0.19 s).  A call's fixed cost (about 30 us) is
# left out: Numba's kernels pay one too, and on tiny arrays the two run alike (the small GoogLeNet's step at
# 8x8, batch 1: 6.9 ms on the reference kernels, 7.0 ms on Numba's), so there is nothing to win back.
MULTIPLY_ADDS_PER_SECOND = 50e9
ELEMENTS_PER_SECOND = 0.24e9
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


def estimated_seconds(name, args, result):
    """What reference kernel `name` took, called with args, by the rates above."""
    elements = sum(a.size for a in _arrays(args)) + sum(a.size for a in _arrays(result))
    multiply_adds = 0
    if name == "conv2d_forward":                     # y = columns @ filters: C*KH*KW per output element
        multiply_adds = result.size * math.prod(args[1].shape[1:])
    elif name == "conv2d_backward":                  # the weight's GEMM, and the input's when it was asked for
        multiply_adds = args[2].size * math.prod(args[1].shape[1:]) * (1 if result[0] is None else 2)
    return multiply_adds / MULTIPLY_ADDS_PER_SECOND + elements / ELEMENTS_PER_SECOND


class Tiered:
    """Serves the reference kernels, charging each call's estimated time, until the charge reaches
    NUMBA_LOAD_SECONDS; then `load_compiled()` (Numba's kernel module) serves every call."""

    def __init__(self, load_compiled):
        self.load_compiled = load_compiled
        self.spent = 0.0                             # estimated seconds in the reference kernels so far
        self.compiled = None
        self.charged = _ChargedReference(self)

    def backend(self):
        """The kernel module for the next call."""
        if self.compiled is None:
            if self.spent < NUMBA_LOAD_SECONDS:
                return self.charged
            self.compiled = self.load_compiled()
        return self.compiled


class _ChargedReference:
    """kernels.reference's functions, each adding its estimated time to the tiers' account."""

    def __init__(self, tiers):
        for name in contract.FUNCTIONS:
            setattr(self, name, self._charging(tiers, name, getattr(reference, name)))

    @staticmethod
    def _charging(tiers, name, function):
        def call(*args, **kwargs):
            result = function(*args, **kwargs)
            tiers.spent += estimated_seconds(name, args + tuple(kwargs.values()), result)
            return result
        call.__name__ = call.__qualname__ = name
        call.__doc__ = function.__doc__
        return call
