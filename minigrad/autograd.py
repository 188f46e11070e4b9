"""The autograd engine: Tensor, Function, backward, and the arithmetic ops.

Define-by-run: every op on tensors that require gradients records a Function
node holding its inputs and whatever its backward needs.  `Tensor.backward()`
orders those nodes topologically (iteratively, so a 10,000-op chain is fine),
runs each node's backward once, adds up the gradients of values used more than
once, and frees the saved arrays unless asked to keep them.

Every op follows one pattern: a Function subclass with `forward(*arrays)` and
`backward(grad_output)` side by side, and a one-line public method or wrapper.
Forward and backward work on raw arrays (NumPy or CuPy), never on Tensors.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

import kernels
from kernels.memory import aligned_copy

from .backend import array_module, device_of, on_device_of, parse_device, synchronize, to_device

_grad_enabled = True
_observer = None        # set by minigrad.profiler.profile() and the ONNX exporter: told of every forward and backward


@contextlib.contextmanager
def no_grad():
    """Run ops without recording them for backward (evaluation, optimizer steps)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


class Function:
    """One recorded op.  Subclasses implement forward and backward on arrays.

    `forward(*arrays)` returns the output array; `backward(grad)` returns one
    gradient (or None) per input, in order.  `self.needs_input_grad[i]` says
    whether input i wants a gradient, so backward can skip work.  Whatever the
    backward needs is stored on `self` in forward and dropped by `release()`.
    An op with several outputs (split) returns a tuple of arrays from forward; the
    call returns a tuple of tensors, and backward receives a tuple of gradients,
    None for each output that no gradient reached.
    """

    name = None                      # the op's public name, used in error messages
    outputs = 1                      # how many outputs the last call returned (see below)
    shares_input_memory = False      # outputs are views of input 0: in-place changes count as changes to it
    fresh_grads = False              # backward returns new arrays, each for one input only: a leaf may keep
                                     # its gradient as .grad without a copy (conv2d, linear: GoogLeNet's 54 MB)

    def __call__(self, *inputs: Tensor):
        _check_same_kind(self.op_name(), inputs)
        # a frozen tensor's values reach the kernels through its writable alias (Tensor.freeze_)
        arrays = [t.data if t._frozen is None else t._kernel_array() for t in inputs]
        with on_device_of(arrays[0]):           # the inputs' GPU is current while the op runs
            if _observer is None:
                result = self.forward(*arrays)
            else:                               # timed; on a GPU only once the queued work is done
                synchronize(arrays[0])
                start = time.perf_counter()
                result = self.forward(*arrays)
                synchronize(result[-1] if isinstance(result, tuple) else result)
        outputs = tuple(Tensor(r) for r in result) if isinstance(result, tuple) else (Tensor(result),)
        self.outputs, self.tuple_output = len(outputs), isinstance(result, tuple)
        if _observer is not None:
            _observer.forward(self, inputs, outputs, time.perf_counter() - start)
        for index, output in enumerate(outputs):
            output._output_index = index
            if self.shares_input_memory:
                output._version = inputs[0]._version
        if _grad_enabled and any(t.requires_grad for t in inputs):
            # Edges, not tensors: a leaf to accumulate into, or the Function that made
            # the input and which of its outputs it was (None where no gradient is wanted).
            # Holding the input tensors themselves would keep every intermediate activation alive.
            self.edges = tuple((t if t.creator is None else (t.creator, t._output_index)) if t.requires_grad else None
                               for t in inputs)
            self.needs_input_grad = tuple(t.requires_grad for t in inputs)
            self.output_shapes = tuple(o.shape for o in outputs)      # for minigrad.viz.graph
            # each input's version now: an in-place change before backward would make the
            # saved arrays stale, and backward checks for that instead of returning a wrong gradient
            self.input_versions = tuple((t._version, t._version[0]) for t in inputs)
            self.released = False
            for output in outputs:
                output.requires_grad = True
                output.creator = self
        return outputs if isinstance(result, tuple) else outputs[0]

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    def op_name(self) -> str:
        return self.name or type(self).__name__.lower()

    def release(self):
        """Drop the arrays saved for backward and the edges (after backward unless retain_graph)."""
        outputs = self.outputs
        vars(self).clear()
        self.edges, self.released, self.outputs = (), True, outputs


