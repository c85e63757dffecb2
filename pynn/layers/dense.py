"""``Dense``: ``a = activation(x @ kernel + bias)`` on the last axis (Keras 3).

kernel: (input_dim, units), bias: (units,). Forward and backward are one fused backend call each
(``dense_forward`` / ``dense_backward``: GEMM with bias and activation in its write-back).
Inputs with more than two axes are viewed as (-1, input_dim) and the result reshaped back.
"""
import inspect

import numpy as np

from pynn import activations as _activations
from pynn import initializers as _initializers
from pynn import regularizers as _regularizers
from pynn.backend import get_backend
from pynn.layers.base import Layer

_ACCEPTS_DZ_OUT = {}


def _accepts_dz_out(backend):
    """Whether this backend's dense_backward takes a ``dz_out`` workspace (cnn_core does)."""
    found = _ACCEPTS_DZ_OUT.get(backend.__name__)
    if found is None:
        try:
            found = "dz_out" in inspect.signature(backend.dense_backward).parameters
        except (TypeError, ValueError):
            found = False
        _ACCEPTS_DZ_OUT[backend.__name__] = found
    return found


class Dense(Layer):
    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 lora_rank=None, **kwargs):
        super().__init__(**kwargs)
        if lora_rank is not None:
            raise NotImplementedError("Dense(lora_rank=...) is not supported")
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Dense units must be a positive integer, got {units!r}")
        if activity_regularizer is not None or kernel_constraint is not None \
                or bias_constraint is not None:
            raise NotImplementedError(
                "activity_regularizer and weight constraints are not supported")
        self.units = int(units)
        self.activation, self._param = _activations.resolve(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.kernel = None
        self.bias = None
        self._x = self._z = self._a = None

    def build(self, input_shape):
        if len(input_shape) < 1 or input_shape[-1] is None:
            raise ValueError(f"Dense '{self.name}' needs a known last input axis, "
                             f"got input shape {input_shape}")
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, name="kernel")
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.units,), initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer, name="bias")
        self._grad_w = np.empty(self.kernel.shape, dtype=self.dtype)
        self._grad_b = np.empty((self.units,), dtype=self.dtype)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    @property
    def output_activation(self):
        return self.activation

    @property
    def preactivation(self):
        return self._z

    def forward(self, x, training=False):
        """x: (batch, ..., input_dim) -> (batch, ..., units); buffers reused per batch shape."""
        x = self._as_compute(x)
        if not self.built:
            self._ensure_built(x.shape[1:])
        lead_shape = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
        rows = x2.shape[0]
        out = self._buffer("a", (rows, self.units))
        z = None if self.activation == "linear" else self._buffer("z", (rows, self.units))
        get_backend().dense_forward(x2, self.kernel.value,
                                    self.bias.value if self.use_bias else None, self.activation,
                                    param=self._param, out=out, z_out=z)
        self._x, self._a = x2, out
        self._z = out if z is None else z
        return out if x.ndim == 2 else out.reshape(lead_shape + (self.units,))

    def backward(self, grad_y, wrt_preactivation=False, need_grad_x=True):
        """dL/dx from dL/da (or dL/dz when ``wrt_preactivation``); fills grads [kernel, bias]."""
        if self._x is None:
            raise RuntimeError(f"Dense '{self.name}': backward called before forward")
        grad = grad_y.reshape(self._a.shape) if grad_y.ndim != 2 else grad_y
        grad = self._as_compute(grad)
        rows = grad.shape[0]
        activation = "linear" if wrt_preactivation else self.activation
        backend = get_backend()
        extra = {}
        if activation != "linear" and _accepts_dz_out(backend):
            extra["dz_out"] = self._buffer("dz", (rows, self.units))
        grad_x = self._buffer("grad_x", self._x.shape) if need_grad_x else None
        _, _, grad_x = backend.dense_backward(
            self._x, self.kernel.value, self._z, self._a, grad, activation, param=self._param,
            grad_w=self._grad_w, grad_b=self._grad_b, grad_x=grad_x, need_grad_x=need_grad_x,
            **extra)
        self.grads = self._kernel_bias_grads(self._grad_w, self._grad_b)
        self._add_regularizer_grads()
        if grad_x is None:
            return None
        return grad_x if grad_y.ndim == 2 else grad_x.reshape(grad_y.shape[:-1] + (-1,))


    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": _initializers.serialize(self.kernel_initializer),
            "bias_initializer": _initializers.serialize(self.bias_initializer),
            "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
        })
        return config
