"""Hypothesis strategies shared by the tests: window geometries and tie-free inputs."""

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from kernels.geometry import conv_out_size

# Ranges of the engine's gradient checks (issue 2).
batch = st.integers(1, 3)
channels = st.integers(1, 6)
size = st.integers(1, 13)
kernel = st.integers(1, 5)
stride = st.integers(1, 3)
padding = st.integers(0, 2)


@st.composite
def conv_geometry(draw, max_channels=6):
    """(x_shape, w_shape, stride, padding) for a valid convolution; invalid ones are assumed away."""
    n, c, o = draw(batch), draw(st.integers(1, max_channels)), draw(st.integers(1, max_channels))
    h, w = draw(size), draw(size)
    kh, kw = draw(kernel), draw(kernel)
    sh, sw = draw(stride), draw(stride)
    ph, pw = draw(padding), draw(padding)
    assume(kh <= h + 2 * ph and kw <= w + 2 * pw)
    assume(conv_out_size(h, kh, sh, ph) >= 1 and conv_out_size(w, kw, sw, pw) >= 1)
    return (n, c, h, w), (o, c, kh, kw), (sh, sw), (ph, pw)


@st.composite
def pool_geometry(draw, max_channels=6):
    """(x_shape, kernel, stride, padding, ceil_mode) valid for max/avg pooling."""
    n, c = draw(batch), draw(st.integers(1, max_channels))
    h, w = draw(size), draw(size)
    kh, kw = draw(kernel), draw(kernel)
    sh, sw = draw(stride), draw(stride)
    ph, pw = draw(padding), draw(padding)
    ceil_mode = draw(st.booleans())
    assume(ph <= kh // 2 and pw <= kw // 2)
    assume(kh <= h + 2 * ph and kw <= w + 2 * pw)
    return (n, c, h, w), (kh, kw), (sh, sw), (ph, pw), ceil_mode


def distinct_values(shape, seed, dtype=np.float64, spacing=0.01):
    """Values with no two equal (gaps of `spacing`, in random order): max-pool windows have no ties,
    so a finite-difference step never changes which element wins."""
    rng = np.random.default_rng(seed)
    count = int(np.prod(shape))
    return ((rng.permutation(count) - count / 2) * spacing).reshape(shape).astype(dtype)


def away_from_zero(shape, seed, dtype=np.float64, margin=0.05):
    """Normal values pushed at least `margin` away from 0 (ReLU's kink)."""
    values = np.random.default_rng(seed).standard_normal(shape)
    return (values + np.sign(values) * margin).astype(dtype)


seeds = st.integers(0, 2**31 - 1)