def _check_same_kind(op, inputs):
    """All array inputs of one op live on one device and share one dtype."""
    if len(inputs) < 2:
        return
    first = inputs[0]
    for index, other in enumerate(inputs[1:], 1):
        if other.device != first.device:
            raise ValueError(f"{op}: input {index} is on {other.device} but input 0 is on {first.device} "
                             f"(shapes {other.shape} and {first.shape}); move them to one device with .to(device)")
        if other.dtype != first.dtype:
            raise TypeError(f"{op}: mismatched dtypes {first.dtype} and {other.dtype} "
                            f"(shapes {first.shape} and {other.shape}); convert one of them")


class Tensor:
    """An array (NumPy on the CPU, CuPy on the GPU) with an optional gradient."""

    __array_ufunc__ = None           # `ndarray * tensor` defers to Tensor.__rmul__ instead of looping
    _frozen = None                   # freeze_(): (data, what kernels keep, requires_grad before, writable alias)

    def __init__(self, data, requires_grad: bool = False):
        if isinstance(data, np.generic):     # NumPy reductions to 0-d hand back scalars
            data = np.asarray(data)
        self.data = data
        self.grad = None
        self.creator = None          # the Function that produced this tensor (None for leaves)
        self._output_index = 0       # which of its creator's outputs this is
        self._version = [0]          # bumped by every in-place change; shared by tensors sharing data
        self._requires_grad = False
        self.requires_grad = requires_grad

    # ---- basic properties --------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool):
        if value and self.data.dtype.kind != "f":
            raise TypeError(f"requires_grad: only floating-point tensors can require gradients, "
                            f"got dtype {self.data.dtype}")
        self._requires_grad = bool(value)

    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    device = property(lambda self: device_of(self.data))
    is_leaf = property(lambda self: self.creator is None)

    def numel(self) -> int:
        return int(self.data.size)

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({np.array2string(self.numpy(), prefix='tensor(')}, dtype={self.dtype}{grad})"

    def numpy(self):
        """The data as a NumPy array (copied to the host if on a GPU)."""
        return self.data if isinstance(self.data, np.ndarray) else self.data.get()

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor converts to a Python number, got shape {self.shape}")
        return self.data.reshape(()).item()

    # ---- devices --------------------------------------------------------------
    def to(self, device_or_dtype) -> Tensor:
        """This tensor on a device ('cpu', 'cuda' or 'cuda:N') or of a dtype (np.float64, "float32", ...):
        itself if it already is, else a copy that stays in the graph (its gradient flows back to this
        device, in this dtype)."""
        if device_or_dtype is not None and (not isinstance(device_or_dtype, str)
                                            or device_or_dtype.partition(":")[0] not in ("cpu", "cuda")):
            try:
                dtype = np.dtype(device_or_dtype)
            except TypeError:
                dtype = None
            if dtype is not None:
                return self if dtype == self.dtype else Cast(dtype)(self)
        target = parse_device(device_or_dtype)
        return self if target == self.device else ToDevice(target)(self)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, index=None) -> Tensor:
        return self.to("cuda" if index is None else f"cuda:{index}")

    # ---- memory layout ------------------------------------------------------------
    MEMORY_FORMATS = ("contiguous_format", "channels_last")

    def is_contiguous(self, memory_format="contiguous_format") -> bool:
        """Whether the data is C-contiguous ("contiguous_format", NCHW in memory) or, for a 4-D tensor,
        "channels_last": NHWC in memory behind the NCHW shape (what the CPU kernels produce)."""
        _check_memory_format("is_contiguous", memory_format, self)
        data = self.data.transpose(0, 2, 3, 1) if memory_format == "channels_last" else self.data
        return bool(data.flags.c_contiguous)

    def contiguous(self, memory_format="contiguous_format") -> Tensor:
        """This tensor in that memory layout: itself if already so, else a copy that stays in the graph."""
        return self if self.is_contiguous(memory_format) else Contiguous(memory_format)(self)

    def detach(self) -> Tensor:
        """The same data, cut from the graph (in-place changes to either are seen by both)."""
        out = Tensor(self.data)
        out._version = self._version
        return out

    # ---- frozen values ----------------------------------------------------------------
    # The version counter cannot say that a weight is unchanged: writes into `.data` (an optimizer's
    # `p.data -= ...`, `p.data[...] = w`) do not pass through the tensor.  A read-only array can say it.
    def freeze_(self) -> Tensor:
        """Fix this tensor's values: its data becomes a read-only view of a copy (every write through it
        raises) and it stops requiring grad (its .grad dropped), so that ops may keep what they derive from
        it (a convolution's Winograd-transformed filters) instead of deriving it again at every call.
        Replacing `.data` ends the freeze.  On a GPU, where arrays cannot be made read-only, it only stops
        requiring grad.  The kernels, which never write their inputs, read the copy itself: handed a
        read-only array, Numba would compile another variant of each.  Returns the tensor."""
        if not self.is_frozen:
            writable = data = self.data
            if isinstance(data, np.ndarray):
                writable = aligned_copy(data)             # no alias of the old array, known or not, reaches it
                data = writable.view()
                data.flags.writeable = False
            requires_grad = self.requires_grad if self._frozen is None else self._frozen[2]
            self.data, self._frozen = data, (data, {}, requires_grad, writable)
            self.requires_grad, self.grad = False, None
        return self

    def unfreeze_(self) -> Tensor:
        """End freeze_(): the data writable again (the copy, unless replaced since), requires_grad as before,
        nothing kept."""
        if self._frozen is not None:
            if self.is_frozen:
                self.data = self._frozen[3]
            self.requires_grad = self._frozen[2]
        self._frozen = None
        return self

    def _freeze_in_force(self):
        """freeze_()'s record while it holds: the data still its view of the writable copy (not replaced, nor
        a copy of it, as copy.deepcopy makes); else None."""
        frozen, data = self._frozen, self.data
        if frozen is None or frozen[0] is not data or (isinstance(data, np.ndarray)
                                                       and data.base is not _memory_owner(frozen[3])):
            return None
        return frozen

    @property
    def is_frozen(self) -> bool:
        return self._freeze_in_force() is not None

    def _kernel_array(self):
        """What the kernels read: a frozen tensor's writable copy (the same memory as its data), else the data."""
        frozen = self._freeze_in_force()
        return self.data if frozen is None else frozen[3]

    def weight_cache(self):
        """The dict where kernels keep forms of these values (kernels/contract.py) while they cannot change:
        frozen, and read-only (a NumPy array, its flag not set back by hand); else None."""
        frozen = self._freeze_in_force()
        if frozen is None or not isinstance(self.data, np.ndarray) or self.data.flags.writeable:
            return None
        return frozen[1]

    # ---- in-place changes (tracked by the version counter) -----------------------
    def _in_place(self, op, update):
        if self.is_frozen:
            raise RuntimeError(f"{op}: the tensor (shape {self.shape}) is frozen, its values read-only; "
                               "call unfreeze_() (or Module.unfreeze()) before changing it")
        if _grad_enabled and self.requires_grad and self.creator is None:
            raise RuntimeError(f"{op}: a leaf tensor that requires grad cannot be changed in place while "
                               "gradients are recorded; use `with minigrad.no_grad():`")
        if _grad_enabled and self.creator is not None:
            raise RuntimeError(f"{op}: in-place changes to a tensor inside a recorded graph are not supported; "
                               "use the out-of-place op")
        value = update.data if isinstance(update, Tensor) else update
        if isinstance(update, Tensor):
            _check_same_kind(op, (self, update))
        return value

    def _bump(self):
        self._version[0] += 1
        return self

    def add_(self, other):
        self.data += self._in_place("add_", other)
        return self._bump()

    def sub_(self, other):
        self.data -= self._in_place("sub_", other)
        return self._bump()

    def mul_(self, other):
        self.data *= self._in_place("mul_", other)
        return self._bump()

    def div_(self, other):
        self.data /= self._in_place("div_", other)
        return self._bump()

    def copy_(self, other):
        self.data[...] = self._in_place("copy_", other)
        return self._bump()

    def fill_(self, value):
        self.data[...] = self._in_place("fill_", value)
        return self._bump()

    def zero_(self):
        return self.fill_(0)

    __iadd__, __isub__, __imul__, __itruediv__ = add_, sub_, mul_, div_

    def argmax(self, dim=None) -> Tensor:
        return Tensor(self.data.argmax(axis=dim))

    # ---- autograd ------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False):
        """Compute the gradient of this tensor with respect to every leaf that
        requires one, adding it into the leaf's `.grad`.  Every array is made, and every kernel launched,
        on the device of the arrays it works on (CuPy allocates and launches on the current GPU, whatever
        the arrays': on cuda:1 a launch there would read another GPU's memory)."""
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no graph "
                               "(create its inputs with requires_grad=True)")
        with on_device_of(self.data):
            if grad is None:
                if self.data.size != 1:
                    raise RuntimeError(f"backward: grad can be omitted only for a one-element output, "
                                       f"got shape {self.shape}; pass grad= of that shape")
                grad = array_module(self.data).ones_like(self.data)
            else:
                grad = grad.data if isinstance(grad, Tensor) else array_module(self.data).asarray(grad, self.dtype)
                if grad.shape != self.data.shape:
                    raise ValueError(f"backward: grad has shape {grad.shape} but the tensor has shape {self.shape}")
        if self.creator is None:
            with on_device_of(self.data):
                _accumulate(self, [grad])
            return
        pending = {}                              # the gradients flowing into each node's outputs, and each leaf
        fresh = set()                             # ids of leaf gradients that nothing else holds (fresh_grads)
        _add_gradient(pending, self.creator, self._output_index, grad)
        for fn in _topological_order(self.creator):
            slots = pending.pop(fn, None)
            if slots is None:
                continue
            with on_device_of(next(g for parts in slots for g in parts)):
                self._run_node(fn, slots, pending, fresh, retain_graph)
        for leaf, (parts,) in pending.items():   # only leaves are left: every Function was visited
            with on_device_of(parts[0]):
                _accumulate(leaf, parts, fresh)

    @staticmethod
    def _run_node(fn, slots, pending, fresh, retain_graph):
        """One node's backward: its outputs' gradients summed, checked, passed back along its edges."""
        slots = [_sum(parts) for parts in slots]
        if fn.released:
            raise RuntimeError(f"backward: trying to backward through the graph a second time "
                               f"(the buffers of {fn.op_name()} were freed); "
                               "pass retain_graph=True to the first backward")
        grad_out = tuple(slots) if fn.tuple_output else slots[0]
        for index, (counter, seen) in enumerate(fn.input_versions):
            if counter[0] != seen:
                raise RuntimeError(f"backward: input {index} of {fn.op_name()} was modified by an in-place "
                                   f"operation after it was used (version {seen} then, {counter[0]} now); "
                                   "its gradient would be wrong. Use an out-of-place op (x = x + y) instead")
        if _observer is not None:
            for g in slots:
                if g is not None:
                    synchronize(g)
        start = time.perf_counter()
        grads = fn.backward(grad_out)
        if not isinstance(grads, tuple):
            grads = (grads,)
        if _observer is not None:
            for g in grads:
                if g is not None:
                    synchronize(g)
            _observer.backward(fn, slots, grads, time.perf_counter() - start)
        for edge, g in zip(fn.edges, grads):
            if edge is None or g is None:
                continue
            if isinstance(edge, Tensor):
                _add_gradient(pending, edge, 0, g)
                if fn.fresh_grads:
                    fresh.add(id(g))
            else:
                _add_gradient(pending, *edge, g)
        if not retain_graph:
            fn.release()

    # ---- arithmetic (broadcasting like NumPy, promoting dtypes like PyTorch) --------
    def __add__(self, other): return Add()(*_promoted(self, other))
    def __radd__(self, other): return Add()(*_promoted(self, other, reflected=True))
    def __sub__(self, other): return Sub()(*_promoted(self, other))
    def __rsub__(self, other): return Sub()(*_promoted(self, other, reflected=True))
    def __mul__(self, other): return Mul()(*_promoted(self, other))
    def __rmul__(self, other): return Mul()(*_promoted(self, other, reflected=True))
    def __truediv__(self, other): return Div()(*_promoted(self, other, floating=True))
    def __rtruediv__(self, other): return Div()(*_promoted(self, other, reflected=True, floating=True))
    def __matmul__(self, other): return MatMul()(*_promoted(self, other))
    def __neg__(self): return Neg()(self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor) or not np.isscalar(exponent):
            raise TypeError(f"pow: only a Python or NumPy scalar exponent is supported, got {type(exponent).__name__}")
        base = self.to(_result_dtype(self, exponent))
        return Pow(exponent)(base)

    def float(self) -> Tensor:
        """This tensor as float32 (itself if it is): a copy that stays in the graph."""
        return self.to(np.float32)

    def double(self) -> Tensor:
        """This tensor as float64 (itself if it is): a copy that stays in the graph."""
        return self.to(np.float64)

    # ---- shape ops ---------------------------------------------------------
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return Reshape(tuple(shape))(self)

    def view(self, *shape):
        return self.reshape(*shape)

    def permute(self, *dims):
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        normalized = tuple(_normalize_dim("permute", d, self.ndim) for d in dims)
        if sorted(normalized) != list(range(self.ndim)):
            raise ValueError(f"permute: dims {tuple(dims)} are not a permutation of the {self.ndim} dims "
                             f"of shape {self.shape}")
        return Permute(normalized)(self)

    def transpose(self, dim0, dim1):
        dims = list(range(self.ndim))
        a, b = _normalize_dim("transpose", dim0, self.ndim), _normalize_dim("transpose", dim1, self.ndim)
        dims[a], dims[b] = dims[b], dims[a]
        return Permute(tuple(dims))(self)

    @property
    def T(self):
        return Permute(tuple(reversed(range(self.ndim))))(self)

    def split(self, split_size_or_sections, dim=0):
        """minigrad.split(self, ...): a tuple of pieces along dim, as torch.Tensor.split."""
        from .functional import split  # the op lives with cat, its inverse
        return split(self, split_size_or_sections, dim)

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        start = _normalize_dim("flatten", start_dim, self.ndim)
        end = _normalize_dim("flatten", end_dim, self.ndim)
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {self.shape}")
        shape = self.shape
        return self.reshape(shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:])

    def sum(self, dim=None, keepdim=False):
        return Sum(_normalize_dims("sum", dim, self.ndim), keepdim)(self)

    def mean(self, dim=None, keepdim=False):
        axes = _normalize_dims("mean", dim, self.ndim)
        count = int(np.prod([self.shape[a] for a in axes])) if axes else 1
        return self.sum(dim, keepdim) / count


