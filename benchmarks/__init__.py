"""Benchmarks of minigrad: run `python -m benchmarks`."""

import os

# The benchmarks time numpy.matmul beside minigrad's kernels as a yardstick, OpenBLAS on all its threads
# (kernels.blas_threads) although minigrad runs it on one.  A short spin after each of its GEMMs keeps its
# threads from spinning into the kernel timed next; OpenBLAS reads it only as NumPy loads it, so here, before.
# Child processes that time a program as a user runs it do not inherit it (timing.new_program_environment).
SET_HERE = [] if "OPENBLAS_THREAD_TIMEOUT" in os.environ else ["OPENBLAS_THREAD_TIMEOUT"]
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
# The benchmarks time the steady state: Numba's kernels from the first call, where by default a process
# starts on the reference kernels (kernels/tiered.py) and a few warm-up calls of a small layer would not
# reach the switch.  Children inherit it; a program's first output is timed without it (timing.first_run_environment).
KERNELS_SET_HERE = "MINIGRAD_KERNELS" not in os.environ
os.environ.setdefault("MINIGRAD_KERNELS", "numba")
