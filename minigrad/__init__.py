"""minigrad: a small define-by-run autograd engine for studying convolutional networks.

    import minigrad
    import minigrad.functional as F
    x = minigrad.tensor(data, requires_grad=True)
    y = F.max_pool2d(F.relu(F.conv2d(x, w, b, padding=1)), 3, stride=2, ceil_mode=True)
    y.sum().backward()
"""

from __future__ import annotations

import numpy as np

from . import checkpoint, data, functional, nn, onnx, optim, profiler, viz
from .autograd import Function, Tensor, is_grad_enabled, no_grad
from .backend import array_module, cuda_available, parse_device, to_device
from .functional import cat, split
from .gradcheck import GradcheckError, gradcheck
from .random import manual_seed

float32 = np.float32
float64 = np.float64

__version__ = "0.1.0"


def tensor(data, requires_grad: bool = False, dtype=None, device=None) -> Tensor:
    """A new Tensor holding a copy of `data` (a number, nested lists, a NumPy or CuPy array, a Tensor).

    Floating-point data becomes float32 unless it is already a float array or
    `dtype` says otherwise; integer data stays integer (class labels).  `device`
    ('cpu', 'cuda', 'cuda:N') defaults to where `data` is.
    """
    target = None if device is None else parse_device(device, "tensor")
    if isinstance(data, Tensor):
        data = data.data
    xp = array_module(data)
    if dtype is None:
        is_float_array = hasattr(data, "dtype") and np.dtype(data.dtype).kind == "f"
        array = xp.array(data, copy=True)
        if array.dtype.kind == "f" and not is_float_array:
            array = array.astype(np.float32)          # Python floats: float32, as in PyTorch
        elif array.dtype.kind == "b":
            array = array.astype(np.bool_)
        elif array.dtype.kind not in "fiu":
            raise TypeError(f"tensor: cannot make a tensor of dtype {array.dtype} from {type(data).__name__}")
    else:
        array = xp.array(data, dtype=dtype, copy=True)
    return Tensor(array if target is None else to_device(array, target), requires_grad=requires_grad)


def zeros(*shape, dtype=np.float32, requires_grad=False, device="cpu") -> Tensor:
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(to_device(np.zeros(shape, dtype=dtype), parse_device(device, "zeros")), requires_grad=requires_grad)


def randn(*shape, dtype=np.float32, requires_grad=False, device="cpu") -> Tensor:
    """Standard normal samples from minigrad's seedable generator (drawn on the CPU, so a seed
    gives the same values on every device)."""
    from .random import generator
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    values = generator().standard_normal(shape).astype(dtype)
    return Tensor(to_device(values, parse_device(device, "randn")), requires_grad=requires_grad)


__all__ = ["Tensor", "Function", "tensor", "zeros", "randn", "cat", "split", "no_grad", "is_grad_enabled", "cuda_available",
           "gradcheck", "GradcheckError", "manual_seed", "functional", "nn", "onnx", "optim", "data", "checkpoint",
           "profiler", "viz", "float32", "float64"]