def is_view_of(out, a) -> bool:
    """Whether an op's output shares memory with its input (then in-place changes to either are seen by both,
    and the op sets shares_input_memory so that they share one version counter)."""
    return bool(array_module(a).may_share_memory(out, a))


def _add_gradient(pending, node, index, grad):
    """Collect grad for output `index` of a Function, or for a leaf Tensor (index 0).  A value used
    more than once gets several; they are summed in one pass (kernels' add_n) when the node's turn
    comes, rather than pairwise as they arrive: one fresh array, each part read once."""
    slots = pending.get(node)
    if slots is None:
        slots = pending[node] = [[] for _ in range(node.outputs if isinstance(node, Function) else 1)]
    slots[index].append(grad)


def _sum(parts):
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else kernels.for_array(parts[0]).add_n(parts)


def _memory_owner(a):
    """The array that owns a's memory (a view's .base names it directly, never another view)."""
    return a if a.base is None else a.base


def _accumulate(leaf: Tensor, parts, fresh=frozenset()):
    if leaf.grad is not None:
        leaf.grad = Tensor(_sum([leaf.grad.data, *parts]))
    elif len(parts) > 1:                         # the sum is a fresh array, the leaf's own
        leaf.grad = Tensor(_sum(parts))
    elif id(parts[0]) in fresh:                  # already the leaf's own (see Function.fresh_grads)
        leaf.grad = Tensor(parts[0])
    else:    # a copy, as backward may hand one array to several inputs; in its own memory order (a C-order
        leaf.grad = Tensor(parts[0].copy(order="K"))          # copy of a channel slice would be a transpose)


