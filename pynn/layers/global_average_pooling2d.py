"""``GlobalAveragePooling2D`` (alias ``GlobalAvgPool2D``): the mean of each channel over the
whole image (Keras 3). (batch, height, width, channels) -> (batch, channels), or
(batch, 1, 1, channels) with ``keepdims``.

Also the shared base of the global 2-D poolings, ``_GlobalPooling2D``. Plain NumPy: one
reduction forward and one broadcast backward, into buffers reused per batch shape.
"""
import numpy as np

from pynn.layers.base import Layer
from pynn.layers.windows import (
    check_image_input,
    check_image_shape,
    standardize_data_format,
)


class _GlobalPooling2D(Layer):
    """Arguments, output shape and buffers of the global poolings."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format, type(self).__name__)
        self.keepdims = bool(keepdims)
        self._x = None

    def build(self, input_shape):
        check_image_shape(input_shape, self)
        self.built = True

    def compute_output_shape(self, input_shape):
        check_image_shape(input_shape, self)
        channels = input_shape[-1]
        return (1, 1, channels) if self.keepdims else (channels,)

    def forward(self, x, training=False):
        """x: (batch, height, width, channels) -> (batch, channels) or (batch, 1, 1, channels)."""
        check_image_input(x, self)
        x = self._as_compute(x)
        if not self.built:
            self._ensure_built(x.shape[1:])
        batch, channels = x.shape[0], x.shape[3]
        out = self._buffer("out", (batch, 1, 1, channels))
        self._reduce(x, out.reshape(batch, channels))
        self._x = x
        return out if self.keepdims else out.reshape(batch, channels)

    def backward(self, grad_y, wrt_preactivation=False, need_grad_x=True):
        """dL/dx (x's shape) from dL/dy."""
        self.grads = []
        if not need_grad_x:
            return None
        if self._x is None:
            raise RuntimeError(f"{type(self).__name__} '{self.name}': backward called before "
                               "forward")
        x = self._x
        grad = self._as_compute(grad_y.reshape(x.shape[0], x.shape[3]))
        grad_x = self._buffer("grad_x", x.shape)
        self._spread(x, grad, grad_x)
        return grad_x

    def get_config(self):
        config = super().get_config()
        config.update({"data_format": self.data_format, "keepdims": self.keepdims})
        return config


class GlobalAveragePooling2D(_GlobalPooling2D):
    """The mean over height and width of each (image, channel)."""

    def _reduce(self, x, out):
        np.mean(x, axis=(1, 2), out=out)

    def _spread(self, x, grad, grad_x):
        # every pixel of a channel gets an equal share of that channel's gradient
        np.divide(grad[:, None, None, :], x.shape[1] * x.shape[2], out=grad_x)


GlobalAvgPool2D = GlobalAveragePooling2D
