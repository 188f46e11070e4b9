"""Bad input: every public op raises ValueError/TypeError naming the op, the argument and the shapes,
before any kernel runs."""

import numpy as np
import pytest

import minigrad
import minigrad.functional as F
from minigrad import nn


def t(*shape, dtype=np.float32):
    return minigrad.tensor(np.ones(shape, dtype=dtype))


x4 = t(2, 3, 8, 8)
w4 = t(5, 3, 3, 3)

CASES = [
    # conv2d
    (lambda: F.conv2d(t(3, 8, 8), w4), ValueError, r"conv2d: input must be 4-D, got shape \(3, 8, 8\)"),
    (lambda: F.conv2d(x4, t(5, 3, 3)), ValueError, r"conv2d: weight must be 4-D, got shape \(5, 3, 3\)"),
    (lambda: F.conv2d(x4, t(5, 4, 3, 3)), ValueError,
     r"conv2d: weight expects 4 input channels but input has 3 \(input shape \(2, 3, 8, 8\), weight shape \(5, 4, 3, 3\)\)"),
    (lambda: F.conv2d(x4, w4, t(4)), ValueError, r"conv2d: bias has 4 entries but weight has 5 output channels"),
    (lambda: F.conv2d(x4, t(5, 3, 11, 3), padding=1), ValueError,
     r"conv2d: kernel_size \(11, 3\) is larger than the padded input \(10, 10\) \(input shape \(2, 3, 8, 8\)"),
    (lambda: F.conv2d(x4, w4, stride=0), ValueError, r"conv2d: stride must be >= 1, got 0"),
    (lambda: F.conv2d(x4, w4, padding=-1), ValueError, r"conv2d: padding must be >= 0, got -1"),
    (lambda: F.conv2d(x4, w4, stride=1.5), TypeError, r"conv2d: stride must be an int or a tuple of one or two ints"),
    (lambda: F.conv2d(x4, t(5, 3, 3, 3, dtype=np.float64)), TypeError,
     r"conv2d: weight has dtype float64 but input has dtype float32"),
    (lambda: F.conv2d(np.ones((2, 3, 8, 8)), w4), TypeError, r"conv2d: input must be a minigrad Tensor, got ndarray"),
    (lambda: F.conv2d(minigrad.tensor(np.ones((2, 3, 8, 8), np.int64)), w4), TypeError,
     r"conv2d: input must be a floating-point tensor, got dtype int64"),
    (lambda: F.conv2d(t(2, 3, 8, 8, dtype=np.float16), w4), TypeError,
     r"conv2d: input has dtype float16; minigrad computes in float32 or float64"),
    (lambda: F.conv2d(t(2, 3, 8, 8, dtype=np.longdouble), w4), TypeError,
     r"conv2d: input has dtype float(96|128); minigrad computes in float32 or float64"),
    (lambda: F.conv2d(t(0, 3, 8, 8), w4), ValueError, r"conv2d: input has a zero-sized dimension, shape \(0, 3, 8, 8\)"),
    # pooling
    (lambda: F.max_pool2d(t(3, 8, 8), 2), ValueError, r"max_pool2d: input must be 4-D, got shape \(3, 8, 8\)"),
    (lambda: F.max_pool2d(x4, 0), ValueError, r"max_pool2d: kernel_size must be >= 1, got 0"),
    (lambda: F.max_pool2d(x4, 3, stride=0), ValueError, r"max_pool2d: stride must be >= 1, got 0"),
    (lambda: F.max_pool2d(x4, 3, padding=-1), ValueError, r"max_pool2d: padding must be >= 0"),
    (lambda: F.max_pool2d(x4, 3, padding=2), ValueError,
     r"max_pool2d: padding \(2, 2\) must be at most half of kernel_size \(3, 3\)"),
    (lambda: F.max_pool2d(x4, 9), ValueError, r"max_pool2d: kernel_size \(9, 9\) is larger than the padded input \(8, 8\)"),
    (lambda: F.avg_pool2d(x4, (2, 9)), ValueError, r"avg_pool2d: kernel_size \(2, 9\) is larger than the padded input"),
    (lambda: F.avg_pool2d(x4, (2, 2, 2)), TypeError, r"avg_pool2d: kernel_size must be an int or a tuple of one or two ints"),
    # the rest
    (lambda: F.relu(minigrad.tensor([1, 2])), TypeError, r"relu: input must be a floating-point tensor"),
    (lambda: F.local_response_norm(x4, 0), ValueError, r"local_response_norm: size must be an int >= 1, got 0"),
    (lambda: F.local_response_norm(t(3, 8), 5), ValueError, r"local_response_norm: input must be 4-D"),
    (lambda: F.local_response_norm(x4, 5, k=0.0), ValueError, r"local_response_norm: k must be > 0"),
    (lambda: F.local_response_norm(x4, 5, alpha=-1.0), ValueError, r"local_response_norm: k must be > 0 and alpha >= 0"),
    (lambda: F.linear(t(4, 10), t(3, 9)), ValueError,
     r"linear: input has 10 features but weight expects 9 \(input shape \(4, 10\), weight shape \(3, 9\)\)"),
    (lambda: F.linear(t(4, 10), t(3, 10), t(4)), ValueError, r"linear: bias has 4 entries but weight has 3 outputs"),
    (lambda: F.dropout(x4, 1.0), ValueError, r"dropout: p must be in \[0, 1\), got 1.0"),
    (lambda: F.dropout(x4, -0.1), ValueError, r"dropout: p must be in \[0, 1\), got -0.1"),
    (lambda: F.log_softmax(t(2, 3), 2), ValueError, r"log_softmax: dim 2 is out of range for input shape \(2, 3\)"),
    (lambda: F.softmax(t(2, 3), -3), ValueError, r"softmax: dim -3 is out of range for input shape \(2, 3\)"),
    (lambda: F.pad(t(2, 3), (1, 1, 1)), ValueError, r"pad: pad must be an even number of ints"),
    (lambda: F.pad(t(2, 3), (1, 1, 1, 1, 1, 1)), ValueError, r"at most two per dimension of input shape \(2, 3\)"),
    (lambda: F.pad(t(2, 3), (-2, -2)), ValueError, r"pad: pad \(-2, -2\) crops more than input shape \(2, 3\) holds"),
    (lambda: F.pad(t(2, 3), (1, 1), value="x"), TypeError, r"pad: value must be a number, got 'x'"),
    (lambda: t(2, 3) @ t(4, 2), ValueError, r"matmul: the operands' inner dimensions must agree"),
    (lambda: t(2, 2, 3) @ t(3, 3, 2), ValueError, r"matmul: the leading dimensions of shapes \(2, 2, 3\) and \(3, 3, 2\)"),
    (lambda: F.cross_entropy(t(2, 3), np.array([0.0, 1.0])), TypeError,
     r"cross_entropy: target must hold integer class indices, got dtype float64"),
    (lambda: F.cross_entropy(t(2, 3), np.array([0, 3])), ValueError, r"cross_entropy: target values must be in \[0, 3\)"),
    (lambda: F.cross_entropy(t(2, 3), np.array([0, 1, 2])), ValueError,
     r"cross_entropy: target must have shape \(2,\) to match input \(2, 3\)"),
    (lambda: F.cross_entropy(t(2, 3, 4), np.array([0, 1])), ValueError, r"cross_entropy: input must be 2-D"),
    (lambda: minigrad.cat([t(2, 3, 4, 4), t(2, 3, 5, 4)]), ValueError,
     r"cat: tensors\[1\] has shape \(2, 3, 5, 4\), which does not match tensors\[0\]'s \(2, 3, 4, 4\) outside dim 1"),
    (lambda: minigrad.cat([]), TypeError, r"cat: expected a non-empty sequence"),
    (lambda: minigrad.cat([x4], dim=4), ValueError, r"cat: dim 4 is out of range"),
    (lambda: minigrad.split(x4, [1, 1], 1), ValueError,
     r"split: split_size_or_sections \[1, 1\] must add up to 3, the size of dim 1 of a tensor of shape \(2, 3, 8, 8\)"),
    (lambda: minigrad.split(x4, 0, 1), ValueError, r"split: split_size must be positive, got 0"),
    (lambda: minigrad.split(x4, [1, -1, 3], 1), TypeError, r"split: split_size_or_sections must be a positive int"),
    (lambda: minigrad.split(x4, 1, 4), ValueError, r"split: dim 4 is out of range for a tensor of shape \(2, 3, 8, 8\)"),
    # modules
    (lambda: nn.Conv2d(0, 3, 3), ValueError, r"Conv2d: in_channels must be a positive int, got 0"),
    (lambda: nn.Conv2d(3, 3, 3, stride=0), ValueError, r"Conv2d: stride must be >= 1"),
    (lambda: nn.Linear(3, -1), ValueError, r"Linear: out_features must be a positive int, got -1"),
    (lambda: nn.Dropout(2.0), ValueError, r"Dropout: p must be in \[0, 1\)"),
    (lambda: nn.Sequential(nn.ReLU(), "relu"), TypeError, r"Sequential: argument 1 is a str, not a Module"),
]


@pytest.mark.parametrize("call,error,message", CASES, ids=[c[2][:48] for c in CASES])
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
