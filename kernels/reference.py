"""Reference kernels in plain NumPy: the readable definition of every op.

This is the file to open to learn how a convolutional network is computed.
Every function takes arrays and returns arrays; nothing here knows about tensors
or autograd.  The fast kernels (Numba on the CPU, CUDA on the GPU) have the same
names and signatures and are tested against these.

Layouts: images are NCHW (batch, channels, height, width), convolution weights
OIHW (out channels, in channels, kernel height, kernel width).  Geometry
arguments (kernel_size, stride, padding) are (height, width) pairs.  The kernels
trust their arguments: the engine validates them first.
"""

from __future__ import annotations

import numpy as np

from .geometry import avg_pool_divisor, conv_out_size, padded_extent, pool_out_size

# --------------------------------------------------------------------------
# im2col / col2im: turn every sliding window into a column, and back
# --------------------------------------------------------------------------

def im2col(x, kernel_size, stride, padding, out_size):
    """Gather every window of x into columns.

    Returns cols of shape (N, C, KH, KW, OH, OW) with
        cols[n, c, i, j, oh, ow] = x_padded[n, c, oh*SH + i, ow*SW + j],
    i.e. for each kernel offset (i, j) the input pixels that this offset of the
    kernel touches at every output position.  Padding reads as 0.
    """
    return _windows(x, kernel_size, stride, padding, out_size, 0.0)


