"""minigrad as an ONNX backend (onnx.backend.base.Backend): the interface ONNX's own conformance suite,
onnx.backend.test.BackendTest, runs its operator and model tests through.

    from minigrad.onnx.backend import MinigradBackend
    outputs = MinigradBackend.prepare(model_proto, "CPU").run([image])        # NumPy arrays in and out
"""

from __future__ import annotations

import numpy as np

from . import _onnx
from .importer import OnnxModel

_onnx()                                      # a clear message where the onnx package is missing
from onnx.backend.base import Backend, BackendRep  # noqa: E402  (needs onnx, checked above)


class MinigradRep(BackendRep):
    def __init__(self, model: OnnxModel, device):
        self.model, self.device = model, device

    def run(self, inputs, **kwargs):
        from .. import no_grad
        from ..autograd import Tensor
        arrays = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        tensors = [Tensor(np.asarray(a)).to(self.device) for a in arrays]
        with no_grad():
            out = self.model(*tensors)
        return tuple(o.numpy() for o in (out if isinstance(out, tuple) else (out,)))


class MinigradBackend(Backend):
    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        super().prepare(model, device, **kwargs)            # onnx.checker, as every backend runs it
        target = "cuda" if str(device).upper().startswith("CUDA") else "cpu"
        return MinigradRep(OnnxModel(model).to(target), target)

    @classmethod
    def supports_device(cls, device):
        if str(device).upper().startswith("CUDA"):
            from ..backend import cuda_available
            return cuda_available()
        return str(device).upper() == "CPU"
