"""Run the CUDA sources on the CPU: the proof of their indexing on machines without a GPU.

`MINIGRAD_KERNELS=cuda-host` makes this the CPU backend of the whole engine (slow, single-threaded:
for studying the CUDA kernels and for the tests), and this module then has the kernel functions.

Each `.cu` file is compiled by g++ as C++ with `host_shim.h` (the CUDA qualifiers defined
away, blockIdx/threadIdx/blockDim/gridDim as globals), plus one generated launch loop per
kernel that calls it for every thread of every block in turn.  The library is loaded with
ctypes and driven by the same wrappers (ops.py) as the GPU, with NumPy arrays in place of
CuPy's:

    backend = emulated_kernels(block=7, max_grid=3)    # odd sizes: the grid-stride loops wrap
    y = backend.conv2d_forward(x, w, b, (1, 1), (1, 1))

`sanitize=True` builds with AddressSanitizer (the process must preload libasan; see
tests/test_cuda_host.py).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .loader import BLOCK, MAX_GRID, MODULES, SOURCE_DIR, Launcher, defines, kernel_name, signatures, source

_C_TYPES = {"long long": "long long", "real": "real", "real*": "real*", "long long*": "long long*", "int*": "int*"}


def compiler():
    """The C++ compiler used for the emulation (CXX, else g++), or None."""
    return shutil.which(os.environ.get("CXX", "g++"))


def launch_loops(module: str, dtype) -> str:
    """C++ for `launch_<kernel>(grid, block, args...)`: every thread of every block, in turn, in float32
    with the CPU flushing subnormals to zero as a GPU does under -ftz=true (loader.DEVICE_OPTIONS)."""
    code = []
    for name, parameters in signatures(module).items():
        full = kernel_name(name, dtype)
        declared = ", ".join(f"{_C_TYPES[kind]} {p}" for kind, p in parameters)
        passed = ", ".join(p for _, p in parameters)
        code.append(f"""
extern "C" void launch_{full}(unsigned int grid, unsigned int block, {declared}) {{
    gridDim.x = grid;
    blockDim.x = block;
    const unsigned int mg_modes = mg_flush_subnormals(sizeof(real) == sizeof(float));
    for (unsigned int mg_block = 0; mg_block < grid; ++mg_block) {{      // names no kernel parameter uses
        blockIdx.x = mg_block;
        for (unsigned int mg_thread = 0; mg_thread < block; ++mg_thread) {{
            threadIdx.x = mg_thread;
            {full}({passed});
        }}
    }}
    mg_restore_modes(mg_modes);
}}""")
    return "\n".join(code)


def build(module: str, dtype, folder=None, sanitize: bool = False) -> Path:
    """Compile one module for one dtype into a shared library (cached by the hash of what goes in)."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (install g++ or set CXX): the CUDA host emulation needs one")
    text = source(module) + "\n" + launch_loops(module, dtype)
    flags = ["-std=c++17", "-shared", "-fPIC", "-include", str(SOURCE_DIR / "host_shim.h")]
    flags += [f"-D{k}={v}" for k, v in defines(dtype).items()]
    flags += ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"] if sanitize else ["-O2"]
    digest = hashlib.sha256("\0".join([text, (SOURCE_DIR / "host_shim.h").read_text(), cxx, *flags]).encode())
    folder = Path(folder or os.environ.get("MINIGRAD_CUDA_HOST_DIR")
                  or Path(tempfile.gettempdir()) / f"minigrad-cuda-host-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / f"{module}_{np.dtype(dtype).name}_{digest.hexdigest()[:16]}.so"
    if not library.exists():
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            cpp, built = Path(scratch) / f"{module}.cpp", Path(scratch) / "lib.so"
            cpp.write_text(text)
            result = subprocess.run([cxx, *flags, "-o", str(built), str(cpp)], capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"compiling {module}.cu for the host failed:\n{result.stderr}")
            os.replace(built, library)            # atomic: concurrent builds never see half a file
    return library


class HostLauncher(Launcher):
    """Runs the kernels on NumPy arrays through the compiled emulation."""

    def __init__(self, block: int = BLOCK, max_grid: int = MAX_GRID, sanitize: bool = False, folder=None):
        super().__init__(block, max_grid)
        self.sanitize, self.folder = sanitize, folder
        self._libraries = {}
        self.launched = set()                     # kernel names run so far: the tests check all were

    def _function(self, module, name, dtype):
        key = (module, dtype.name)
        if key not in self._libraries:
            self._libraries[key] = ctypes.CDLL(str(build(module, dtype, self.folder, self.sanitize)))
        function = getattr(self._libraries[key], "launch_" + kernel_name(name, dtype))
        if function.argtypes is None:
            real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
            kinds = {"long long": ctypes.c_longlong, "real": real, "real*": ctypes.c_void_p,
                     "long long*": ctypes.c_void_p, "int*": ctypes.c_void_p}
            function.argtypes = [ctypes.c_uint, ctypes.c_uint] + [kinds[kind] for kind, _ in
                                                                  signatures(module)[name]]
            function.restype = None
        return function

    def run(self, module, name, dtype, grid, args):
        function = self._function(module, name, dtype)
        values = [a.ctypes.data if isinstance(a, np.ndarray) else a.item() for a in args]
        function(grid, self.block, *values)
        self.launched.add(name)


def emulated_kernels(block: int = BLOCK, max_grid: int = MAX_GRID, sanitize: bool = False, folder=None,
                     column_chunk_bytes=None):
    """The CUDA backend's wrappers on NumPy arrays, running the CUDA sources on the CPU."""
    from .ops import CudaKernels

    launcher = HostLauncher(block, max_grid, sanitize, folder)
    return CudaKernels(np, launcher, column_chunk_bytes)


_default = None


def __getattr__(name):
    """The kernel functions (conv2d_forward, ...) of a default emulated backend, built on first use."""
    from .ops import CudaKernels

    global _default
    if name.startswith("_") or not callable(getattr(CudaKernels, name, None)):
        raise AttributeError(f"module 'kernels.cuda.host' has no attribute {name!r}")
    if _default is None:
        _default = emulated_kernels()
    return getattr(_default, name)


__all__ = ["compiler", "build", "launch_loops", "HostLauncher", "emulated_kernels", "MODULES"]