def _topological_order(root: Function):
    """Every Function reachable from root, each before the Functions that made its inputs.

    Iterative depth-first search (post-order, then reversed): no recursion limit.  A node counts as
    visited when it is expanded, not when it is first pushed: a node pushed early as a direct input of
    the root can still be reached later through a longer path, and must then come after that path.
    """
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        fn, expanded = stack.pop()
        if expanded:
            order.append(fn)
            continue
        if fn in visited:
            continue
        visited.add(fn)
        stack.append((fn, True))
        for edge in fn.edges:
            if isinstance(edge, tuple) and edge[0] not in visited:
                stack.append((edge[0], False))
    order.reverse()
    return order


def _check_memory_format(op, memory_format, t):
    if memory_format not in Tensor.MEMORY_FORMATS:
        raise ValueError(f"{op}: memory_format must be one of {Tensor.MEMORY_FORMATS}, got {memory_format!r}")
    if memory_format == "channels_last" and t.ndim != 4:
        raise ValueError(f"{op}: channels_last needs a 4-D tensor (N, C, H, W), got shape {t.shape}")


# PyTorch's type promotion: booleans < integers < floats.  Two tensors of one category meet in the wider dtype;
# of two categories, in the higher one's tensor's dtype.  A constant (a Python or NumPy number, or an array)
# takes the tensor's dtype unless it is of a higher category: then the default dtype of its category.
_CATEGORY = {"b": 0, "i": 1, "u": 1, "f": 2}
_DEFAULT_OF_CATEGORY = {1: np.dtype(np.int64), 2: np.dtype(np.float32)}


