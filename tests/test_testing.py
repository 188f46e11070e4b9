"""minigrad.testing: one table of tolerances, and assert_close."""

import numpy as np
import pytest

import minigrad
from minigrad.testing import TOLERANCES, assert_close, tolerance


def test_tolerances_by_kind_and_dtype():
    assert tolerance("kernel", np.float32) == TOLERANCES["kernel"][np.float32]
    assert tolerance("library", "float64") == TOLERANCES["library"][np.float64]
    assert tolerance("path", np.int32) == (0.0, 0.0)                     # integers compare exactly
    with pytest.raises(ValueError, match="tolerance: kind must be one of"):
        tolerance("loose", np.float32)
    with pytest.raises(TypeError, match="tolerance: no tolerance for dtype float16"):
        tolerance("kernel", np.float16)


def test_assert_close_applies_rtol_and_scaled_atol():
    rtol, atol = TOLERANCES["kernel"][np.float32]
    expected = np.array([1.0, 100.0], np.float32)
    assert_close(expected + np.float32([atol * 0.5, 100 * rtol * 0.5]), expected)
    with pytest.raises(AssertionError):
        assert_close(expected + np.float32([atol * 3, 0]), expected)
    assert_close(expected + np.float32([atol * 3, 0]), expected, scale=4)      # atol scaled by the magnitude
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_close(expected[:1], expected)
    with pytest.raises(AssertionError, match="dtypes differ"):
        assert_close(expected.astype(np.float64), expected)
    assert_close(minigrad.tensor(expected), expected, "library")            # Tensors compared on the host
    with pytest.raises(AssertionError):
        assert_close(np.array([1, 2]), np.array([1, 3]))
