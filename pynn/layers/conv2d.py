"""``Conv2D``: ``a = activation(conv2d(x, kernel) + bias)`` over NHWC images (Keras 3).

x: (batch, height, width, in_channels), kernel: (kernel_h, kernel_w, in_channels, filters)
(Keras' layout, so Keras weights load as they are), bias: (filters,). Forward and backward
are one backend call each (``conv2d_forward`` / ``conv2d_backward``: im2col GEMM with bias and
activation fused). Output size and 'same' padding follow Keras/TensorFlow
(``cnn_core._checks.window_extent``).
"""
import numpy as np

from pynn import activations as _activations
from pynn import initializers as _initializers
from pynn import regularizers as _regularizers
from pynn.backend import get_backend
from pynn.layers.base import Layer
from pynn.layers.windows import (
    check_image_input,
    check_image_shape,
    standardize_data_format,
    standardize_pair,
    standardize_padding,
    window_output_shape,
)


class Conv2D(Layer):
    """2-D convolution, channels_last. ``filters`` output channels, ``kernel_size`` and
    ``strides`` an int or a pair, ``padding`` 'valid' or 'same'."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) \
                or filters <= 0:
            raise ValueError(f"Conv2D filters must be a positive integer, got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = standardize_pair(kernel_size, "kernel_size", "Conv2D")
        self.strides = standardize_pair(strides, "strides", "Conv2D")
        self.padding = standardize_padding(padding, "Conv2D")
        self.data_format = standardize_data_format(data_format, "Conv2D")
        if standardize_pair(dilation_rate, "dilation_rate", "Conv2D") != (1, 1):
            raise NotImplementedError(
                f"Conv2D dilation_rate={dilation_rate!r} is not supported (only (1, 1))")
        if isinstance(groups, bool) or groups != 1:
            raise NotImplementedError(f"Conv2D groups={groups!r} is not supported (only 1)")
        if activity_regularizer is not None or kernel_constraint is not None \
                or bias_constraint is not None:
            raise NotImplementedError(
                "Conv2D: activity_regularizer and weight constraints are not supported")
        self.dilation_rate = (1, 1)
        self.groups = 1
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
        check_image_shape(input_shape, self)
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"Conv2D '{self.name}' needs a known channel axis, got input "
                             f"shape {(None,) + tuple(input_shape)}")
        self.compute_output_shape(input_shape)  # rejects images smaller than the kernel
        self.kernel = self.add_weight(shape=self.kernel_size + (channels, self.filters),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, name="kernel")
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.filters,), initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer, name="bias")
        self._grad_w = np.empty(self.kernel.shape, dtype=self.dtype)
        self._grad_b = np.empty((self.filters,), dtype=self.dtype)
        self.built = True

    def compute_output_shape(self, input_shape):
        """(height, width, channels) -> (out_h, out_w, filters); None stays None."""
        return window_output_shape(input_shape, self.kernel_size, self.strides, self.padding,
                                   self, "kernel") + (self.filters,)

    @property
    def output_activation(self):
        return self.activation

    @property
    def preactivation(self):
        """z of the last forward; None for relu, whose z is not kept (only a softmax or a
        sigmoid output layer's z is asked for, by the fused losses)."""
        return None if self.activation == "relu" else self._z

    def forward(self, x, training=False):
        """x: (batch, height, width, in_channels) -> (batch, out_h, out_w, filters); the
        returned buffer is reused by the next call with the same batch shape."""
        check_image_input(x, self)
        x = self._as_compute(x)
        if not self.built:
            self._ensure_built(x.shape[1:])
        if x.shape[3] != self.kernel.shape[2]:
            raise ValueError(f"Conv2D '{self.name}' was built for {self.kernel.shape[2]} input "
                             f"channels, got input of shape {x.shape}")
        out_h, out_w, _ = self.compute_output_shape(x.shape[1:])
        shape = (x.shape[0], out_h, out_w, self.filters)
        out = self._buffer("a", shape)
        # relu'(z) is read as well from a = relu(z) (a > 0 exactly where z > 0): no copy of z,
        # which saves writing and re-reading a whole activation-sized array per step.
        keeps_z = self.activation not in ("linear", "relu")
        z = self._buffer("z", shape) if keeps_z else None
        get_backend().conv2d_forward(
            x, self.kernel.value, self.bias.value if self.use_bias else None,
            strides=self.strides, padding=self.padding, activation=self.activation,
            param=self._param, out=out, z_out=z)
        self._x, self._a = x, out
        self._z = out if z is None else z
        return out

    def backward(self, grad_y, wrt_preactivation=False, need_grad_x=True):
        """dL/dx from dL/da (or dL/dz when ``wrt_preactivation``); fills grads [kernel, bias]."""
        if self._x is None:
            raise RuntimeError(f"Conv2D '{self.name}': backward called before forward")
        grad = self._as_compute(grad_y.reshape(self._a.shape))
        activation = "linear" if wrt_preactivation else self.activation
        # identity: z and a are one array. dz is not asked for: the backend keeps it in a
        # workspace, or (ReLU, no grad_x) never forms it.
        a = self._z if activation == "linear" else self._a
        grad_x = self._buffer("grad_x", self._x.shape) if need_grad_x else None
        _, _, grad_x = get_backend().conv2d_backward(
            self._x, self.kernel.value, self._z, a, grad, strides=self.strides,
            padding=self.padding, activation=activation, param=self._param,
            grad_w=self._grad_w, grad_b=self._grad_b, grad_x=grad_x, need_grad_x=need_grad_x)
        self.grads = self._kernel_bias_grads(self._grad_w, self._grad_b)
        self._add_regularizer_grads()
        return grad_x if need_grad_x else None


    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "groups": self.groups,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": _initializers.serialize(self.kernel_initializer),
            "bias_initializer": _initializers.serialize(self.bias_initializer),
            "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": None,
            "kernel_constraint": None,
            "bias_constraint": None,
        })
        return config
