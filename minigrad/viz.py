"""The autograd graph behind a tensor, drawn: Graphviz DOT text, and a rendering where Graphviz is installed.

    y = module(x)
    dot = minigrad.viz.graph(y, module)            # before backward (which frees the graph) or retain_graph
    minigrad.viz.render(dot, "module.svg")

Each op is a box with its name and output shape; each leaf that requires grad an ellipse, named after the
module's parameter where it is one (filled), else "input"; edges run from inputs to the ops that read them.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .autograd import Tensor


def graph(tensor, model=None, title=None):
    """DOT text of the graph that computed `tensor` (a Tensor with a creator, or a tuple of them); parameters of
    `model` (an nn.Module) are named."""
    roots = tensor if isinstance(tensor, (tuple, list)) else (tensor,)
    for t in roots:
        if not isinstance(t, Tensor):
            raise TypeError(f"graph: expected a Tensor (or several), got {type(t).__name__}")
        if t.creator is None:
            raise ValueError(f"graph: the tensor of shape {t.shape} has no graph (a leaf, computed under "
                             "no_grad, or from tensors that do not require grad)")
        if t.creator.released:
            raise ValueError("graph: the graph was freed by backward; draw it before, or backward(retain_graph=True)")
    names = {id(p): name for name, p in model.named_parameters()} if model is not None else {}
    lines = ["digraph minigrad {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];']
    if title:
        lines.append(f'  labelloc="t"; label="{_escape(title)}";')
    ids, pending, seen = {}, [t.creator for t in roots], set()

    def node_id(obj):
        return ids.setdefault(id(obj), f"n{len(ids)}")

    while pending:
        fn = pending.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        shape = " ".join(str(tuple(s)) for s in getattr(fn, "output_shapes", ()))
        lines.append(f'  {node_id(fn)} [shape=box, label="{_escape(fn.op_name())}\\n{shape}"];')
        for edge in fn.edges:
            if edge is None:
                continue
            if isinstance(edge, Tensor):                             # a leaf
                if id(edge) not in ids:
                    name = names.get(id(edge))
                    style = ', style=filled, fillcolor="#cfe2f3"' if name else ""
                    lines.append(f'  {node_id(edge)} [shape=ellipse{style}, '
                                 f'label="{_escape(name or "input")}\\n{tuple(edge.shape)}"];')
                lines.append(f"  {node_id(edge)} -> {node_id(fn)};")
            else:
                parent = edge[0]
                lines.append(f"  {node_id(parent)} -> {node_id(fn)};")
                pending.append(parent)
    for i, t in enumerate(roots):
        lines.append(f'  out{i} [shape=plaintext, label="output {tuple(t.shape)}"];')
        lines.append(f"  {node_id(t.creator)} -> out{i};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _escape(text):
    return str(text).replace("\\", "\\\\").replace('"', '\\"')


def render(dot, path):
    """Draw DOT text to `path` (.svg, .png or .pdf, by its extension) with Graphviz's `dot` program."""
    kind = os.path.splitext(str(path))[1].lstrip(".").lower()
    if kind not in ("svg", "png", "pdf"):
        raise ValueError(f"render: path must end in .svg, .png or .pdf, got {path!r}")
    program = shutil.which("dot")
    if program is None:
        raise RuntimeError("render: Graphviz's `dot` program is not installed (apt install graphviz, brew install "
                           "graphviz, or conda install graphviz); graph() gives the DOT text without it")
    result = subprocess.run([program, f"-T{kind}", "-o", str(path)], input=dot, text=True, capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"render: dot failed: {result.stderr.strip()}")
    return str(path)
