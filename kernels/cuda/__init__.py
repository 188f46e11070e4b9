"""GPU kernels: hand-written CUDA (the .cu files here, compiled by NVRTC through cupy.RawModule)
and cuBLAS GEMMs, with the same functions, names and signatures as kernels.reference and
kernels.cpu.  Using them needs CuPy (`pip install -e ".[gpu]"`); compiling happens on first
use, once per process, module, dtype and device.

Without a GPU, the same sources can be compiled for the CPU and run with NumPy arrays
(kernels.cuda.host), which is how the tests check them; importing that needs no CuPy, so the
functions here are bound on first use.
"""

from __future__ import annotations

FUNCTIONS = ("im2col", "col2im", "conv2d_forward", "conv2d_backward", "max_pool2d_forward", "max_pool2d_backward",
             "avg_pool2d_forward", "avg_pool2d_backward", "relu_forward", "relu_backward", "lrn_forward",
             "lrn_backward", "concat", "split", "add_n", "sgd_update")
_kernels = None


def __getattr__(name):
    global _kernels
    if name not in FUNCTIONS:
        raise AttributeError(f"module 'kernels.cuda' has no attribute {name!r}")
    if _kernels is None:
        try:
            import cupy
        except ImportError as error:
            raise ImportError("the GPU kernels need CuPy: pip install -e '.[gpu]'") from error
        from .loader import CupyLauncher
        from .ops import CudaKernels
        _kernels = CudaKernels(cupy, CupyLauncher())
    return getattr(_kernels, name)


__all__ = list(FUNCTIONS)
