"""``Flatten``: (batch, d1, d2, ...) -> (batch, d1 * d2 * ...); a view, no copy."""
import math

from pynn.layers.base import Layer


class Flatten(Layer):
    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last", "channels_first"):
            raise ValueError(f"unknown data_format {data_format!r}")
        self.data_format = data_format
        self._input_batch_shape = None

    def compute_output_shape(self, input_shape):
        if any(s is None for s in input_shape):
            return (None,)
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        if self.data_format == "channels_first" and x.ndim > 2:
            # Keras flattens channels_first data in channels_last order.
            x = x.transpose((0,) + tuple(range(2, x.ndim)) + (1,))
        self._input_batch_shape = x.shape
        x = self._as_compute(x)
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_y, wrt_preactivation=False, need_grad_x=True):
        self.grads = []
        if not need_grad_x:
            return None
        grad = grad_y.reshape(self._input_batch_shape)
        if self.data_format == "channels_first" and grad.ndim > 2:
            inverse = (0, grad.ndim - 1) + tuple(range(1, grad.ndim - 1))
            grad = grad.transpose(inverse)
        return grad

    def get_config(self):
        config = super().get_config()
        config["data_format"] = self.data_format
        return config