def _result_dtype(tensor: Tensor, other):
    category = _CATEGORY[tensor.dtype.kind]
    if isinstance(other, Tensor):
        other_category = _CATEGORY[other.dtype.kind]
        if other_category == category:
            return np.promote_types(tensor.dtype, other.dtype)
        return tensor.dtype if category > other_category else other.dtype
    kind = np.asarray(other).dtype.kind
    if kind not in _CATEGORY:
        raise TypeError(f"arithmetic: cannot combine a tensor of dtype {tensor.dtype} with a {type(other).__name__}")
    other_category = _CATEGORY[kind]
    return _DEFAULT_OF_CATEGORY[other_category] if other_category > category else tensor.dtype


def _promoted(tensor: Tensor, other, reflected=False, floating=False):
    """(tensor, other) as Tensors of one dtype and device (other first if reflected), by the rule above;
    floating: at least float32 (true division of integers)."""
    dtype = _result_dtype(tensor, other)
    if floating and dtype.kind != "f":
        dtype = np.dtype(np.float32)
    if isinstance(other, Tensor):
        other = other.to(dtype)
    else:
        other = Tensor(array_module(tensor.data).asarray(other, dtype=dtype))
    tensor = tensor.to(dtype)
    return (other, tensor) if reflected else (tensor, other)