def _windows(x, kernel_size, stride, padding, out_size, fill_value):
    """im2col with the padding read as `fill_value` (-inf for max pooling)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel_size, stride, padding, out_size
    hp = padded_extent(h, kh, sh, ph, oh)
    wp = padded_extent(w, kw, sw, pw, ow)
    x_padded = np.full((n, c, hp, wp), fill_value, dtype=x.dtype)
    x_padded[:, :, ph:ph + h, pw:pw + w] = x
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):          # one strided slice per kernel offset: KH*KW copies
        for j in range(kw):
            cols[:, :, i, j] = x_padded[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
    return cols


def col2im(cols, x_shape, stride, padding):
    """The transpose of im2col: add every column entry back onto the pixel it
    came from.  Pixels covered by several windows receive the sum."""
    n, c, h, w = x_shape
    _, _, kh, kw, oh, ow = cols.shape
    (sh, sw), (ph, pw) = stride, padding
    hp = padded_extent(h, kh, sh, ph, oh)
    wp = padded_extent(w, kw, sw, pw, ow)
    x_padded = np.zeros((n, c, hp, wp), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            x_padded[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += cols[:, :, i, j]
    return x_padded[:, :, ph:ph + h, pw:pw + w]


def _column_matrix(cols):
    """(N, C, KH, KW, OH, OW) -> (C*KH*KW, N*OH*OW): one row per weight, one column per output pixel."""
    n, c, kh, kw, oh, ow = cols.shape
    return cols.transpose(1, 2, 3, 0, 4, 5).reshape(c * kh * kw, n * oh * ow)


# --------------------------------------------------------------------------
# Convolution = im2col + one matrix product
# --------------------------------------------------------------------------

def conv2d_forward(x, weight, bias, stride, padding, relu=False, saved=None, weight_cache=None):
    """y[n, o] = sum over c, i, j of weight[o, c, i, j] * x_padded[n, c, oh*SH + i, ow*SW + j] + bias[o].

    As a GEMM: (O, C*KH*KW) @ (C*KH*KW, N*OH*OW) -> (O, N*OH*OW).  With relu=True the
    result is clamped at 0 (the fast kernels do that in the pass that adds the bias).
    saved: a dict that conv2d_backward will receive (None when no backward follows).  A fast
    kernel may leave its columns there; the reference keeps nothing and rebuilds them.
    weight_cache: a dict that stays with a weight whose values cannot change, where a fast kernel keeps
    forms of it made once (Winograd's transformed filters); the reference uses the weight as it is.
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    out = (conv_out_size(h, kh, stride[0], padding[0]), conv_out_size(w, kw, stride[1], padding[1]))
    cols = im2col(x, (kh, kw), stride, padding, out)
    y = weight.reshape(o, -1) @ _column_matrix(cols)
    if bias is not None:
        y += bias[:, None]
    if relu:
        y = relu_forward(y)
    return np.ascontiguousarray(y.reshape(o, n, *out).transpose(1, 0, 2, 3))


def conv2d_backward(x, weight, grad_y, stride, padding, need_input_grad=True, relu_output=None, saved=None,
                    weight_cache=None):
    """Gradients of conv2d_forward: (grad_x or None, grad_weight, grad_bias).

    grad_weight = grad_y_matrix @ columns^T   (O, N*OH*OW) @ (N*OH*OW, C*KH*KW)
    grad_cols   = weight_matrix^T @ grad_y_matrix, then col2im puts each column
                  entry back on its pixel
    grad_bias   = grad_y summed over batch and space
    relu_output: the output of a convolution run with relu=True; the gradient passes
    only where it is positive (ReLU's backward) before the three products above.
    saved: the dict given to conv2d_forward, or None; weight_cache: as conv2d_forward's.
    """
    if relu_output is not None:
        grad_y = relu_backward(grad_y, relu_output)
    o, c, kh, kw = weight.shape
    n, _, oh, ow = grad_y.shape
    grad_y_matrix = grad_y.transpose(1, 0, 2, 3).reshape(o, n * oh * ow)
    cols = im2col(x, (kh, kw), stride, padding, (oh, ow))
    grad_weight = (grad_y_matrix @ _column_matrix(cols).T).reshape(weight.shape)
    grad_bias = grad_y.sum(axis=(0, 2, 3))
    grad_x = None
    if need_input_grad:
        grad_cols = weight.reshape(o, -1).T @ grad_y_matrix
        grad_cols = grad_cols.reshape(c, kh, kw, n, oh, ow).transpose(3, 0, 1, 2, 4, 5)
        grad_x = np.ascontiguousarray(col2im(grad_cols, x.shape, stride, padding))
    return grad_x, grad_weight, grad_bias


# --------------------------------------------------------------------------
# Pooling: the same windows, reduced by max or mean instead of a dot product
# --------------------------------------------------------------------------

def _pool_out(x_shape, kernel_size, stride, padding, ceil_mode):
    return tuple(pool_out_size(x_shape[2 + d], kernel_size[d], stride[d], padding[d], ceil_mode)
                 for d in range(2))


def max_pool2d_forward(x, kernel_size, stride, padding, ceil_mode):
    """Max over each window, and where it was.

    Returns (y, argmax): argmax[n, c, oh, ow] (int32) is the flat index h*W + w of the
    input pixel that won: the first input pixel (row-major window order) holding
    the maximum, as in PyTorch and Caffe.  Padding reads as -inf and is never
    picked, even when the window's real values are all -inf or NaN.
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    oh, ow = _pool_out(x.shape, kernel_size, stride, padding, ceil_mode)
    windows = _windows(x, kernel_size, stride, padding, (oh, ow), -np.inf).reshape(n, c, kh * kw, oh, ow)
    inside = _windows(np.ones((1, 1, h, w), bool), kernel_size, stride, padding, (oh, ow), False)
    inside = inside.reshape(1, 1, kh * kw, oh, ow)       # which window cells are real pixels
    y = windows.max(axis=2)                              # NaN, if any, propagates
    same = (windows == y[:, :, None]) | (np.isnan(windows) & np.isnan(y[:, :, None]))
    offset = (same & inside).argmax(axis=2)              # the first real cell holding the maximum
    i, j = np.divmod(offset, kw)                         # window cell -> input row and column
    rows = np.arange(oh)[:, None] * sh - ph + i
    columns = np.arange(ow)[None, :] * sw - pw + j
    return y, (rows * w + columns).astype(np.int32)


def max_pool2d_backward(grad_y, argmax, x_shape, kernel_size, stride, padding, ceil_mode):
    """Each output's gradient goes to the one input pixel that won its window;
    a pixel that wins several overlapping windows receives the sum.  (Scattering by
    argmax needs no geometry; the GPU kernel gathers per pixel over the windows that
    cover it, which does, so every backend takes it.)"""
    n, c, h, w = x_shape
    grad_x = np.zeros((n, c, h * w), dtype=grad_y.dtype)
    batch = np.arange(n)[:, None, None]
    channel = np.arange(c)[None, :, None]
    np.add.at(grad_x, (batch, channel, argmax.reshape(n, c, -1)), grad_y.reshape(n, c, -1))
    return grad_x.reshape(x_shape)


def avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """Mean over each window; see geometry.avg_pool_divisor for what a window counts."""
    out = _pool_out(x.shape, kernel_size, stride, padding, ceil_mode)
    cols = im2col(x, kernel_size, stride, padding, out)
    divisor = avg_pool_divisor(x.shape[2:], kernel_size, stride, padding, out, count_include_pad)
    return (cols.sum(axis=(2, 3)) / divisor).astype(x.dtype)


def avg_pool2d_backward(grad_y, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """Each output's gradient, divided by its divisor, is spread over its window."""
    n, c, oh, ow = grad_y.shape
    divisor = avg_pool_divisor(x_shape[2:], kernel_size, stride, padding, (oh, ow), count_include_pad)
    share = (grad_y / divisor).astype(grad_y.dtype)
    grad_cols = np.broadcast_to(share[:, :, None, None], (n, c, *kernel_size, oh, ow))
    return np.ascontiguousarray(col2im(grad_cols, x_shape, stride, padding))


# --------------------------------------------------------------------------
# ReLU
# --------------------------------------------------------------------------

def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(grad_y, y):
    """The gradient passes where the output is positive (the input was > 0)."""
    return np.where(y > 0, grad_y, 0).astype(grad_y.dtype)


# --------------------------------------------------------------------------
# Local response normalisation across channels (AlexNet, GoogLeNet's stem)
# --------------------------------------------------------------------------

def _channel_window_sum(a, before, after):
    """s[:, c] = a[:, c - before] + ... + a[:, c + after], channels outside the range read as 0.

    One shifted add per window offset (a running cumsum would be faster but loses
    precision when large values are subtracted back out)."""
    total = np.zeros_like(a)
    channels = a.shape[1]
    # offsets beyond +-(channels - 1) reach no channel (a huge window must not mean a huge loop)
    for offset in range(max(-before, 1 - channels), min(after, channels - 1) + 1):
        lo, hi = max(0, -offset), min(channels, channels - offset)   # c with 0 <= c + offset < channels
        if lo < hi:
            total[:, lo:hi] += a[:, lo + offset:hi + offset]
    return total


def lrn_forward(x, size, alpha, beta, k):
    """y = x / scale**beta with scale = k + alpha/size * (sum of x**2 over `size`
    neighbouring channels: size//2 before, (size-1)//2 after; PyTorch's and Caffe's
    definition).  Returns (y, scale); the backward pass reuses scale."""
    scale = k + (alpha / size) * _channel_window_sum(x * x, size // 2, (size - 1) // 2)
    return x * scale ** -beta, scale


def lrn_backward(x, y, scale, grad_y, size, alpha, beta, k):
    """d/dx_c: grad_y_c * scale_c**-beta, minus 2*alpha*beta/size * x_c times the
    sum, over every channel j whose window holds c, of grad_y_j * y_j / scale_j.
    Channel j's window holds c when c - (size-1)//2 <= j <= c + size//2."""
    ratio = grad_y * y / scale
    spread = _channel_window_sum(ratio, (size - 1) // 2, size // 2)
    return grad_y * scale ** -beta - (2.0 * alpha * beta / size) * x * spread


# --------------------------------------------------------------------------
# Batch normalisation (Ioffe and Szegedy): each channel to zero mean and unit variance
# --------------------------------------------------------------------------

def batch_norm_statistics(x):
    """(mean, biased variance) of each channel of x (N, C, H, W), in float64."""
    wide = x.astype(np.float64)
    mean = wide.mean(axis=(0, 2, 3))
    return mean, np.square(wide - mean[None, :, None, None]).mean(axis=(0, 2, 3))


def update_running_statistics(running_mean, running_var, mean, var, count, momentum):
    """In place: running = (1 - momentum) * running + momentum * the batch's statistic, the variance
    unbiased (count / (count - 1)), as PyTorch does; rounded in the running statistics' dtype."""
    running_mean *= 1 - momentum
    running_mean += (momentum * mean).astype(running_mean.dtype)
    running_var *= 1 - momentum
    running_var += (momentum * var * count / max(count - 1, 1)).astype(running_var.dtype)


def batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps, relu=False):
    """y = (x - mean) / sqrt(var + eps) * weight + bias per channel (weight, bias None: 1 and 0), clamped at 0
    with relu.  The statistics are the batch's (over N, H and W; the variance biased) in training, or when
    there are no running statistics; else the running ones.  Training with running statistics updates them
    in place (update_running_statistics).  Returns (y, mean, invstd), the statistics used (invstd =
    1 / sqrt(var + eps)) in x's dtype, for the backward."""
    if training or running_mean is None:
        mean, var = batch_norm_statistics(x)
        if training and running_mean is not None:
            update_running_statistics(running_mean, running_var, mean, var, x.size // x.shape[1], momentum)
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    invstd = 1.0 / np.sqrt(var + eps)
    scale = invstd * (1.0 if weight is None else weight)
    bias = 0.0 if bias is None else bias[None, :, None, None]
    y = ((x - mean[None, :, None, None]) * scale[None, :, None, None] + bias).astype(x.dtype)
    if relu:
        y = relu_forward(y)
    return y, mean.astype(x.dtype), invstd.astype(x.dtype)


def batch_norm_backward(grad_y, x, weight, mean, invstd, training, relu_output=None):
    """(grad_x, grad_weight, grad_bias) of batch_norm_forward.  With batch statistics (training: the mean and
    variance depend on x), with M values per channel and xhat = (x - mean) * invstd:
        grad_x = weight * invstd * (g - sum(g) / M - xhat * sum(g * xhat) / M)
    else (running statistics, constants): grad_x = g * weight * invstd.  grad_weight = sum(g * xhat),
    grad_bias = sum(g), summed over N, H, W.  relu_output: the forward's output with relu=True (g is zero
    where it is not positive)."""
    if relu_output is not None:
        grad_y = relu_backward(grad_y, relu_output)
    g = grad_y.astype(np.float64)
    centred = x.astype(np.float64) - mean.astype(np.float64)[None, :, None, None]
    xhat = centred * invstd.astype(np.float64)[None, :, None, None]
    grad_bias = g.sum(axis=(0, 2, 3))
    grad_weight = (g * xhat).sum(axis=(0, 2, 3))
    w = np.ones(x.shape[1]) if weight is None else weight.astype(np.float64)
    k = (w * invstd)[None, :, None, None]
    if training:
        # g centred first: sum(g_centred * xhat) is sum(g * xhat) when the mean is exact, and stays exact when
        # the mean was rounded to x's dtype (a large weight over a small variance would magnify that error)
        count = x.size // x.shape[1]
        g_centred = g - grad_bias[None, :, None, None] / count
        grad_x = k * (g_centred - xhat * (g_centred * xhat).sum(axis=(0, 2, 3))[None, :, None, None] / count)
    else:
        grad_x = k * g
    return grad_x.astype(x.dtype), grad_weight.astype(x.dtype), grad_bias.astype(x.dtype)


# --------------------------------------------------------------------------
# Concatenation along channels (the Inception merge) and its inverse
# --------------------------------------------------------------------------

def concat(arrays, axis=1):
    return np.concatenate(arrays, axis=axis)


def split(array, sizes, axis=1):
    """Cut `array` into consecutive pieces of the given sizes along `axis`."""
    return np.split(array, np.cumsum(sizes)[:-1], axis=axis)


# --------------------------------------------------------------------------
# Summing the gradients that meet at one tensor
# --------------------------------------------------------------------------

def add_n(arrays):
    """arrays[0] + arrays[1] + ..., in that order: the gradient of a tensor used by several ops
    (an Inception module's input feeds four branches) is the sum of what each use sends back."""
    total = arrays[0] + arrays[1]
    for a in arrays[2:]:
        total += a
    return total


# --------------------------------------------------------------------------
# The optimizer's update
# --------------------------------------------------------------------------

def sgd_update(param, grad, buffer, lr, momentum, weight_decay, nesterov):
    """One step of SGD, in place, by PyTorch's rule:
        d = grad + weight_decay * param
        buffer = d (the first step, buffer None), else momentum * buffer + d     (with momentum only)
        d = buffer, or d + momentum * buffer with nesterov                      (with momentum only)
        param -= lr * d
    Each product and sum rounded in param's dtype, in this order (the fast kernels round alike).
    Returns (param, buffer): the same arrays, changed; the buffer is new at the first step, None
    without momentum.  Plain arithmetic: it serves CuPy arrays as well."""
    if weight_decay:
        d = param * weight_decay
        d += grad
    else:
        d = grad
    if momentum:
        if buffer is None:
            buffer = d.astype(param.dtype, copy=True)
        else:
            buffer *= momentum
            buffer += d
        d = d + momentum * buffer if nesterov else buffer
    param -= (d * lr).astype(param.dtype, copy=False)
    return param, buffer


def fits_one_pass(param, grad, buffer):
    """Whether a one-pass kernel (Numba's, CUDA's) can run sgd_update in place on these: float32 or
    float64 arrays of one dtype and shape, param and buffer contiguous (the kernels see them flat).
    The backends send anything else to sgd_update above."""
    return (param.dtype.char in "fd" and param.flags.c_contiguous and grad.dtype == param.dtype
            and grad.shape == param.shape
            and (buffer is None or (buffer.dtype == param.dtype and buffer.shape == param.shape
                                    and buffer.flags.c_contiguous)))
