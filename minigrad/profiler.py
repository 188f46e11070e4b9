"""Where the time of a step goes: every op's forward and backward, timed, with its layer.

    with minigrad.profiler.profile(model) as prof:
        loss = loss_fn(model(x)); loss.backward()
    rows = prof.table()           # one row per (layer, op), slowest first

Multiply-adds are counted for convolutions and linear layers; bytes moved (inputs
read plus outputs written) for every op, so memory-bound ops show their GB/s.

A fresh process computes its first calls on the reference kernels and moves to Numba's
after about 0.7 s of work (kernels/tiered.py): profile after that, or with
MINIGRAD_KERNELS=numba, to see the compiled kernels' times.
"""

from __future__ import annotations

import contextlib
import math
import time

from . import autograd as _engine


def _multiply_adds(fn, inputs, output):
    name = fn.op_name()
    if name in ("conv2d", "conv2d_relu"):
        weight = inputs[1].shape
        return math.prod(output.shape) * math.prod(weight[1:])        # every output reads C*KH*KW weights
    if name == "linear":
        return math.prod(output.shape) * inputs[1].shape[1]
    if name == "matmul":
        return math.prod(output.shape) * inputs[0].shape[-1]
    return 0


def _window_reads(fn, output):
    """A pool's work: one read per output and window tap (its comparisons or additions)."""
    if fn.op_name() in ("max_pool2d", "avg_pool2d"):
        return math.prod(output.shape) * math.prod(fn.geometry[0])
    return 0


class Profile:
    def __init__(self):
        self.records = {}           # Function -> record dict
        self.layers = []            # the names of the modules being run, innermost last
        self.wall_seconds = 0.0

    def forward(self, fn, inputs, outputs, seconds):
        self.records[fn] = {
            "op": fn.op_name(), "layer": self.layers[-1] if self.layers else "", "shape": outputs[0].shape,
            "forward_s": seconds, "backward_s": 0.0,
            "multiply_adds": _multiply_adds(fn, inputs, outputs[0]), "window_reads": _window_reads(fn, outputs[0]),
            "forward_bytes": sum(t.data.nbytes for t in inputs + outputs), "backward_bytes": 0}

    def backward(self, fn, grad_outputs, grads, seconds):
        record = self.records.get(fn)
        if record is not None:
            record["backward_s"] += seconds
            record["backward_bytes"] += sum(g.nbytes for g in grad_outputs + list(grads) if g is not None)

    def table(self):
        """One row per (layer, op), slowest first, with shares of the profiled wall time and rates."""
        merged = {}
        for r in self.records.values():
            key = (r["layer"], r["op"])
            if key not in merged:
                merged[key] = dict(r)
            else:
                row = merged[key]
                for k in ("forward_s", "backward_s", "multiply_adds", "window_reads", "forward_bytes", "backward_bytes"):
                    row[k] += r[k]
        total = self.wall_seconds or sum(r["forward_s"] + r["backward_s"] for r in merged.values())
        return sorted((with_rates(row, total) for row in merged.values()), key=lambda r: -r["seconds"])


def with_rates(row, total_seconds):
    """The row with its time, its share of total_seconds, and GFLOP/s (ops with multiply-adds) or GB/s."""
    seconds = row["forward_s"] + row["backward_s"]
    flops = 2 * row["multiply_adds"] * (3 if row["backward_s"] else 1)   # backward: twice forward's GEMM work
    moved = row["forward_bytes"] + row["backward_bytes"]
    return {**row, "seconds": seconds, "share": seconds / total_seconds if total_seconds else 0.0,
            "gflops": flops / seconds / 1e9 if flops and seconds else None,
            "gbps": moved / seconds / 1e9 if not flops and seconds else None}


@contextlib.contextmanager
def profile(model=None):
    """Record every op run inside the block; with a model, each op is labelled with the
    (innermost) named module that ran it."""
    prof = Profile()
    start = time.perf_counter()
    try:
        with observing(prof, model):
            yield prof
    finally:
        prof.wall_seconds = time.perf_counter() - start


@contextlib.contextmanager
def observing(observer, model=None):
    """Inside the block the engine tells `observer` of every op: observer.forward(fn, inputs, outputs, seconds)
    and observer.backward(fn, grad_outputs, grads, seconds).  With a model, observer.layers (a list) holds the
    names of the modules running, innermost last (the profiler's rows, the ONNX exporter's node names)."""
    patched = []
    if model is not None:
        for name, module in model.named_modules():
            original, label = type(module).forward, name or type(model).__name__

            def labelled(*args, _module=module, _name=label, _forward=original, **kwargs):
                observer.layers.append(_name)
                try:
                    return _forward(_module, *args, **kwargs)
                finally:
                    observer.layers.pop()

            vars(module)["forward"] = labelled
            patched.append(module)
    previous, _engine._observer = _engine._observer, observer
    try:
        yield observer
    finally:
        _engine._observer = previous
        for module in patched:
            vars(module).pop("forward", None)
