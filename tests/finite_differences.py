"""Central differences, shared by the gradient checks (importable from any test: pytest puts
this folder on sys.path for tests/conftest.py)."""
import numpy as np


def numerical_grad(scalar_fn, x, eps=1e-6):
    """d scalar_fn() / d x by central differences, one element of ``x`` at a time (``x`` is
    perturbed in place and restored). x: any float64 array; returns an array of its shape."""
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        up = scalar_fn()
        x[idx] = old - eps
        down = scalar_fn()
        x[idx] = old
        num[idx] = (up - down) / (2 * eps)
    return num
