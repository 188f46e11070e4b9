"""Hand-written kernels, one module per backend, all with the same functions.

- `kernels.reference`: plain NumPy, written to be read (the definition).

`for_array(a)` returns the kernel module for an array.  The environment variable
MINIGRAD_KERNELS=reference selects the NumPy reference on the CPU, so the two
paths can be compared.
"""

from __future__ import annotations

import os

from . import reference

KERNEL_FUNCTIONS = (
    "conv2d_forward", "conv2d_backward",
    "max_pool2d_forward", "max_pool2d_backward",
    "avg_pool2d_forward", "avg_pool2d_backward",
    "relu_forward", "relu_backward",
    "lrn_forward", "lrn_backward",
    "concat", "split",
)

_CPU_BACKENDS = {"reference": reference}


def cpu_backend_name() -> str:
    """The CPU kernels in use, from MINIGRAD_KERNELS (default: the fastest available)."""
    name = os.environ.get("MINIGRAD_KERNELS", "reference")
    if name not in _CPU_BACKENDS:
        raise ValueError(f"MINIGRAD_KERNELS={name!r}: expected one of {sorted(_CPU_BACKENDS)}")
    return name


def for_array(a):
    """The kernel module that computes on arrays of a's type."""
    return _CPU_BACKENDS[cpu_backend_name()]
