"""``ReLU(max_value=None, negative_slope=0.0, threshold=0.0)`` (Keras 3)."""
import numpy as np

from pynn.layers.activation import ActivationBase


class ReLU(ActivationBase):
    """``max(x, 0)``, with Keras' optional slope below the threshold and ceiling.

    The plain and leaky forms run the backend kernels; a ``max_value`` or ``threshold`` uses a
    NumPy path (there is no kernel for it).
    """

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and max_value < 0:
            raise ValueError(f"max_value must be >= 0, got {max_value}")
        if negative_slope < 0:
            raise ValueError(f"negative_slope must be >= 0, got {negative_slope}")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = float(negative_slope)
        self.threshold = float(threshold)
        self._general = self.max_value is not None or self.threshold != 0.0
        if self.negative_slope == 0.0:
            self._name, self._param = "relu", None
        else:
            self._name, self._param = "leaky_relu", self.negative_slope
        self._z = self._a = None

    @property
    def output_activation(self):
        return None if self._general else self._name

    def forward(self, x, training=False):
        if not self._general:
            return super().forward(x, training)
        x = self._as_compute(x)
        self._z = x
        out = self._buffer("a", x.shape)
        np.copyto(out, np.where(x >= self.threshold, x, self.negative_slope * (x - self.threshold)))
        if self.max_value is not None:
            np.minimum(out, self.max_value, out=out)
        self._a = out
        return out

    def backward(self, grad_y, wrt_preactivation=False, need_grad_x=True):
        if not self._general:
            return super().backward(grad_y, wrt_preactivation, need_grad_x)
        self.grads = []
        if not need_grad_x:
            return None
        z = self._z
        slope = np.where(z >= self.threshold, 1.0, self.negative_slope)
        if self.max_value is not None:
            slope = np.where(z >= self.max_value, 0.0, slope)
        grad_x = self._buffer("grad_x", grad_y.shape)
        np.multiply(grad_y, slope, out=grad_x, casting="unsafe")
        return grad_x

    def get_config(self):
        config = super().get_config()
        config.update({"max_value": self.max_value, "negative_slope": self.negative_slope,
                       "threshold": self.threshold})
        return config
