"""The one decorator every CPU kernel uses: Numba's njit with an on-disk cache.

Compiled machine code is cached (NUMBA_CACHE_DIR if set, else __pycache__ beside
the source, else the user's cache directory), so the compile cost of the first
call is paid once per machine.  Where no cache location is writable, the kernels
still compile, just on every new process.
"""

from __future__ import annotations

import warnings

from numba import njit
from numba.core.errors import NumbaWarning


def kernel(parallel: bool = False, inline: bool = False):
    """inline=True: a helper that Numba pastes into its callers (at its IR level).  A helper compiled
    on its own receives slices as arrays of unknown stride, and its loops do not vectorise."""
    options = dict(parallel=parallel, nogil=True, inline="always" if inline else "never")

    def decorate(function):
        try:
            return njit(cache=True, **options)(function)
        except RuntimeError:                 # "cannot cache function ...: no locator available"
            warnings.warn(f"minigrad: no writable Numba cache directory; {function.__name__} will be "
                          "compiled in every process (set NUMBA_CACHE_DIR)", NumbaWarning, stacklevel=2)
            return njit(cache=False, **options)(function)
    return decorate

