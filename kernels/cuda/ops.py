"""The CUDA backend's kernel functions: the kernel contract (kernels/contract.py), built from the CUDA
kernels in the .cu files (each named like the function it serves, or for its step: conv_output, add_pair)
and cuBLAS GEMMs.

`CudaKernels(xp, launch)` holds them for one array library: CuPy on a GPU (kernels.cuda), or
NumPy with the host emulation of the same CUDA sources (kernels.cuda.host), which is how the
tests prove the wrappers and the kernels' indexing on machines without a GPU.  Only array
calls that NumPy and CuPy share appear here.  Every array handed to a kernel is made
C-contiguous first, and the launcher checks dtypes and contiguity against the kernel's
signature, since the kernels themselves do no bounds checking.
"""

from __future__ import annotations

import functools
import operator

from .. import reference
from ..geometry import conv_out_size, pool_out_size

# Columns are built a chunk of images at a time, in a buffer of at most about this size: GoogLeNet's
# conv2 at batch 128 would otherwise need a 925 MB column matrix.
COLUMN_CHUNK_BYTES = 256 * 2**20


class CudaKernels:
    def __init__(self, xp, launch, column_chunk_bytes=None):
        self.xp, self.launch = xp, launch
        self.column_chunk_bytes = column_chunk_bytes or COLUMN_CHUNK_BYTES

    def _contiguous(self, a):
        return a if a.flags.c_contiguous else self.xp.ascontiguousarray(a)

    # ---- convolution ------------------------------------------------------------------------
    def _column_matrix(self, x, kernel_size, stride, padding, out_size, out=None):
        """(N, C, H, W) -> the column matrix (C*KH*KW, N*OH*OW), zero padding; into `out` if given."""
        n, c, h, w = x.shape
        (kh, kw), (oh, ow) = kernel_size, out_size
        cols = self.xp.empty((c * kh * kw, n * oh * ow), x.dtype) if out is None else out
        self.launch("im2col", x.dtype, cols.size, self._contiguous(x), n, c, h, w, kh, kw, *stride, *padding,
                    oh, ow, cols)
        return cols

    def _add_columns(self, cols, x_shape, kernel_size, stride, padding, out_size, out=None):
        """The column matrix (C*KH*KW, N*OH*OW) -> (N, C, H, W), summing overlaps; into `out` (contiguous)."""
        x = self.xp.empty(x_shape, cols.dtype) if out is None else out
        self.launch("col2im", cols.dtype, x.size, self._contiguous(cols), *x_shape, *kernel_size, *stride, *padding,
                    *out_size, x)
        return x

    def im2col(self, x, kernel_size, stride, padding, out_size):
        """The contract's (N, C, KH, KW, OH, OW) columns: a view of the column matrix the convolution uses."""
        n, c = x.shape[:2]
        cols = self._column_matrix(x, kernel_size, stride, padding, out_size)
        return cols.reshape(c, *kernel_size, n, *out_size).transpose(3, 0, 1, 2, 4, 5)

    def col2im(self, cols, x_shape, stride, padding):
        """im2col's transpose, from the contract's (N, C, KH, KW, OH, OW) columns."""
        n, c, kh, kw, oh, ow = cols.shape
        matrix = self._contiguous(cols.transpose(1, 2, 3, 0, 4, 5)).reshape(c * kh * kw, n * oh * ow)
        return self._add_columns(matrix, x_shape, (kh, kw), stride, padding, (oh, ow))

    def _chunks(self, x_shape, kernel_size, out_size, itemsize):
        n, c = x_shape[:2]
        per_image = c * kernel_size[0] * kernel_size[1] * out_size[0] * out_size[1] * itemsize
        step = max(1, min(n, self.column_chunk_bytes // max(per_image, 1)))
        return [(start, min(n, start + step)) for start in range(0, n, step)]

    def conv2d_forward(self, x, weight, bias, stride, padding, relu=False, saved=None, weight_cache=None):
        """y = weight @ columns per chunk of images, moved to NCHW with the bias (and ReLU) added.
        Keeps nothing in `saved` (not measured on a GPU): the backward rebuilds its columns; nothing
        derived from the weight either (weight_cache): the GEMM reads it as it is."""
        xp = self.xp
        x = self._contiguous(x)
        n, c, h, w = x.shape
        o, _, kh, kw = weight.shape
        oh, ow = conv_out_size(h, kh, stride[0], padding[0]), conv_out_size(w, kw, stride[1], padding[1])
        weight_matrix = self._contiguous(weight).reshape(o, -1)
        bias = None if bias is None else self._contiguous(bias)
        y = xp.empty((n, o, oh, ow), x.dtype)
        cols = None
        for start, stop in self._chunks(x.shape, (kh, kw), (oh, ow), x.dtype.itemsize):
            reuse = cols is not None and cols.shape[1] == (stop - start) * oh * ow
            cols = self._column_matrix(x[start:stop], (kh, kw), stride, padding, (oh, ow), cols if reuse else None)
            y2 = xp.matmul(weight_matrix, cols)                         # (O, chunk*OH*OW): one GEMM
            self.launch("conv_output", x.dtype, (stop - start) * o * oh * ow, y2,
                        y2 if bias is None else bias, bias is not None, relu, stop - start, o, oh * ow, y[start:stop])
        return y

    def conv2d_backward(self, x, weight, grad_y, stride, padding, need_input_grad=True, relu_output=None,
                        saved=None, weight_cache=None):
        """(grad_x or None, grad_weight, grad_bias).  With relu_output (the output of a fused
        conv+ReLU), the gradient is first zeroed where that output was not positive."""
        xp = self.xp
        x, grad_y = self._contiguous(x), self._contiguous(grad_y)
        o, c, kh, kw = weight.shape
        n, _, oh, ow = grad_y.shape
        p = oh * ow
        weight_t = self._contiguous(weight).reshape(o, -1).T
        mask = grad_y if relu_output is None else self._contiguous(relu_output)
        grad_weight = xp.zeros((o, c * kh * kw), x.dtype)
        grad_bias = xp.zeros(o, x.dtype)
        grad_x = xp.empty(x.shape, x.dtype) if need_input_grad else None
        chunks = self._chunks(x.shape, (kh, kw), (oh, ow), x.dtype.itemsize)
        ones = xp.ones((chunks[0][1] - chunks[0][0]) * p, x.dtype)     # the bias gradient as a GEMV
        cols = None
        for start, stop in chunks:
            count = stop - start
            grad_y2 = xp.empty((o, count * p), x.dtype)
            self.launch("conv_grad_output", x.dtype, grad_y2.size, grad_y[start:stop], mask[start:stop],
                        relu_output is not None, count, o, p, grad_y2)
            reuse = cols is not None and cols.shape[1] == count * p
            cols = self._column_matrix(x[start:stop], (kh, kw), stride, padding, (oh, ow), cols if reuse else None)
            grad_weight += xp.matmul(grad_y2, cols.T)
            grad_bias += xp.matmul(grad_y2, ones[:count * p])
            if need_input_grad:
                self._add_columns(xp.matmul(weight_t, grad_y2), (count, c, *x.shape[2:]), (kh, kw), stride, padding,
                            (oh, ow), grad_x[start:stop])
        return grad_x, grad_weight.reshape(weight.shape), grad_bias

    # ---- pooling ----------------------------------------------------------------------------------
    @staticmethod
    def _pool_out(shape, kernel_size, stride, padding, ceil_mode):
        return tuple(pool_out_size(shape[2 + d], kernel_size[d], stride[d], padding[d], ceil_mode) for d in range(2))

    def max_pool2d_forward(self, x, kernel_size, stride, padding, ceil_mode):
        x = self._contiguous(x)
        n, c, h, w = x.shape
        oh, ow = self._pool_out(x.shape, kernel_size, stride, padding, ceil_mode)
        y = self.xp.empty((n, c, oh, ow), x.dtype)
        argmax = self.xp.empty((n, c, oh, ow), "int32")
        self.launch("max_pool2d_forward", x.dtype, y.size, x, h, w, *kernel_size, *stride, *padding, oh, ow, y, argmax)
        return y, argmax

    def max_pool2d_backward(self, grad_y, argmax, x_shape, kernel_size, stride, padding, ceil_mode):
        grad_x = self.xp.empty(x_shape, grad_y.dtype)
        oh, ow = grad_y.shape[2:]
        self.launch("max_pool2d_backward", grad_y.dtype, grad_x.size, self._contiguous(grad_y), self._contiguous(argmax),
                    *x_shape[2:], *kernel_size, *stride, *padding, oh, ow, grad_x)
        return grad_x

    def avg_pool2d_forward(self, x, kernel_size, stride, padding, ceil_mode, count_include_pad):
        x = self._contiguous(x)
        n, c, h, w = x.shape
        oh, ow = self._pool_out(x.shape, kernel_size, stride, padding, ceil_mode)
        y = self.xp.empty((n, c, oh, ow), x.dtype)
        self.launch("avg_pool2d_forward", x.dtype, y.size, x, h, w, *kernel_size, *stride, *padding, oh, ow,
                    count_include_pad, y)
        return y

    def avg_pool2d_backward(self, grad_y, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
        grad_x = self.xp.empty(x_shape, grad_y.dtype)
        oh, ow = grad_y.shape[2:]
        self.launch("avg_pool2d_backward", grad_y.dtype, grad_x.size, self._contiguous(grad_y), *x_shape[2:],
                    *kernel_size, *stride, *padding, oh, ow, count_include_pad, grad_x)
        return grad_x

    # ---- ReLU and LRN ---------------------------------------------------------------------------------
    def relu_forward(self, x):
        x = self._contiguous(x)
        y = self.xp.empty_like(x)
        self.launch("relu_forward", x.dtype, x.size, x, y)
        return y

    def relu_backward(self, grad_y, y):
        grad_x = self.xp.empty(y.shape, grad_y.dtype)
        self.launch("relu_backward", grad_y.dtype, y.size, self._contiguous(grad_y), self._contiguous(y), grad_x)
        return grad_x

    @staticmethod
    def _channels_and_pixels(shape):
        pixels = 1
        for side in shape[2:]:
            pixels *= side
        return shape[1], pixels

    def lrn_forward(self, x, size, alpha, beta, k):
        x = self._contiguous(x)
        y, scale = self.xp.empty_like(x), self.xp.empty_like(x)
        self.launch("lrn_forward", x.dtype, x.size, x, *self._channels_and_pixels(x.shape), size, alpha, beta, k,
                    y, scale)
        return y, scale

    def lrn_backward(self, x, y, scale, grad_y, size, alpha, beta, k):
        grad_x = self.xp.empty(x.shape, grad_y.dtype)
        c = self._contiguous
        self.launch("lrn_backward", grad_y.dtype, grad_x.size, c(x), c(y), c(scale), c(grad_y),
                    *self._channels_and_pixels(x.shape), size, alpha, beta, k, grad_x)
        return grad_x

    # ---- batch normalisation -------------------------------------------------------------------------
    BATCH_NORM_CHUNK = 4096          # values per partial result of a channel's reductions

    def _chunks_of(self, count):
        return -(-count // self.BATCH_NORM_CHUNK)

    def batch_norm_forward(self, x, weight, bias, running_mean, running_var, training, momentum, eps, relu=False):
        """The statistics by chunks combined in order (batch_norm_chunk_statistics, batch_norm_combine), the
        running statistics updated with the reference's arithmetic, then one elementwise pass."""
        xp = self.xp
        x = self._contiguous(x)
        n, c = x.shape[:2]
        p = x.size // max(n * c, 1)
        count = n * p
        if training or running_mean is None:
            chunks = self._chunks_of(count)
            partial_mean, partial_m2 = xp.empty(c * chunks, x.dtype), xp.empty(c * chunks, x.dtype)
            self.launch("batch_norm_chunk_statistics", x.dtype, c * chunks, x, c, p, count, self.BATCH_NORM_CHUNK,
                        partial_mean, partial_m2)
            mean, var = xp.empty(c, x.dtype), xp.empty(c, x.dtype)
            self.launch("batch_norm_combine", x.dtype, c, partial_mean, partial_m2, chunks, count, self.BATCH_NORM_CHUNK,
                        mean, var)
            if training and running_mean is not None:
                reference.update_running_statistics(running_mean, running_var, mean, var, count, momentum)
        else:
            mean, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
        invstd = (1 / xp.sqrt(var + eps)).astype(x.dtype)
        scale = invstd if weight is None else (invstd * weight).astype(x.dtype)
        bias = xp.zeros(c, x.dtype) if bias is None else bias.astype(x.dtype)
        y = xp.empty_like(x)
        self.launch("batch_norm_apply", x.dtype, x.size, x, c, p, self._contiguous(mean), self._contiguous(scale),
                    self._contiguous(bias), bool(relu), y)
        return y, mean, invstd

    def batch_norm_backward(self, grad_y, x, weight, mean, invstd, training, relu_output=None):
        xp = self.xp
        x, grad_y = self._contiguous(x), self._contiguous(grad_y)
        n, c = x.shape[:2]
        p = x.size // max(n * c, 1)
        count, chunks = n * p, self._chunks_of(n * p)
        mask = grad_y if relu_output is None else self._contiguous(relu_output)
        partial_sum, partial_product, partial_shift = (xp.empty(c * chunks, x.dtype) for _ in range(3))
        self.launch("batch_norm_chunk_gradients", x.dtype, c * chunks, grad_y, mask, relu_output is not None, x,
                    self._contiguous(mean), c, p, count, self.BATCH_NORM_CHUNK, partial_sum, partial_product,
                    partial_shift)
        grad_bias, centred, shift = (xp.empty(c, x.dtype) for _ in range(3))
        self.launch("channel_sums", x.dtype, c, partial_sum, chunks, grad_bias)
        self.launch("channel_sums", x.dtype, c, partial_product, chunks, centred)
        self.launch("channel_sums", x.dtype, c, partial_shift, chunks, shift)
        covariance = centred - grad_bias / count * shift                 # sum((g - mean g) * (x - mean)), as on the CPU
        k1 = invstd if weight is None else invstd * weight              # grad_x = (g - mean g)*k1 + (x - mean)*k2
        k2 = -k1 * invstd * invstd * covariance / count if training else xp.zeros(c, x.dtype)
        grad_x = xp.empty_like(x)
        self.launch("batch_norm_input_gradient", x.dtype, x.size, grad_y, mask, relu_output is not None, x,
                    self._contiguous(mean), self._contiguous((grad_bias / count).astype(x.dtype)), c, p,
                    self._contiguous(k1.astype(x.dtype)), self._contiguous(k2.astype(x.dtype)), bool(training), grad_x)
        return grad_x, (centred * invstd).astype(x.dtype), grad_bias

    # ---- concatenation along channels ----------------------------------------------------------------
    def _copies_channels(self, a, axis):
        """The channel-copy kernel handles floating arrays along axis 1; anything else goes to xp."""
        return axis == 1 and a.ndim >= 2 and a.dtype.kind == "f"

    def concat(self, arrays, axis=1):
        first = arrays[0]
        if not self._copies_channels(first, axis):
            return self.xp.concatenate(arrays, axis=axis)
        total = sum(a.shape[1] for a in arrays)
        out = self.xp.empty((first.shape[0], total, *first.shape[2:]), first.dtype)
        _, pixels = self._channels_and_pixels(first.shape)
        offset = 0
        for a in arrays:
            self.launch("copy_channels", a.dtype, a.size, self._contiguous(a), a.shape[1], 0, a.shape[1], pixels,
                        out, total, offset)
            offset += a.shape[1]
        return out

    def split(self, array, sizes, axis=1):
        if not self._copies_channels(array, axis):
            bounds = [sum(sizes[:i + 1]) for i in range(len(sizes) - 1)]
            return self.xp.split(array, bounds, axis=axis)
        array = self._contiguous(array)
        _, pixels = self._channels_and_pixels(array.shape)
        pieces, offset = [], 0
        for size in sizes:
            piece = self.xp.empty((array.shape[0], size, *array.shape[2:]), array.dtype)
            self.launch("copy_channels", array.dtype, piece.size, array, array.shape[1], offset, size, pixels,
                        piece, size, 0)
            pieces.append(piece)
            offset += size
        return pieces

    # ---- summing the gradients that meet at one tensor ----------------------------------------------
    def add_n(self, arrays):
        """arrays[0] + arrays[1] + ..., in that order (other dtypes and mixed shapes: xp's own add)."""
        first = arrays[0]
        if first.dtype.char not in "fd" or any(a.dtype != first.dtype or a.shape != first.shape for a in arrays):
            return functools.reduce(operator.add, arrays)
        out = self.xp.empty(first.shape, first.dtype)
        total = self._contiguous(first)
        for a in arrays[1:]:
            self.launch("add_pair", first.dtype, out.size, total, self._contiguous(a), out)
            total = out
        return out

    # ---- the optimizer's update ---------------------------------------------------------------------
    def sgd_update(self, param, grad, buffer, lr, momentum, weight_decay, nesterov):
        """kernels.reference.sgd_update in one kernel, in place, when param (and the buffer) are contiguous
        float arrays of one dtype and shape; else the reference's arithmetic, on xp's arrays."""
        if not reference.fits_one_pass(param, grad, buffer):
            return reference.sgd_update(param, grad, buffer, lr, momentum, weight_decay, nesterov)
        first_step = momentum != 0 and buffer is None
        if first_step:
            buffer = self.xp.empty(param.shape, param.dtype)
        self.launch("sgd_update", param.dtype, param.size, param, self._contiguous(grad),
                    buffer if momentum else param, lr, momentum, weight_decay, momentum != 0, nesterov, first_step)
        return param, (buffer if momentum else None)
