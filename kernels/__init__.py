"""Hand-written kernels, one module per backend, all with the same functions.

- `kernels.reference`: plain NumPy, written to be read (the definition).
- `kernels.cpu`: Numba, compiled and parallel: the default on the CPU.
- `kernels.cuda`: CUDA C compiled by NVRTC, with cuBLAS GEMMs, for CuPy arrays on a GPU.

`for_array(a)` returns the kernel module for an array: the CUDA kernels for a CuPy
array, else the CPU kernels that the environment variable MINIGRAD_KERNELS selects:
`auto` (the default: the reference kernels until loading Numba's pays, then Numba's;
kernels/tiered.py), `numba` or `reference` throughout, so the two can be compared on the
same program, or `cuda-host`: the CUDA kernels compiled for the CPU and run one thread at
a time.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys

import numpy  # noqa: F401  (loads OpenBLAS, whose thread count is set below)

from . import contract, tiered

# Two thread pools could share the cores: OpenBLAS's (NumPy's GEMMs) and Numba's (minigrad's kernels).  An
# OpenBLAS worker spins for a while after each GEMM (how long, OpenBLAS reads once, as NumPy loads it), and
# on a small machine the spinning takes the cores from Numba's kernels: measured on 2 cores, with NumPy
# imported first, the small GoogLeNet's step 5.5x and GoogLeNet's batch-1 forward 3.6x the time.  So one pool
# owns the cores: Numba's.  `import minigrad` runs every OpenBLAS loaded by then (NumPy's, SciPy's) on one
# thread, the caller's: no worker is left to spin, whatever the program imported first, and minigrad's own
# GEMM (kernels/cpu/gemm.py) computes the products where threads pay.  The other remedy, OpenBLAS on its two
# threads with a short spin (OPENBLAS_THREAD_TIMEOUT=4), needs minigrad imported before NumPy; against it one
# thread measured alike (the small network's step 0.88-1.08x, GoogLeNet's batch-1 forward 1.02-1.04x the
# time, two runs of benchmarks.import_order: the machine's drift), and every import order can have it.
# Numba's OpenMP threads spin 10,000 rounds (GOMP's default is 300,000) before sleeping: about 100 us, the
# Python between two kernels of a step, while a sleeping thread takes 25-50 us to wake for each parallel
# launch (measured; a module's step has about 50).  With 1,000 rounds (about 20 us), alternating fresh
# processes five times: modules 3a-5b 1.02-1.12x and GoogLeNet's batch-8 forward and step 1.08x the time
# (BENCHMARKS.md).  GOMP reads its setting when Numba first launches its threads, long after any import.
# Numba's workqueue layer sleeps too but costs ~170 us per parallel launch, hundreds per training step.
# MINIGRAD_THREAD_SETTINGS=off leaves OpenBLAS and the environment alone.
THREAD_SETTINGS = {"GOMP_SPINCOUNT": "10000"}
_LEAVE_THREADS = os.environ.get("MINIGRAD_THREAD_SETTINGS", "on") == "off"
SET_HERE = [name for name in THREAD_SETTINGS if name not in os.environ and not _LEAVE_THREADS]  # unless chosen
for _name in SET_HERE:
    os.environ[_name] = THREAD_SETTINGS[_name]


def _openblas_thread_setters():
    """The thread-count setters of the OpenBLAS libraries loaded in this process (NumPy's, SciPy's), by their
    exported names (NumPy's wheels rename them: scipy_openblas_set_num_threads64_)."""
    import ctypes
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    except OSError:
        return []
    setters = []
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_"):
            if hasattr(library, name):
                setters.append(getattr(library, name))
                break
    return setters


_BLAS_SETTERS = _openblas_thread_setters()
BLAS_SERIAL = bool(_BLAS_SETTERS) and not _LEAVE_THREADS    # OpenBLAS on the caller's thread only (see above)
if BLAS_SERIAL:
    for _setter in _BLAS_SETTERS:
        _setter(1)


@contextlib.contextmanager
def blas_threads(count):
    """OpenBLAS (each one loaded when minigrad was imported) on `count` threads inside the block, then back on
    one where minigrad runs it so: for a benchmark's yardstick, numpy.matmul at its best."""
    for setter in _BLAS_SETTERS:
        setter(count)
    try:
        yield
    finally:
        for setter in _BLAS_SETTERS if BLAS_SERIAL else ():
            setter(1)


def _keep_freed_memory() -> bool:
    """Make glibc's malloc keep every freed block for the next allocation of the process.  By default it
    serves a large block (above a threshold that starts at 128 KiB and grows to at most 32 MiB) from a
    fresh mapping, unmapped when freed, and gives the top of its heap back to the system; the next call
    of the same layer then faults the same memory back in, a 2 MiB huge page at a time (NumPy asks for
    them), each zeroed and sometimes compacted for by the kernel.  Measured: GoogLeNet's batch-32 forward
    took 12,000-14,000 page faults a pass and up to 0.9 s of system time; with every block kept, none.  So no
    block is mapped apart (M_MMAP_MAX 0) and the heap is never trimmed (M_TRIM_THRESHOLD -1): the process
    keeps the memory of its largest step, as a caching allocator does.  MINIGRAD_ALLOCATOR_SETTINGS=off
    leaves glibc's defaults."""
    if sys.platform != "linux" or os.environ.get("MINIGRAD_ALLOCATOR_SETTINGS", "on") == "off":
        return False
    import ctypes

    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4            # glibc's <malloc.h>
    try:
        libc = ctypes.CDLL(None)                     # the C library this process runs on
        if not hasattr(libc, "gnu_get_libc_version"):
            return False                             # not glibc
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, -1))
    except (OSError, AttributeError):
        return False


