"""Window geometry shared by convolution and pooling, on every backend.

A convolution or pooling window of size k slides with stride s over an input of
size n that is padded by p on both sides.  Everything that depends only on these
four integers lives here, so the NumPy reference, the Numba kernels and the CUDA
kernels (and the engine's argument checks) all agree on it.
"""

from __future__ import annotations

import numpy as np


def conv_out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Number of window positions of a convolution: floor((n + 2p - k) / s) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def pool_out_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """Number of window positions of a pooling layer.

    In ceil mode the division rounds up (Caffe's rule, used by GoogLeNet), but the
    last window must still start inside the input or its left padding: a window
    that would start in the right padding only would see nothing but padding.
    """
    span = size + 2 * padding - kernel
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out


def padded_extent(size: int, kernel: int, stride: int, padding: int, out: int) -> int:
    """Length of the padded input that holds every window (ceil mode may need more
    than `padding` zeros at the end)."""
    return max(size + 2 * padding, (out - 1) * stride + kernel)


def avg_pool_divisor(size_hw, kernel, stride, padding, out_hw, count_include_pad: bool):
    """(OH, OW) float64 array: what each average-pool window is divided by.

    PyTorch's (and Caffe's) rule: with count_include_pad the window is clipped to the
    padded input (so a ceil-mode window hanging past the padding counts less), else
    to the input itself.
    """
    factors = []
    for n, k, s, p, o in zip(size_hw, kernel, stride, padding, out_hw):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, n + p)
        if count_include_pad:
            factors.append(end - start)
        else:
            factors.append(np.minimum(end, n) - np.maximum(start, 0))
    return np.outer(factors[0], factors[1]).astype(np.float64)
