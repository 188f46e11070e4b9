"""The kernel backends the tests compare with kernels.reference, each behind one interface:
a module-like object whose functions take and return NumPy arrays.

- "numba": kernels.cpu, the default CPU path.
- "cuda-host": the CUDA sources compiled for the CPU and run one thread at a time
  (kernels.cuda.host), with a launch shape (threads per block, most blocks) drawn by the test,
  so odd block and grid sizes exercise the grid-stride loops.  Needs a C++ compiler.
- "cuda": the CUDA kernels on a GPU, arrays moved there and back (tests marked gpu).
"""

import os

import numpy as np
import pytest

from conftest import require_gpu, require_tool

LAUNCH_SHAPES = [(1, 1), (3, 2), (7, 3), (32, 5), (33, 65535), (256, 65535)]

_emulated = {}


def emulated(sanitize=False):
    """The emulated CUDA backend (built once per process)."""
    from kernels.cuda import host

    require_tool(host.compiler(), "no C++ compiler (g++) for the CUDA host emulation")
    sanitize = sanitize or os.environ.get("MINIGRAD_CUDA_HOST_SANITIZE") == "1"
    if sanitize not in _emulated:
        _emulated[sanitize] = host.emulated_kernels(sanitize=sanitize)
    return _emulated[sanitize]


class OnDevice:
    """A GPU kernel module called with NumPy arrays: inputs go to the GPU, results come back."""

    def __init__(self, module):
        self.module = module

    def __getattr__(self, name):
        import cupy

        def move(value, to):
            if isinstance(value, (list, tuple)):
                return type(value)(move(v, to) for v in value)
            if to == "gpu" and isinstance(value, np.ndarray):
                return cupy.asarray(value)
            if to == "host" and isinstance(value, cupy.ndarray):
                return value.get()
            return value

        function = getattr(self.module, name)
        return lambda *args: move(function(*move(args, "gpu")), "host")


def get_backend(name, launch_shape=(256, 65535)):
    if name == "numba":
        return pytest.importorskip("kernels.cpu", reason="numba is not installed")
    if name == "cuda-host":
        backend = emulated()
        backend.launch.block, backend.launch.max_grid = launch_shape
        return backend
    require_gpu()
    import kernels.cuda
    return OnDevice(kernels.cuda)


BACKENDS = [pytest.param("numba"), pytest.param("cuda-host"), pytest.param("cuda", marks=pytest.mark.gpu)]
