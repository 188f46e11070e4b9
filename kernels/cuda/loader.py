"""The CUDA sources, their kernels' signatures, and launching a kernel by name.

Every `.cu` file here is compiled once per floating type (`real` = float or double, kernel
names ending in _f32 or _f64).  `Launcher` turns a call such as

    launch("im2col", x.dtype, total, x, n, c, ..., cols)

into a kernel launch: it looks the kernel up in the signatures parsed from its source,
checks that every array argument is C-contiguous with the dtype the kernel reads, and
converts Python numbers to the kernel's `long long` or `real`.  A wrong call fails here, in
Python, instead of reading or writing out of bounds on the device.  Subclasses run the
kernel: `CupyLauncher` on a GPU (NVRTC through cupy.RawModule, compiled once per process,
module, dtype and device), and `kernels.cuda.host.HostLauncher` on the CPU for the tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

SOURCE_DIR = Path(__file__).parent

# The kernels the wrappers in ops.py launch, by source file.  The compile check verifies that
# each one is present in what NVRTC (or nvcc) builds from that file.
MODULES = {
    "conv": ("im2col", "col2im", "conv_output", "conv_grad_output"),
    "pool": ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward"),
    "elementwise": ("relu_forward", "relu_backward", "lrn_forward", "lrn_backward", "copy_channels",
                    "add_pair", "sgd_update"),
    "norm": ("batch_norm_chunk_statistics", "batch_norm_combine", "batch_norm_apply", "batch_norm_chunk_gradients",
             "channel_sums", "batch_norm_input_gradient"),
}
MODULE_OF = {kernel: module for module, names in MODULES.items() for kernel in names}
POINTER_DTYPES = {"long long*": np.dtype(np.int64), "int*": np.dtype(np.int32)}     # real*: the call's dtype

# dtype -> (the C type `real` stands for, the suffix of the kernel names); keyed by dtype.char, which
# is cheap, where dtype.name costs microseconds, and every launch looks its kernel up
REAL_TYPES = {"f": ("float", "_f32"), "d": ("double", "_f64")}


def real_type(dtype) -> tuple:
    dtype = np.dtype(dtype)
    try:
        return REAL_TYPES[dtype.char]
    except KeyError:
        raise TypeError(f"the CUDA kernels take float32 or float64 arrays, not {dtype}") from None

# What CuPy adds to every RawModule it compiles (cupy/cuda/compiler.py, _compile_with_cache_cuda): single-precision
# subnormals flushed to zero, inputs and results.  The compile check (compile.py) builds with it too, and the
# host emulation (host.py) sets the CPU's flush-to-zero and denormals-are-zero modes for float32 kernels, so
# that what the tests check is what runs on a GPU.  float64 keeps its subnormals everywhere.
DEVICE_OPTIONS = ("-ftz=true",)

BLOCK = 256                      # threads per block on a GPU
MAX_GRID = 65535                 # blocks at most; the grid-stride loops cover any remainder


def source(module: str) -> str:
    """The module's CUDA source with its local #include "..." files pasted in, so one text holds
    everything it depends on (CuPy keys its compile cache on this text)."""
    def expand(path: Path, seen: set) -> str:
        lines = []
        for line in path.read_text().splitlines():
            match = re.match(r'\s*#include\s+"([^"]+)"', line)
            if match:
                included = path.parent / match.group(1)
                if included not in seen:
                    seen.add(included)
                    lines.append(expand(included, seen))
            else:
                lines.append(line)
        return "\n".join(lines)
    return expand(SOURCE_DIR / f"{module}.cu", set())


def defines(dtype) -> dict:
    """The preprocessor definitions that make a source one dtype's kernels."""
    c_type, suffix = real_type(dtype)
    return {"real": c_type, "KERNEL_SUFFIX": suffix}


def kernel_name(name: str, dtype) -> str:
    return name + real_type(dtype)[1]


_KERNEL_DECLARATION = re.compile(r"KERNEL\((\w+)\)\s*\(([^)]*)\)")
_PARAMETER = re.compile(r"^(const\s+)?(real|long long|int)\s*(\*)?\s*(__restrict__\s+)?(\w+)$")


def signatures(module: str) -> dict:
    """{kernel: [(kind, parameter name), ...]} parsed from the source, kind being one of
    'long long', 'real', 'real*', 'long long*' or 'int*' (the only types a kernel here may take: no scalar int,
    so that a kernel never reads 32 bits where the launcher passed 64)."""
    result = {}
    for name, parameters in _KERNEL_DECLARATION.findall(source(module)):
        parsed = []
        for parameter in parameters.split(","):
            match = _PARAMETER.match(" ".join(parameter.split()))
            if match is None or (match.group(2) == "int" and not match.group(3)):
                raise ValueError(f"{module}.cu: kernel {name} has a parameter of an unsupported type: "
                                 f"{parameter.strip()!r} (use real, long long, or pointers to them or to int)")
            parsed.append((match.group(2) + ("*" if match.group(3) else ""), match.group(5)))
        result[name] = parsed
    return result


class Launcher:
    """Checks and converts a kernel call; `run` (in a subclass) launches it."""

    def __init__(self, block: int = BLOCK, max_grid: int = MAX_GRID):
        self.block, self.max_grid = block, max_grid
        self._signatures = {module: signatures(module) for module in MODULES}

    def __call__(self, name: str, dtype, total: int, *args):
        module = MODULE_OF[name]
        dtype = np.dtype(dtype)
        signature = self._signatures[module][name]
        if len(args) + 1 != len(signature):
            raise TypeError(f"{name}: the kernel takes {len(signature) - 1} arguments after total, got {len(args)}")
        converted = [np.int64(total)]
        for (kind, parameter), value in zip(signature[1:], args):
            converted.append(self._convert(name, kind, parameter, value, dtype))
        if total > 0:                              # an empty launch is an error on a GPU; nothing to do anyway
            grid = min(self.max_grid, -(-total // self.block))
            self.run(module, name, dtype, grid, converted)

    @staticmethod
    def _convert(name, kind, parameter, value, dtype):
        if kind.endswith("*"):
            wanted = POINTER_DTYPES.get(kind, dtype)
            if getattr(value, "dtype", None) != wanted or not value.flags.c_contiguous:
                raise TypeError(f"{name}: argument {parameter} must be a C-contiguous {wanted} array, got "
                                f"{type(value).__name__} {getattr(value, 'dtype', '')}")
            return value
        if kind == "long long":
            return np.int64(value)
        return dtype.type(value)

    def run(self, module, name, dtype, grid, args):
        """Launch kernel `name` of `module` for dtype on `grid` blocks of self.block threads."""
        raise NotImplementedError


class CupyLauncher(Launcher):
    """Launches on the current CuPy device.  Each (module, dtype, device) is compiled by NVRTC
    and loaded once per process (CuPy also keeps the binaries in its on-disk kernel cache)."""

    def __init__(self):
        super().__init__()
        self._functions = {}

    def run(self, module, name, dtype, grid, args):
        import cupy

        device = cupy.cuda.Device().id
        function = self._functions.get((name, dtype.char, device))
        if function is None:          # CuPy adds DEVICE_OPTIONS itself
            options = tuple(f"-D{k}={v}" for k, v in defines(dtype).items()) + ("--std=c++17",)
            compiled = cupy.RawModule(code=source(module), options=options)
            for kernel in MODULES[module]:             # every kernel of this module, dtype and device
                self._functions[(kernel, dtype.char, device)] = compiled.get_function(kernel_name(kernel, dtype))
            function = self._functions[(name, dtype.char, device)]
        function((grid,), (self.block,), tuple(args))
