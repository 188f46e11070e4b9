"""Argument checks shared by the public ops.

The kernels (NumPy, Numba, CUDA) trust their arguments, and the fast ones do no
bounds checking, so every public op validates here first.  Each error names the
op, the argument and the shapes involved.
"""

from __future__ import annotations

import numbers

import numpy as np

from kernels.geometry import conv_out_size, pool_out_size

from .autograd import Tensor


def as_pair(op: str, name: str, value, minimum: int) -> tuple[int, int]:
    """An int, or a tuple or list of one or two ints (PyTorch's forms) -> (height, width), each >= minimum."""
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int \
            and value[0] >= minimum and value[1] >= minimum:
        return value                  # a layer's own pair, checked when it was built: every call passes one
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) == 1:
        pair = pair * 2
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{op}: {name} must be an int or a tuple of one or two ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


SUPPORTED_FLOATS = (np.float32, np.float64)   # what the compiled kernels are built for (no float16)
MAX_PLANE = 2 ** 28                            # pixels in one padded image plane: beyond any real input


def check_tensor(op: str, name: str, t, ndim=None, floating=True):
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a minigrad Tensor, got {type(t).__name__}")
    if ndim is not None and t.ndim not in ((ndim,) if isinstance(ndim, int) else ndim):
        raise ValueError(f"{op}: {name} must be {ndim}-D, got shape {t.shape}")
    if floating and t.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got dtype {t.dtype}")
    # dtype.type, not dtype.name: every op checks every input, and .name costs 4 us a call, .type 0.1 us
    if t.dtype.kind == "f" and t.dtype.type not in SUPPORTED_FLOATS:
        raise TypeError(f"{op}: {name} has dtype {t.dtype}; minigrad computes in float32 or float64")
    if ndim is not None and t.numel() == 0:
        raise ValueError(f"{op}: {name} has a zero-sized dimension, shape {t.shape}")


def check_same_device_and_dtype(op: str, **tensors):
    """The named tensors (None skipped) live on one device and share one dtype."""
    named = [(n, t) for n, t in tensors.items() if t is not None]
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.device != first.device:
            raise ValueError(f"{op}: {name} is on {t.device} but {first_name} is on {first.device} "
                             f"({name} shape {t.shape}, {first_name} shape {first.shape}); "
                             "move them to one device with .to(device)")
        if t.dtype != first.dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype} but {first_name} has dtype {first.dtype}")


def check_windows(op: str, shape, kernel, stride, padding, ceil_mode=None):
    """The output grid of a convolution (ceil_mode None) or pooling over shape (N, C, H, W).

    Raises when the kernel does not fit in the padded input, or a pooling window
    could lie entirely in the padding (padding > kernel // 2, as PyTorch refuses).
    """
    height, width = shape[2], shape[3]
    if (height + 2 * padding[0]) * (width + 2 * padding[1]) > MAX_PLANE:
        raise ValueError(f"{op}: padding {padding} makes the padded input ({height + 2 * padding[0]}, "
                         f"{width + 2 * padding[1]}) larger than {MAX_PLANE} pixels (input shape {tuple(shape)})")
    if kernel[0] > height + 2 * padding[0] or kernel[1] > width + 2 * padding[1]:
        raise ValueError(f"{op}: kernel_size {kernel} is larger than the padded input "
                         f"({height + 2 * padding[0]}, {width + 2 * padding[1]}) "
                         f"(input shape {tuple(shape)}, padding {padding})")
    if ceil_mode is None:
        return tuple(conv_out_size(n, k, s, p) for n, k, s, p in zip((height, width), kernel, stride, padding))
    _check_pool_padding(op, kernel, padding)
    return tuple(pool_out_size(n, k, s, p, ceil_mode) for n, k, s, p in zip((height, width), kernel, stride, padding))


def pool_arguments(op: str, kernel_size, stride, padding):
    """(kernel, stride, padding) pairs of a pooling layer, checked: kernel and stride >= 1 (stride None:
    the kernel size), padding >= 0 and at most half the kernel (so no window lies in the padding alone)."""
    kernel = as_pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else as_pair(op, "stride", stride, 1)
    padding = as_pair(op, "padding", padding, 0)
    _check_pool_padding(op, kernel, padding)
    return kernel, stride, padding


def _check_pool_padding(op, kernel, padding):
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding {padding} must be at most half of kernel_size {kernel}")


def lrn_arguments(op: str, size, alpha, beta, k):
    """LRN's (size, alpha, beta, k), checked: size an int >= 1, the rest finite numbers with k > 0 and
    alpha >= 0 (then every scale k + alpha/size * sum(x^2) is positive, and raising it to -beta is safe)."""
    if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1:
        raise ValueError(f"{op}: size must be an int >= 1, got {size!r}")
    for name, value in (("alpha", alpha), ("beta", beta), ("k", k)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise TypeError(f"{op}: {name} must be a number, got {value!r}")
        if not np.isfinite(value):
            raise ValueError(f"{op}: {name} must be finite, got {value!r}")
    if not k > 0 or not alpha >= 0:
        raise ValueError(f"{op}: k must be > 0 and alpha >= 0 (the scale is raised to -beta), got k={k}, alpha={alpha}")
    return int(size), float(alpha), float(beta), float(k)


def check_probability(op: str, name: str, p):
    if not isinstance(p, numbers.Real) or isinstance(p, bool):
        raise TypeError(f"{op}: {name} must be a number, got {type(p).__name__}")
    if not 0 <= p < 1:
        raise ValueError(f"{op}: {name} must be in [0, 1), got {p}")
