"""ONNX in and out: trained networks loaded into minigrad's ops and kernels, minigrad's networks written for any
other runtime.

    model = minigrad.onnx.load("googlenet-12.onnx")      # an nn.Module, in eval mode
    probabilities = model(images)                       # the graph's real inputs, in order
    minigrad.onnx.export(models.googlenet(), example, "googlenet.onnx", opset_version=17)

`load` maps each node to minigrad's ops (importer.py, operators.py): float initializers become Parameters
named after the ONNX tensors (trainable: backward, fine-tuning, gradcheck and state_dict work), the others
buffers.  `export` runs the model once on an example input, records the ops it runs, and writes each as
ONNX's own operator (exporter.py), validated by onnx.checker.  Both need the `onnx` package
(pip install -e ".[onnx]"); onnxruntime is only a reference in the tests and benchmarks.
"""

from __future__ import annotations


class OnnxError(ValueError):
    """A file that is not ONNX, an operator or attribute minigrad lacks, shapes that do not agree: the message
    names the node and the operator."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise OnnxError("minigrad.onnx needs the onnx package: pip install -e '.[onnx]'") from None
    return onnx


def load(path_or_bytes):
    """The network of an ONNX file (a path, or the file's bytes) as an nn.Module (importer.OnnxModel), in eval
    mode."""
    from .importer import load_model
    return load_model(path_or_bytes)


def export(model, example_input, path, opset_version=17):
    """Write `model` (an nn.Module of minigrad's ops) as ONNX to `path`, traced on example_input (a Tensor, or
    a tuple of them), in eval mode; returns the ModelProto."""
    from .exporter import export_model
    return export_model(model, example_input, path, opset_version)


__all__ = ["load", "export", "OnnxError"]
