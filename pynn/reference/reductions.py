"""Reductions the training loop needs (gradient-norm clipping, the finite-input check)."""
import numpy as np

from cnn_core import _checks


def sum_of_squares(x):
    """``sum(x**2)`` as a Python float, accumulated in float64.

    x: any shape, float32 or float64, not empty. Used for clipnorm / global_clipnorm.
    """
    _checks.check_array(x, "x")
    x64 = x.astype(np.float64)
    return float(np.sum(x64 * x64))


def all_finite(x):
    """True when no element of x is NaN or +-inf. x: any shape, float32 or float64."""
    if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64):
        raise TypeError("x must be a float32 or float64 ndarray")
    return bool(np.isfinite(x).all())
