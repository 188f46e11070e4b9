"""Which array library holds the data (NumPy on the CPU, CuPy on a GPU), and moving data between devices.

Devices are named as in PyTorch: "cpu", "cuda" (the current GPU) or "cuda:N".
CuPy is optional: without it minigrad runs on the CPU, and asking for "cuda" says what to install.
"""

from __future__ import annotations

import contextlib
import functools
import sys

import numpy as np

INSTALL_HINT = "pip install -e '.[gpu]' (CuPy for CUDA 13)"


@functools.cache
def _import_cupy():
    """(cupy, None), or (None, why it does not load).  Imported when a GPU is first asked for, not by `import
    minigrad`: importing CuPy takes most of a second, which a program on the CPU should not wait for."""
    try:
        import cupy
        return cupy, None
    except Exception as error:             # ImportError, or a CUDA library that fails to load
        return None, f"{type(error).__name__}: {error}"


def cupy_module():
    """CuPy, imported if need be; a clear error saying how to install it where it does not load."""
    cupy = _import_cupy()[0]
    if cupy is None:
        raise RuntimeError(f"CuPy is needed for the GPU: {cuda_problem()}")
    return cupy


def array_module(a):
    """numpy or cupy, whichever owns `a` (the one line every op uses to pick its library).  Only a process that
    has imported CuPy can hold a CuPy array, so until then the answer is NumPy without importing it."""
    if type(a) is np.ndarray:        # the common case first: these run several times in every op
        return np
    cupy = sys.modules.get("cupy")
    return cupy.get_array_module(a) if cupy is not None else np


def is_cuda_array(a) -> bool:
    if type(a) is np.ndarray:
        return False
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(a, cupy.ndarray)


def device_of(a) -> str:
    return "cpu" if type(a) is np.ndarray or not is_cuda_array(a) else f"cuda:{a.device.id}"


@functools.cache
def _device_count():
    """(how many GPUs CuPy can use, why none where it is 0)."""
    cupy, problem = _import_cupy()
    if cupy is None:
        if problem.startswith("ModuleNotFoundError"):
            return 0, f"CuPy is not installed: {INSTALL_HINT}"
        return 0, f"CuPy does not load ({problem})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:         # no driver, or a driver older than the runtime: say which
        return 0, f"CuPy cannot query the GPUs ({type(error).__name__}: {error})"
    return count, None if count else "CuPy finds no CUDA device"


def cuda_device_count() -> int:
    """How many GPUs CuPy can use (0 without CuPy, a driver or a device)."""
    return _device_count()[0]


def cuda_problem():
    """Why no GPU can be used (CuPy missing or failing to load, the driver's error, no device), or None."""
    return _device_count()[1]


def cuda_available() -> bool:
    return cuda_device_count() > 0


def parse_device(device, op: str = "to") -> str:
    """'cpu' or 'cuda:N' from 'cpu', 'cuda' or 'cuda:N'; a clear error for anything else, or for a
    GPU that this machine does not have."""
    if not isinstance(device, str):
        raise TypeError(f"{op}: device must be a string such as 'cpu', 'cuda' or 'cuda:0', "
                        f"got {type(device).__name__}")
    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return "cpu"
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"{op}: unknown device {device!r}; expected 'cpu', 'cuda' or 'cuda:N'")
    if _import_cupy()[0] is None:
        raise RuntimeError(f"{op}: device {device!r} needs CuPy: {cuda_problem()}")
    count = cuda_device_count()
    if count == 0:
        raise RuntimeError(f"{op}: device {device!r} was asked for, but no GPU can be used: {cuda_problem()}")
    number = int(index) if index else cupy_module().cuda.Device().id
    if number >= count:
        raise ValueError(f"{op}: device {device!r} does not exist; this machine has {count} GPU(s)")
    return f"cuda:{number}"


def to_device(a, device: str):
    """`a` on `device` (a parse_device() name): the same array if it is already there, else a copy."""
    if device == device_of(a):
        return a
    if device == "cpu":
        return a.get()
    cupy = cupy_module()
    with cupy.cuda.Device(int(device.partition(":")[2])):
        return cupy.asarray(a.get() if is_cuda_array(a) else a)      # from another GPU: through the host


def to_numpy(a):
    """A NumPy array of a's values (copied to the host from a GPU)."""
    return a.get() if is_cuda_array(a) else np.asarray(a)


def on_device_of(a):
    """A context in which a's GPU is the current device (CuPy allocates and launches there); on the CPU, nothing."""
    return a.device if is_cuda_array(a) else contextlib.nullcontext()


def synchronize(a):
    """Wait for the GPU work queued on a's device (timing needs it; a no-op on the CPU)."""
    if is_cuda_array(a):
        with a.device:
            sys.modules["cupy"].cuda.get_current_stream().synchronize()
