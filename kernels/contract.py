"""The kernel contract: the functions every backend has, with these names, arguments and meanings.

The engine picks a backend by the array's type alone (kernels.for_array) and calls it the same way
whatever it is, so every backend (kernels.reference, kernels.cpu, kernels.cuda, and the CUDA sources run
on the CPU by kernels.cuda.host) defines exactly the functions below, with the same parameters in the same
order (tests/test_kernels.py checks it against every backend).  This class is that list, written once.

Conventions for every backend:
- Images are (N, C, H, W) and filters (O, C, KH, KW) by shape; kernel_size, stride and padding are
  (height, width) pairs, already validated (minigrad/checks.py): the fast kernels do no bounds checks.
- Memory layout is not meaning: a backend may return any strides for a given shape (the CPU kernels keep
  images channels-last in memory, kernels/cpu/layout.py) and must accept any.  Values and shapes agree
  between backends, and only they are compared.
- Results are new arrays, never views of an input (the engine keeps gradients without copying them), except
  split's pieces, which may be views.
"""

from __future__ import annotations

import inspect


class KernelBackend:
    """The functions of a kernel backend.  Their bodies live in the backends; kernels/reference.py is the
    readable definition of each."""

    def im2col(self, x, kernel_size, stride, padding, out_size):
        """Every window of x as columns: an (N, C, KH, KW, OH, OW) array with
        cols[n, c, i, j, oh, ow] = x_padded[n, c, oh*SH + i, ow*SW + j] (0 in the padding)."""

    def col2im(self, cols, x_shape, stride, padding):
        """im2col's transpose: every entry of cols (N, C, KH, KW, OH, OW) added onto the pixel it came from."""

    def conv2d_forward(self, x, weight, bias, stride, padding, relu=False, saved=None, weight_cache=None):
        """The convolution (a cross-correlation) plus bias, clamped at 0 with relu.  saved: a dict the
        backward will receive (None: no backward follows); a backend may keep what its backward needs there.
        weight_cache: a dict that stays with this weight array for as long as its values cannot change
        (None: they may change between calls); a backend may keep there what it would otherwise derive from
        the weight at every call, and must find there only what it put."""

    def conv2d_backward(self, x, weight, grad_y, stride, padding, need_input_grad=True, relu_output=None, saved=None,
                        weight_cache=None):
        """(grad_x or None, grad_weight, grad_bias); relu_output: the output of a forward with relu=True,
        whose mask applies to grad_y first; weight_cache: as conv2d_forward's."""

    def max_pool2d_forward(self, x, kernel_size, stride, padding, ceil_mode):
        """(y, argmax): the max of each window (padding reads as -inf) and an int32 array of y's shape holding
        the winner's index h*W + w in its plane: the first cell of the window, in row-major order, holding the
        maximum (the first NaN, if any), never the padding."""

    def max_pool2d_backward(self, grad_y, argmax, x_shape, kernel_size, stride, padding, ceil_mode):
        """Each output's gradient onto the pixel argmax names, summed where a pixel wins several windows."""

    def avg_pool2d_forward(self, x, kernel_size, stride, padding, ceil_mode, count_include_pad):
        """The mean of each window, divided as geometry.avg_pool_divisor says."""

    def avg_pool2d_backward(self, grad_y, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
        """Each output's gradient, divided by its divisor, spread over its window."""

    def relu_forward(self, x):
        """max(x, 0); NaN passes."""

    def relu_backward(self, grad_y, y):
        """grad_y where the output y is positive, else 0."""

    def lrn_forward(self, x, size, alpha, beta, k):
        """(y, scale): local response normalisation across channels, scale = k + alpha/size * (sum of x^2 over
        size//2 channels before and (size-1)//2 after)."""

    def lrn_backward(self, x, y, scale, grad_y, size, alpha, beta, k):
        """The input's gradient of lrn_forward."""

    def batch_norm_forward(self, x, weight, bias, running_mean, running_var, training, momentum, eps, relu=False):
        """(y, mean, invstd): each channel of x (N, C, H, W) normalised by the batch's statistics (training, or
        no running statistics) or the running ones, then * weight + bias (None: 1 and 0), clamped at 0 with
        relu; in training the running statistics (when given) are updated in place, the variance unbiased.
        mean and invstd (1 / sqrt(var + eps)), in x's dtype, are the statistics used, for the backward.  The
        reductions run in a fixed order: the same input gives the same bits."""

    def batch_norm_backward(self, grad_y, x, weight, mean, invstd, training, relu_output=None):
        """(grad_x, grad_weight, grad_bias); training: the statistics were the batch's (they depend on x)."""

    def concat(self, arrays, axis=1):
        """The arrays joined along axis."""

    def split(self, array, sizes, axis=1):
        """Consecutive pieces of the given sizes along axis (views where the backend allows)."""

    def add_n(self, arrays):
        """arrays[0] + arrays[1] + ..., in that order (the gradients that meet at one tensor)."""

    def sgd_update(self, param, grad, buffer, lr, momentum, weight_decay, nesterov):
        """One SGD step in place, by PyTorch's rule; returns (param, buffer)."""


FUNCTIONS = tuple(name for name, value in vars(KernelBackend).items() if inspect.isfunction(value))


def parameters(name):
    """The parameter names of contract function `name`, in order (self left out)."""
    return list(inspect.signature(getattr(KernelBackend, name)).parameters)[1:]
