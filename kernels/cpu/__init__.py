"""CPU kernels in Numba: the same functions, names and signatures as kernels.reference.

Each kernel takes and returns NumPy arrays.  Images are kept channels-last in memory (layout.py):
inputs in any layout are accepted, outputs are NCHW-shaped views of NHWC memory.  The wrappers
lay the inputs out and allocate outputs from the (already validated) geometry before any compiled
code runs, since the compiled loops do no bounds checking.
"""

from .conv import col2im, conv2d_backward, conv2d_forward, im2col
from .elementwise import add_n, concat, lrn_backward, lrn_forward, relu_backward, relu_forward, sgd_update, split
from .pool import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "max_pool2d_forward", "max_pool2d_backward",
           "avg_pool2d_forward", "avg_pool2d_backward", "relu_forward", "relu_backward", "lrn_forward",
           "lrn_backward", "concat", "split", "add_n", "sgd_update"]
