"""Arrays that start on a 64-byte boundary: a cache line, and one AVX-512 vector.

NumPy aligns its allocations to 16 bytes only, so where an array starts within a cache line depends on what
the process allocated before it (its imports among them).  The CPU kernels read their buffers, and a
convolution's filters (the B of its GEMM), in whole vectors, and a vector that straddles two lines costs two
accesses: measured, 5b's 3x3 forward (F(4x4, 3x3), all its tiles in one pass) took 3.8-3.9 ms in a process
where its buffers fell off the lines, 1.5-1.7 ms aligned; a 1x1 layer's forward, its filters 16, 32 or 48
bytes past a line, 1.00-1.37x the time of the same filters aligned (`python -m benchmarks.alignment`).
NumPy only: the engine and the kernels both allocate through here.
"""

from __future__ import annotations

import math

import numpy as np

ALIGNMENT = 64


def aligned_empty(shape, dtype=np.float32, zero=False):
    """A C-contiguous array of shape and dtype starting on an ALIGNMENT-byte boundary, zeroed if zero."""
    dtype = np.dtype(dtype)
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    size = math.prod(shape) * dtype.itemsize
    raw = (np.zeros if zero else np.empty)(size + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + size].view(dtype).reshape(shape)


def aligned_like(a):
    """An empty array of a's shape and dtype, starting on an ALIGNMENT-byte boundary, its axes laid out in
    memory in a's order (as np.empty_like(a, order="K") for an array that is a permuted contiguous one, such
    as nn.Conv2d's filters stored as (KH, KW, C, O) behind their (O, C, KH, KW) shape)."""
    order = sorted(range(a.ndim), key=lambda axis: -abs(a.strides[axis]))
    return aligned_empty(tuple(a.shape[axis] for axis in order), a.dtype).transpose(np.argsort(order))


def aligned_copy(a):
    """A copy of a NumPy array as aligned_like lays it out; any other array (CuPy) copied as it is."""
    if not isinstance(a, np.ndarray):
        return a.copy(order="K")
    copy = aligned_like(a)
    copy[...] = a
    return copy


def is_aligned(a) -> bool:
    return a.ctypes.data % ALIGNMENT == 0
