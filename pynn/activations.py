"""Activation functions with Keras 3 names, computed by the backend kernels.

``get(identifier)`` returns the function (Keras); layers use ``resolve(identifier)`` to get the
``(name, param)`` pair they hand to ``dense_forward``/``activation_forward`` and
``dense_backward``/``activation_backward``. Only these built-in activations can be trained:
their derivatives live in the kernels; an arbitrary Python callable has none.
"""
import numpy as np

from pynn.backend import get_backend

# name -> kernel parameter (None: the kernel's default, or no parameter)
_DEFAULT_PARAM = {
    "linear": None,
    "relu": None,
    "leaky_relu": 0.2,
    "elu": 1.0,
    "sigmoid": None,
    "tanh": None,
    "softplus": None,
    "gelu": None,
    "softmax": None,
    "log_softmax": None,
}
ALIASES = {"identity": "linear", None: "linear"}


def _as_input(x):
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        from pynn.utils import floatx

        x = x.astype(floatx())
    return np.ascontiguousarray(x)


def _run(x, name, param=None):
    return get_backend().activation_forward(_as_input(x), name, param=param)


def _last_axis(x, axis, name, param=None):
    x = _as_input(x)
    if axis in (-1, x.ndim - 1):
        return _run(x, name, param)
    moved = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    return np.moveaxis(_run(moved, name, param), -1, axis)


def linear(x):
    """Identity: ``x`` (as a float array)."""
    return _as_input(x)


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """``max(x, 0)``; Keras' options: a leaky slope, a ceiling and a threshold."""
    if max_value is None and threshold == 0.0:
        if negative_slope == 0.0:
            return _run(x, "relu")
        return _run(x, "leaky_relu", float(negative_slope))
    x = _as_input(x)
    out = np.where(x >= threshold, x, negative_slope * (x - threshold)).astype(x.dtype)
    if max_value is not None:
        np.minimum(out, max_value, out=out)
    return out


def leaky_relu(x, negative_slope=0.2):
    """``x`` for x > 0, ``negative_slope * x`` otherwise."""
    return _run(x, "leaky_relu", float(negative_slope))


def elu(x, alpha=1.0):
    """``x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise."""
    return _run(x, "elu", float(alpha))


def sigmoid(x):
    return _run(x, "sigmoid")


def tanh(x):
    return _run(x, "tanh")


def softplus(x):
    """``log(1 + exp(x))``."""
    return _run(x, "softplus")


def gelu(x, approximate=False):
    """Exact (erf-based) GELU, the Keras 3 and PyTorch default."""
    if approximate:
        raise NotImplementedError("gelu(approximate=True) is not implemented; use the exact form")
    return _run(x, "gelu")


def softmax(x, axis=-1):
    """Row-wise softmax along ``axis`` (numerically stable)."""
    return _last_axis(x, axis, "softmax")


def log_softmax(x, axis=-1):
    return _last_axis(x, axis, "log_softmax")


_FUNCTIONS = {
    "linear": linear,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "softplus": softplus,
    "gelu": gelu,
    "softmax": softmax,
    "log_softmax": log_softmax,
}
_BY_FUNCTION = {fn: name for name, fn in _FUNCTIONS.items()}
NAMES = tuple(_FUNCTIONS)


def _canonical_name(identifier):
    """'linear', 'relu', ... for a name, None or one of this module's functions."""
    if identifier is None:
        return "linear"
    if isinstance(identifier, str):
        key = identifier.lower()
        key = ALIASES.get(key, key)
        if key in _FUNCTIONS:
            return key
        raise ValueError(f"unknown activation {identifier!r}; expected one of {sorted(NAMES)}")
    if isinstance(identifier, dict):
        return _canonical_name(identifier.get("config", identifier.get("class_name")))
    if callable(identifier):
        try:
            return _BY_FUNCTION[identifier]
        except (KeyError, TypeError):
            pass
        raise ValueError(
            f"activation {identifier!r} is not a built-in activation: pynn trains only "
            f"activations whose derivatives it knows, one of {sorted(NAMES)}"
        )
    raise TypeError(f"activation must be a string, None or an activation function, "
                    f"got {type(identifier).__name__}")


def resolve(identifier, param=None):
    """``(name, param)`` for the kernels; ``param`` defaults to Keras' value for the name."""
    name = _canonical_name(identifier)
    if param is None:
        param = _DEFAULT_PARAM[name]
    return name, param


def get(identifier):
    """The activation function for a name, None (linear) or a function of this module."""
    return _FUNCTIONS[_canonical_name(identifier)]


def serialize(activation):
    """Keras 3 stores activations in configs by name."""
    return _canonical_name(activation)


def deserialize(config, custom_objects=None):
    return get(config)


def forward(x, name, param=None, out=None):
    """``f(x)`` into ``out`` through the backend (x C-contiguous, float)."""
    return get_backend().activation_forward(x, name, param=param, out=out)


def backward(grad, z, a, name, param=None, out=None):
    """dL/dz from dL/da through the backend."""
    return get_backend().activation_backward(grad, z, a, name, param=param, out=out)
