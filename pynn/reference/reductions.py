"""Reductions the training loop needs (gradient-norm clipping)."""
import numpy as np

from cnn_core import _checks


def sum_of_squares(x):
    """``sum(x**2)`` as a Python float, accumulated in float64.

    x: any shape, float32 or float64, not empty. Used for clipnorm / global_clipnorm.
    """
    _checks.check_array(x, "x")
    x64 = x.astype(np.float64)
    return float(np.sum(x64 * x64))
