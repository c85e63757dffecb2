"""Utilities with Keras names: random seeds, the default float type, to_categorical.

``pynn.utils.progbar`` (the tqdm progress bar) is imported lazily, on first attribute access.
"""
import importlib

import numpy as np

from pynn.utils.random import set_random_seed, get_rng

_FLOATX = "float32"
_FLOAT_TYPES = ("float32", "float64")


def floatx():
    """The default float type of new layers and of converted inputs: 'float32' or 'float64'."""
    return _FLOATX


def set_floatx(value):
    """Set the default float type ('float32', or 'float64' for gradient checks)."""
    global _FLOATX
    name = np.dtype(value).name if not isinstance(value, str) else value
    if name not in _FLOAT_TYPES:
        raise ValueError(f"unknown floatx {value!r}; expected one of {list(_FLOAT_TYPES)}")
    _FLOATX = name


def to_categorical(x, num_classes=None):
    """One-hot encode integer class ids (Keras): (N,) ints -> (N, num_classes) float32."""
    x = np.asarray(x)
    if x.dtype.kind == "f":
        if x.size and not np.array_equal(x, np.floor(x)):
            raise ValueError("to_categorical expects integer class ids")
        x = x.astype(np.int64)
    if x.dtype.kind not in "iu":
        raise TypeError(f"to_categorical expects integer class ids, got dtype {x.dtype}")
    if x.ndim > 1 and x.shape[-1] == 1:
        x = x.reshape(x.shape[:-1])
    if x.size and x.min() < 0:
        raise ValueError(f"to_categorical got a negative class id ({x.min()})")
    if num_classes is None:
        num_classes = int(x.max()) + 1 if x.size else 0
    elif x.size and x.max() >= num_classes:
        raise ValueError(f"class id {x.max()} is outside [0, {num_classes})")
    out = np.zeros(x.shape + (num_classes,), dtype=np.float32)
    np.put_along_axis(out, x[..., None].astype(np.int64), 1.0, axis=-1)
    return out


def clear_session():
    """Reset the automatic layer/model name counters (Keras' ``clear_session``)."""
    from pynn.layers.base import reset_name_counters

    reset_name_counters()


def __getattr__(name):
    # progbar pulls in tqdm; load it only when asked for.
    if name == "progbar":
        return importlib.import_module("pynn.utils.progbar")
    raise AttributeError(f"module 'pynn.utils' has no attribute {name!r}")
