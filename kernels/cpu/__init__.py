"""CPU kernels in Numba: the functions of the kernel contract (kernels/contract.py).

Each kernel takes and returns NumPy arrays.  Images are kept channels-last in memory (layout.py):
inputs in any layout are accepted, outputs are NCHW-shaped views of NHWC memory.  The wrappers
lay the inputs out and allocate outputs from the (already validated) geometry before any compiled
code runs, since the compiled loops do no bounds checking.
"""

from ..contract import FUNCTIONS

# the contract's functions (__all__ below; tests/test_kernels.py checks that they are all here)
from .conv import col2im, conv2d_backward, conv2d_forward, im2col  # noqa: F401
from .elementwise import add_n, concat, lrn_backward, lrn_forward, relu_backward, relu_forward, sgd_update, split  # noqa: F401
from .norm import batch_norm_backward, batch_norm_forward  # noqa: F401
from .pool import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward  # noqa: F401

__all__ = list(FUNCTIONS)
