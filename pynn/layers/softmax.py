"""``Softmax(axis=-1)`` (Keras 3). The last axis runs the backend kernel directly; another axis
is moved last first (a copy)."""
import numpy as np

from pynn.layers.activation import ActivationBase


class Softmax(ActivationBase):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, int):
            raise NotImplementedError("Softmax over several axes is not supported")
        self.axis = axis
        self._name, self._param = "softmax", None
        self._z = self._a = None

    def _is_last(self, ndim):
        return self.axis in (-1, ndim - 1)

    @property
    def output_activation(self):
        return "softmax" if self.axis == -1 else None

    def forward(self, x, training=False):
        if self._is_last(x.ndim):
            return super().forward(x, training)
        moved = np.ascontiguousarray(np.moveaxis(x, self.axis, -1), dtype=self.dtype)
        out = super().forward(moved, training)
        return np.moveaxis(out, -1, self.axis)

    def backward(self, grad_y, wrt_preactivation=False, need_grad_x=True):
        if self._is_last(grad_y.ndim):
            return super().backward(grad_y, wrt_preactivation, need_grad_x)
        moved = np.ascontiguousarray(np.moveaxis(grad_y, self.axis, -1), dtype=self.dtype)
        grad = super().backward(moved, wrt_preactivation, need_grad_x)
        return None if grad is None else np.moveaxis(grad, -1, self.axis)

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.axis
        return config