def _normalize_dim(op, dim, ndim):
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise ValueError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dims")
    return dim % max(ndim, 1)


def _normalize_dims(op, dim, ndim):
    if dim is None:
        return tuple(range(ndim))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return tuple(sorted({_normalize_dim(op, d, ndim) for d in dims}))


def unbroadcast(grad, shape):
    """Sum grad over the axes that broadcasting added or stretched, back to `shape`."""
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


# ---- the arithmetic and shape Functions ------------------------------------

class Add(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, grad):
        return unbroadcast(grad, self.shapes[0]), unbroadcast(grad, self.shapes[1])


class Sub(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, grad):
        return unbroadcast(grad, self.shapes[0]), unbroadcast(-grad, self.shapes[1])


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        return unbroadcast(grad * self.b, self.a.shape), unbroadcast(grad * self.a, self.b.shape)


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):
        grad_a = grad / self.b
        return unbroadcast(grad_a, self.a.shape), unbroadcast(-grad_a * self.a / self.b, self.b.shape)


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, grad):
        return -grad


class Pow(Function):
    name = "pow"

    def __init__(self, exponent):
        self.exponent = exponent

    def forward(self, a):
        self.a = a
        return a ** self.exponent

    def backward(self, grad):
        return grad * self.exponent * self.a ** (self.exponent - 1)


