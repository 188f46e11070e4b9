"""GPU kernels: hand-written CUDA (the .cu files here, compiled by NVRTC through cupy.RawModule)
and cuBLAS GEMMs: the functions of the kernel contract (kernels/contract.py).  Using them needs CuPy
(`pip install -e ".[gpu]"`); compiling happens on first use, once per process, module, dtype and device.

Without a GPU, the same sources can be compiled for the CPU and run with NumPy arrays
(kernels.cuda.host), which is how the tests check them; importing that needs no CuPy, so the
functions here are bound on first use.
"""

from __future__ import annotations

from ..contract import FUNCTIONS

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
