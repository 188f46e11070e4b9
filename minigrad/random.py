"""minigrad's random numbers: one seedable generator for initialisation and dropout."""

from __future__ import annotations

import numpy as np

from . import backend
from .backend import array_module

_generator = np.random.default_rng()


def manual_seed(seed: int):
    """Seed every random draw minigrad makes (weights, dropout masks)."""
    global _generator
    _generator = np.random.default_rng(seed)
    if backend.cupy is not None:
        backend.cupy.random.seed(seed)


def generator() -> np.random.Generator:
    return _generator


def uniform(shape, like, low=0.0, high=1.0):
    """Uniform samples in [low, high) with like's dtype, on like's device."""
    xp = array_module(like)
    if xp is np:
        return _generator.uniform(low, high, size=shape).astype(like.dtype)
    return xp.random.uniform(low, high, size=shape, dtype=like.dtype)
