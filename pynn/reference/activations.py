"""Activation functions ``a = f(z)`` and their backward ``dL/dz = dL/da * f'(z)``.

Elementwise: identity (linear), relu, leaky_relu (param: negative slope, default 0.2),
elu (param: alpha, default 1.0), sigmoid, tanh, softplus, gelu (exact, erf based).
Row-wise over the last axis: softmax, log_softmax (the row max is subtracted first, so large
logits never overflow exp).

The computation stays in the input dtype; only erf is evaluated in float64 (``math.erf``,
exact) and cast back.
"""
import math

import numpy as np

from cnn_core import _checks

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_erf_float64 = np.vectorize(math.erf, otypes=[np.float64])


def _erf(x):
    """erf elementwise, in the dtype of ``x`` (exact: the C library's erf through math.erf)."""
    return _erf_float64(x).astype(x.dtype, copy=False)


def _sigmoid(z):
    """1 / (1 + exp(-z)) without overflow: exp is only ever taken of a non-positive number."""
    e = np.exp(-np.abs(z))  # in (0, 1]
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softmax(z):
    shifted = z - np.max(z, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


def _log_softmax(z):
    shifted = z - np.max(z, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _forward(name, z, param):
    """f(z) for one activation name (already resolved by ``_checks.resolve_activation``)."""
    if name == "identity":
        return z.copy()
    if name == "relu":
        return np.where(z > 0, z, 0).astype(z.dtype, copy=False)
    if name == "leaky_relu":
        return np.where(z > 0, z, param * z)
    if name == "elu":
        return np.where(z > 0, z, param * np.expm1(np.minimum(z, 0)))
    if name == "sigmoid":
        return _sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "softplus":
        return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))  # log(1 + e^z), stable
    if name == "gelu":
        return 0.5 * z * (1 + _erf(z * _SQRT_HALF))  # z * Phi(z)
    if name == "softmax":
        return _softmax(z)
    if name == "log_softmax":
        return _log_softmax(z)
    raise AssertionError(name)


def _derivative(name, z, param):
    """f'(z) elementwise (not defined for the row-wise activations)."""
    if name == "identity":
        return np.ones_like(z)
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "leaky_relu":
        return np.where(z > 0, 1, param).astype(z.dtype, copy=False)
    if name == "elu":
        return np.where(z > 0, 1, param * np.exp(np.minimum(z, 0))).astype(z.dtype, copy=False)
    if name == "sigmoid":
        s = _sigmoid(z)
        return s * (1 - s)
    if name == "tanh":
        t = np.tanh(z)
        return 1 - t * t
    if name == "softplus":
        return _sigmoid(z)
    if name == "gelu":
        # d/dz [z Phi(z)] = Phi(z) + z phi(z), with phi the standard normal density
        return 0.5 * (1 + _erf(z * _SQRT_HALF)) + z * _INV_SQRT_2PI * np.exp(-0.5 * z * z)
    raise AssertionError(name)


def _backward(name, grad, z, a, param):
    """dL/dz from dL/da = grad (the equations of docs/kernel_api.md)."""
    if name == "softmax":
        # Jacobian of softmax: da_i/dz_j = a_i (delta_ij - a_j)
        return a * (grad - np.sum(grad * a, axis=-1, keepdims=True))
    if name == "log_softmax":
        # da_i/dz_j = delta_ij - softmax_j, and softmax = exp(log_softmax)
        return grad - np.exp(a) * np.sum(grad, axis=-1, keepdims=True)
    return grad * _derivative(name, z, param)


def activation_forward(x, activation, *, param=None, out=None):
    """``out = f(x)``.

    x: any shape (softmax/log_softmax: ndim >= 1, over the last axis), float32 or float64,
    C-contiguous, not empty. param: leaky_relu slope / elu alpha (None: the default).
    out: x.shape, x.dtype, C-contiguous (may be ``x`` itself). Returns out.
    """
    name, _, param = _checks.resolve_activation(activation, param)
    row_wise = name in _checks.ROW_WISE_ACTIVATIONS
    _checks.check_array(x, "x", min_ndim=1 if row_wise else None)
    _checks.check_contiguous(x, "x")
    out = _checks.check_out(out, "out", x.shape, x.dtype)
    out[...] = _forward(name, x, param)
    return out


def activation_backward(grad, z, a, activation, *, param=None, out=None):
    """``out = dL/dz`` given ``grad = dL/da``, the pre-activation ``z`` and ``a = f(z)``.

    grad, z, a: one shape, one float dtype, C-contiguous, not empty. Elementwise activations:
    ``grad * f'(z)``; softmax: ``a * (grad - sum(grad * a, -1))``; log_softmax:
    ``grad - exp(a) * sum(grad, -1)``. out: grad.shape, grad.dtype (may be ``grad``).
    Returns out.
    """
    name, _, param = _checks.resolve_activation(activation, param)
    row_wise = name in _checks.ROW_WISE_ACTIVATIONS
    _checks.check_array(grad, "grad", min_ndim=1 if row_wise else None)
    _checks.check_contiguous(grad, "grad")
    _checks.check_like(z, "z", grad, "grad")
    _checks.check_like(a, "a", grad, "grad")
    out = _checks.check_out(out, "out", grad.shape, grad.dtype)
    out[...] = _backward(name, grad, z, a, param)
    return out
