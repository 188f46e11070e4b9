"""Optimizers, a learning-rate schedule and weight averaging, with PyTorch's update rules.

    optimizer = SGD([{"params": weights}, {"params": biases, "lr": 0.02, "weight_decay": 0}],
                    lr=0.01, momentum=0.9, weight_decay=2e-4)
    scheduler = lr_scheduler.StepLR(optimizer, step_size=8, gamma=0.96)   # the paper's schedule
"""

from __future__ import annotations

import math
import numbers
from types import SimpleNamespace

import kernels
from kernels.memory import aligned_copy

from .autograd import Tensor, no_grad
from .backend import array_module, on_device_of


class Optimizer:
    """Parameter groups (each a dict with "params" and its own hyper-parameters) and per-parameter state."""

    def __init__(self, params, defaults):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups = []
        seen = {}
        for i, group in enumerate(groups):
            if not isinstance(group, dict) or "params" not in group:
                raise TypeError(f"{type(self).__name__}: group {i} must be a dict with 'params', got {type(group).__name__}")
            group = {**defaults, **group, "params": list(group["params"])}
            for p in group["params"]:          # a frozen one is kept, and skipped while it has no gradient
                if not isinstance(p, Tensor) or not (p.requires_grad or p.is_frozen):
                    raise TypeError(f"{type(self).__name__}: group {i} holds a {type(p).__name__} that does not "
                                    "require grad; pass model.parameters()")
                if id(p) in seen:      # it would be updated twice a step
                    where = "twice in group" if seen[id(p)] == i else f"in groups {seen[id(p)]} and"
                    raise ValueError(f"{type(self).__name__}: a parameter of shape {p.shape} appears {where} {i}; "
                                     "each parameter must appear once")
                seen[id(p)] = i
            _check_hyperparameters(type(self).__name__, group)
            self.param_groups.append(group)
        self.state = {}                 # id(param) -> dict of arrays

    def zero_grad(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def _parameters(self):
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self):
        """Hyper-parameters per group and each parameter's state, keyed by its position: a snapshot (the
        arrays are copies, since the updates change the optimizer's own in place)."""
        index = {id(p): i for i, p in enumerate(self._parameters())}
        return {"param_groups": [{k: v for k, v in g.items() if k != "params"} | {"params": [index[id(p)] for p in
                                 g["params"]]} for g in self.param_groups],
                "state": {index[key]: {k: v.copy(order="K") if hasattr(v, "shape") else v for k, v in value.items()}
                          for key, value in self.state.items() if key in index}}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(len(a["params"]) != len(b["params"])
                                                        for a, b in zip(groups, self.param_groups)):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the saved parameter groups "
                             f"({[len(g['params']) for g in groups]} parameters) do not match this optimizer's "
                             f"({[len(g['params']) for g in self.param_groups]})")
        params = self._parameters()
        for saved, group in zip(groups, self.param_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for position, value in state_dict["state"].items():
            p = params[int(position)]
            xp = array_module(p.data)
            self.state[id(p)] = {k: xp.array(v, dtype=p.dtype) if hasattr(v, "shape") else v   # copies: see state_dict
                                 for k, v in value.items()}

    def step(self):
        for index, p in enumerate(self._parameters()):       # all checked before any is changed
            if p.grad is not None and p.grad.shape != p.shape:     # NumPy would broadcast: a silently wrong step
                raise ValueError(f"{type(self).__name__}.step: parameter {index} has shape {p.shape} but its grad "
                                 f"has shape {p.grad.shape}")
            if p.grad is not None and p.is_frozen:
                raise RuntimeError(f"{type(self).__name__}.step: parameter {index} (shape {p.shape}) is frozen, its "
                                   "values read-only; unfreeze it (Module.unfreeze() or Tensor.unfreeze_()) to train it")
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        with on_device_of(p.data):       # its state made, its kernel launched, on its own device
                            self.update(p, p.grad.data, group, self.state.setdefault(id(p), {}))
                        p._bump()           # an in-place change: a graph that saved p sees it

    def update(self, p, grad, group, state):
        raise NotImplementedError


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_hyperparameters(name, group):
    """PyTorch's ranges, and finite: a NaN learning rate would silently make every weight NaN."""
    for key in ("lr", "momentum", "weight_decay", "eps"):
        if key in group and not (_is_number(group[key]) and math.isfinite(group[key]) and group[key] >= 0):
            raise ValueError(f"{name}: {key} must be a finite number >= 0, got {group[key]!r}")
    if "betas" in group:
        betas = group["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2
                and all(_is_number(b) and 0 <= b < 1 for b in betas)):
            raise ValueError(f"{name}: betas must be a pair of numbers in [0, 1), got {betas!r}")
    if group.get("nesterov") and group.get("momentum", 0) <= 0:
        raise ValueError(f"{name}: nesterov needs momentum > 0")


class SGD(Optimizer):
    """p -= lr * d, where d = grad + weight_decay * p, through momentum (PyTorch's form:
    buf = momentum * buf + d; d = buf, or d + momentum * buf with nesterov)."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov))

    def update(self, p, grad, group, state):
        # In place, in one pass over each parameter on the Numba and CUDA paths (kernels' sgd_update), with
        # the same roundings as PyTorch's update.  GoogLeNet's 54 MB of parameters with momentum and weight
        # decay, measured: a fresh array per term 48 ms a step, six NumPy passes in place 40-48 ms, one 13-14 ms.
        _, buffer = kernels.for_array(p.data).sgd_update(p.data, grad, state.get("momentum_buffer"), group["lr"],
                                                         group["momentum"], group["weight_decay"], group["nesterov"])
        if buffer is not None:
            state["momentum_buffer"] = buffer


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; weight_decay adds weight_decay * p to the gradient."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas) if isinstance(betas, (tuple, list)) else betas, eps=eps,
                                      weight_decay=weight_decay))

    def update(self, p, grad, group, state):
        # The moments change in place (SGD's reason); each term rounds as in m = beta1 * m + (1 - beta1) * g.
        xp = array_module(p.data)
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p.data
        beta1, beta2 = group["betas"]
        step = state.get("step", 0) + 1
        if "exp_avg" not in state:
            state.update(exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        state["step"] = step
        denominator = v / (1 - beta2 ** step)
        xp.sqrt(denominator, out=denominator)
        denominator += group["eps"]
        update = group["lr"] / (1 - beta1 ** step) * m
        update /= denominator
        p.data -= update.astype(p.dtype, copy=False)


class RMSprop(Optimizer):
    """RMSprop with PyTorch's rule: v = alpha * v + (1 - alpha) * g^2 (g the gradient plus weight_decay * p);
    the step g / (sqrt(v) + eps), or with centered, g / (sqrt(v - m^2) + eps) with m the running mean of g;
    through momentum (buf = momentum * buf + step) if momentum > 0; p -= lr * step.  "Rethinking the Inception
    Architecture" trained Inception-v3 with it (decay 0.9, eps 1.0)."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        if not (_is_number(alpha) and 0 <= alpha <= 1):
            raise ValueError(f"RMSprop: alpha must be a number in [0, 1], got {alpha!r}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=bool(centered)))

    def update(self, p, grad, group, state):
        xp = array_module(p.data)
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p.data
        alpha = group["alpha"]
        if "square_avg" not in state:
            state["square_avg"] = xp.zeros_like(p.data)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(p.data)
        square = state["square_avg"]
        square *= alpha
        square += (1 - alpha) * grad * grad
        if group["centered"]:
            mean = state["grad_avg"]
            mean *= alpha
            mean += (1 - alpha) * grad
            denominator = xp.sqrt(square - mean * mean)
        else:
            denominator = xp.sqrt(square)
        denominator += group["eps"]
        step = grad / denominator
        if group["momentum"] > 0:
            buffer = state.setdefault("momentum_buffer", xp.zeros_like(p.data))
            buffer *= group["momentum"]
            buffer += step
            step = buffer
        p.data -= (group["lr"] * step).astype(p.dtype, copy=False)


class _StepLR:
    """Multiply every group's learning rate by gamma every step_size calls of step() (epochs)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        if not isinstance(step_size, numbers.Integral) or isinstance(step_size, bool) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        if not (_is_number(gamma) and math.isfinite(gamma) and gamma > 0):
            raise ValueError(f"StepLR: gamma must be a finite number > 0, got {gamma!r}")
        self.optimizer, self.step_size, self.gamma = optimizer, step_size, gamma
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.last_epoch = 0

    def step(self):
        self.last_epoch += 1
        factor = self.gamma ** (self.last_epoch // self.step_size)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self):
        return {"step_size": self.step_size, "gamma": self.gamma, "base_lrs": list(self.base_lrs),
                "last_epoch": self.last_epoch}

    def load_state_dict(self, state):
        self.step_size, self.gamma = state["step_size"], state["gamma"]
        self.base_lrs, self.last_epoch = list(state["base_lrs"]), state["last_epoch"]


lr_scheduler = SimpleNamespace(StepLR=_StepLR)


class Polyak:
    """Polyak (exponential moving) averaging of a model's weights, as the paper used for its final model:
    after every optimizer step, average = decay * average + (1 - decay) * weights.  `with ema.applied():`
    swaps the averaged weights in (for evaluation) and restores the trained ones afterwards."""

    def __init__(self, model, decay=0.999):
        if not (_is_number(decay) and 0 < decay < 1):
            raise ValueError(f"Polyak: decay must be a number in (0, 1), got {decay!r}")
        self.model, self.decay, self.updates = model, decay, 0
        self.average = {}
        for name, p in model.named_parameters():
            with on_device_of(p.data):
                self.average[name] = aligned_copy(p.data)

    def update(self):
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))   # warm-up: early weights count less
        for name, p in self.model.named_parameters():
            with on_device_of(p.data):
                self.average[name] *= decay
                self.average[name] += (1 - decay) * p.data

    def applied(self):
        import contextlib

        @contextlib.contextmanager
        def swap():
            saved = {name: p.data for name, p in self.model.named_parameters()}
            for name, p in self.model.named_parameters():
                p.data = aligned_copy(self.average[name])
            try:
                yield self.model
            finally:
                for name, p in self.model.named_parameters():
                    p.data = saved[name]
        return swap()

    def state_dict(self):
        return {"decay": self.decay, "updates": self.updates, "average": dict(self.average)}

    def load_state_dict(self, state):
        self.decay, self.updates = state["decay"], state["updates"]
        devices = {name: p.data for name, p in self.model.named_parameters()}
        self.average = {k: array_module(devices[k]).array(v, copy=True) for k, v in state["average"].items()}


def parameter_groups(model, lr, weight_decay):
    """The reference GoogLeNet's groups: weights at lr with weight decay, biases at twice the lr without."""
    weights = [p for name, p in model.named_parameters() if not name.endswith("bias")]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    return [{"params": weights, "lr": lr, "weight_decay": weight_decay},
            {"params": biases, "lr": 2 * lr, "weight_decay": 0.0}]


__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "lr_scheduler", "Polyak", "parameter_groups"]
