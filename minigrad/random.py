"""minigrad's random numbers: one seedable generator for initialisation and dropout.

Weights are drawn on the CPU (so a seed gives the same model on every device); dropout masks
on a GPU come from a CuPy generator per device, seeded from the same seed.
"""

from __future__ import annotations

import numpy as np

from . import backend
from .backend import array_module

_generator = np.random.default_rng()
_seed = None
_cuda_generators = {}        # device id -> cupy RandomState, made on first use (no GPU is touched before)


def manual_seed(seed: int):
    """Seed every random draw minigrad makes (weights, dropout masks)."""
    global _generator, _seed
    _generator = np.random.default_rng(seed)
    _seed = seed
    _cuda_generators.clear()


def generator() -> np.random.Generator:
    return _generator


def _cuda_generator():
    cupy = backend.cupy_module()
    device = cupy.cuda.Device().id
    if device not in _cuda_generators:
        _cuda_generators[device] = cupy.random.RandomState(None if _seed is None else _seed + device)
    return _cuda_generators[device]


def draw_uniform(shape, low, high, dtype=np.float32) -> np.ndarray:
    """Uniform samples in [low, high) from minigrad's generator as a NumPy array of dtype: every weight, and
    the CPU's dropout masks.  float32 is drawn as float32: GoogLeNet's 13M weights in about half the time of drawing
    float64 and converting, which was most of the time spent building the network."""
    dtype = np.dtype(dtype)
    if dtype != np.float32:
        return _generator.uniform(low, high, size=shape).astype(dtype, copy=False)
    values = _generator.random(shape, dtype=np.float32)
    values *= np.float32(high - low)
    values += np.float32(low)
    return values


def uniform(shape, like, low=0.0, high=1.0):
    """Uniform samples in [low, high) with like's dtype, on like's device."""
    if array_module(like) is np:
        return draw_uniform(shape, low, high, like.dtype)
    with like.device:
        return _cuda_generator().uniform(low, high, size=shape, dtype=like.dtype)