class MatMul(Function):
    """a @ b with NumPy's (and torch.matmul's) rules: 1-D operands as a row or a column, the leading dimensions of
    N-D operands broadcast (a stack of matrices)."""
    name = "matmul"

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0 or a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"matmul: the operands' inner dimensions must agree (..., n, k) @ (..., k, m), got shapes "
                             f"{a.shape} and {b.shape}")
        try:
            out = a @ b
        except ValueError:
            raise ValueError(f"matmul: the leading dimensions of shapes {a.shape} and {b.shape} do not broadcast") from None
        self.a, self.b = a, b
        return out

    def backward(self, grad):
        a = self.a[None] if self.a.ndim == 1 else self.a                  # a row
        b = self.b[:, None] if self.b.ndim == 1 else self.b               # a column
        g = grad
        if self.b.ndim == 1:
            g = g[..., None]                                              # the column's axis back
        if self.a.ndim == 1:
            g = g[..., None, :]                                           # the row's axis back
        grad_a = unbroadcast(g @ b.swapaxes(-1, -2), a.shape)
        grad_b = unbroadcast(a.swapaxes(-1, -2) @ g, b.shape)
        return grad_a.reshape(self.a.shape), grad_b.reshape(self.b.shape)


class Cast(Function):
    """A copy in another dtype; its gradient comes back in the input's dtype."""
    name = "to"

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, a):
        self.source = a.dtype
        return a.astype(self.dtype)

    def backward(self, grad):
        return grad.astype(self.source)


class ToDevice(Function):
    name = "to"

    def __init__(self, device):
        self.device = device

    def forward(self, a):
        self.source = device_of(a)
        return to_device(a, self.device)

    def backward(self, grad):
        return to_device(grad, self.source)


class Contiguous(Function):
    name = "contiguous"

    def __init__(self, memory_format):
        self.memory_format = memory_format

    def forward(self, a):
        xp = array_module(a)
        if self.memory_format == "channels_last":
            return xp.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        return xp.ascontiguousarray(a)

    def backward(self, grad):
        return grad                       # the same values, only laid out differently


class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, a):
        self.input_shape = a.shape
        try:
            out = a.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {a.shape} ({a.size} elements) "
                             f"to {self.shape}") from None
        self.shares_input_memory = is_view_of(out, a)        # a copy where the strides do not allow a view
        return out

    def backward(self, grad):
        return grad.reshape(self.input_shape)


class Permute(Function):
    shares_input_memory = True

    def __init__(self, dims):
        self.dims = dims

    def forward(self, a):
        return a.transpose(self.dims)

    def backward(self, grad):
        return grad.transpose(tuple(int(d) for d in np.argsort(self.dims)))


class Sum(Function):
    def __init__(self, axes, keepdim):
        self.axes, self.keepdim = axes, keepdim

    def forward(self, a):
        self.input_shape = a.shape
        return a.sum(axis=self.axes, keepdims=self.keepdim)

    def backward(self, grad):
        if not self.keepdim:
            grad = grad.reshape([1 if i in self.axes else n for i, n in enumerate(self.input_shape)])
        return array_module(grad).broadcast_to(grad, self.input_shape).copy()
