"""ONNX's own conformance suite (onnx.backend.test.BackendTest, shipped in the onnx wheel, offline) run through
minigrad's backend (minigrad.onnx.backend.MinigradBackend).

INCLUDED names every test run: the node tests of each operator minigrad imports, the zoo networks the wheel
ships as light models (weights generated, expected outputs stored beside them: GoogLeNet as `inception_v1`,
BN-Inception as `inception_v2`, and five more), and the PyTorch-converted models and operators made of those
operators.  EXCLUDED names, with the reason, each test that an included pattern reaches and minigrad does not
pass.  Every included test that is not excluded must pass; RELIABILITY.md records the count.
"""

import os
import re
import tempfile
import warnings

import pytest

onnx_backend_test = pytest.importorskip("onnx.backend.test", reason="the onnx package is not installed")

from minigrad.onnx.backend import MinigradBackend  # noqa: E402  (after the onnx check)

# The light zoo models write their generated inputs under ONNX_HOME: a folder of this run's, not ~/.onnx.
os.environ["ONNX_HOME"] = tempfile.mkdtemp(prefix="minigrad-onnx-home-")

OPERATOR_TESTS = ["add", "averagepool", "basic_conv", "batchnorm", "cast", "concat", "constant", "constantofshape",
                  "conv", "div", "dropout", "flatten", "gather", "gemm", "globalaveragepool", "identity",
                  "logsoftmax", "lrn", "matmul", "maxpool", "mul", "neg", "pow", "reduce_mean", "reduce_sum", "relu",
                  "reshape", "shape", "slice", "softmax", "split", "squeeze", "sub", "sum", "transpose", "unsqueeze"]

INCLUDED = [
    rf"^test_({'|'.join(OPERATOR_TESTS)})(_.*)?_cpu$",
    # the light zoo models: GoogLeNet (inception_v1), BN-Inception (inception_v2) and the others of their operators
    r"^test_(inception_v1|inception_v2|bvlc_alexnet|zfnet512|vgg19|resnet50|densenet121|squeezenet|shufflenet)_cpu$",
    # networks of PyTorch layers as torch.onnx.export wrote them
    r"^test_(AvgPool[123]d|BatchNorm[123]d|ConstantPad2d|ZeroPad2d|Conv[123]d|Linear|LogSoftmax|MaxPool[123]d|ReLU"
    r"|Softmax|PixelShuffle|log_softmax|softmax)(_.*)?_cpu$",
    r"^test_operator_(add|addconstant|addmm|chunk|concat2|conv|flatten|maxpool|mm|non_float_params|pad|permute2"
    r"|pow|reduced_mean|reduced_sum|view)(_.*)?_cpu$",
    r"^test_single_relu_model_cpu$",
]

EXCLUDED = {
    # what minigrad's ops do not compute
    r"pool_[13]d_|Conv1d|Conv3d|AvgPool3d|MaxPool1d|MaxPool3d|BatchNorm3d|test_operator_maxpool_":
        "1-D and 3-D convolution, pooling and batch normalisation: minigrad's take (N, C, H, W) images",
    r"dilation|dilated": "dilated windows: minigrad's convolutions and pools have none",
    r"groups|depthwise|test_bvlc_alexnet_|test_shufflenet_":
        "grouped convolutions (AlexNet's group 2, ShuffleNet's and depthwise ones): minigrad's have group 1",
    r"maxpool_2d_uint8": "max pooling of integers: minigrad's pools take floating point",
    r"maxpool_with_argmax": "MaxPool's second output, the indices: not produced",
    r"test_operator_pad_": "Pad's reflect and edge modes: minigrad pads with a constant",
    r"test_pow_(cpu|bcast_array|example|types)|test_operator_pow_":
        "an exponent tensor: minigrad's pow raises to one number",
    r"cast_(FLOAT|FLOAT16)_to_FLOAT8|cast_e8m0_FLOAT(16)?_to_FLOAT8E8M0":
        "saturating casts into 8-bit floats: minigrad casts as NumPy does, out-of-range values becoming inf or NaN",
    r"slice_neg_steps": "Slice with a negative step over floating-point data: minigrad slices by pieces, in order",
    r"identity_opt|identity_sequence": "optional and sequence values: minigrad's graphs carry tensors only",
    # other operators that only share a name's beginning with an included one
    r"gather_elements": "GatherElements, another operator",
    r"split_to_sequence": "SplitToSequence, another operator (sequences)",
    r"reduce_sum_square": "ReduceSumSquare, another operator",
    r"_expanded": "an operator expanded into a graph of others (ReduceMax, Exp, CastLike, ...) that minigrad lacks; "
                  "the operator itself runs in the test without the suffix",
}

with warnings.catch_warnings():                 # the suite's own generators overflow casts on purpose
    warnings.simplefilter("ignore")
    backend_test = onnx_backend_test.BackendTest(MinigradBackend, __name__)
for pattern in INCLUDED:
    backend_test.include(pattern)
for pattern in EXCLUDED:
    backend_test.exclude(pattern)

# The suite holds every ONNX operator's tests; those no pattern includes are dropped rather than listed as
# skipped (the excluded ones stay, skipped with their reason).
cases = backend_test.test_cases                 # a property: a new set of classes at every reading
for case in cases.values():
    for name in [n for n in vars(case) if n.startswith("test_")]:
        if not any(re.search(pattern, name) for pattern in INCLUDED):
            delattr(case, name)
globals().update(cases)