ALLOCATOR_KEEPS_MEMORY = _keep_freed_memory()


def untouched_environment():
    """os.environ without minigrad's thread settings, and telling minigrad to leave the thread pools and
    the allocator alone: for a child process that times another library (PyTorch) under its own defaults."""
    env = {k: v for k, v in os.environ.items() if k not in SET_HERE}
    env["MINIGRAD_THREAD_SETTINGS"] = "off"
    env["MINIGRAD_ALLOCATOR_SETTINGS"] = "off"
    return env


KERNEL_FUNCTIONS = contract.FUNCTIONS                    # the functions every backend has (contract.py)

CPU_BACKENDS = {"numba": "kernels.cpu", "reference": "kernels.reference",
                "cuda-host": "kernels.cuda.host"}        # the CUDA sources run on the CPU (needs g++; slow)
_loaded = {}


def cpu_backend_name() -> str:
    """The CPU kernels in use, from MINIGRAD_KERNELS (default: auto)."""
    name = os.environ.get("MINIGRAD_KERNELS", "auto")
    if name not in CPU_BACKENDS and name != "auto":
        raise ValueError(f"MINIGRAD_KERNELS={name!r}: expected one of {sorted([*CPU_BACKENDS, 'auto'])}")
    return name


def cpu_backend(name=None):
    """The module of CPU kernels called `name` (default: the one MINIGRAD_KERNELS selects); for `auto`, the
    one that serves the next call (kernels/tiered.py)."""
    name = name or cpu_backend_name()
    if name == "auto":
        return TIERS.backend()
    if name not in _loaded:
        _loaded[name] = importlib.import_module(CPU_BACKENDS[name])   # Numba is imported only when used
    return _loaded[name]


def for_array(a):
    """The kernel module that computes on arrays of a's type (CuPy's is recognised by its
    module, so that nothing here imports CuPy)."""
    if type(a).__module__.partition(".")[0] == "cupy":
        if "cuda" not in _loaded:
            _loaded["cuda"] = importlib.import_module("kernels.cuda")
        return _loaded["cuda"]
    return cpu_backend()


TIERS = tiered.Tiered(lambda: cpu_backend("numba"))     # MINIGRAD_KERNELS=auto's state: one per process
