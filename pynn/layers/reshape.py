"""``Reshape(target_shape)``: reshape every sample (batch axis kept); one -1 is inferred."""
import math

from pynn.layers.base import Layer, standardize_shape


class Reshape(Layer):
    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target = tuple(int(s) for s in (target_shape if not isinstance(target_shape, int)
                                        else (target_shape,)))
        if sum(1 for s in target if s == -1) > 1 or any(s < -1 or s == 0 for s in target):
            raise ValueError(f"invalid target_shape {target_shape!r}: positive sizes and at "
                             "most one -1")
        self.target_shape = target
        self._input_batch_shape = None

    def compute_output_shape(self, input_shape):
        input_shape = standardize_shape(input_shape)
        if -1 not in self.target_shape:
            if None not in input_shape and math.prod(input_shape) != math.prod(self.target_shape):
                raise ValueError(f"cannot reshape inputs of shape {input_shape} "
                                 f"({math.prod(input_shape)} values) to {self.target_shape}")
            return self.target_shape
        if None in input_shape:
            return tuple(None if s == -1 else s for s in self.target_shape)
        known = math.prod(s for s in self.target_shape if s != -1)
        total = math.prod(input_shape)
        if total % known:
            raise ValueError(f"cannot reshape inputs of shape {input_shape} to "
                             f"{self.target_shape}")
        return tuple(total // known if s == -1 else s for s in self.target_shape)

    def forward(self, x, training=False):
        x = self._as_compute(x)
        self._input_batch_shape = x.shape
        return x.reshape((x.shape[0],) + self.target_shape)

    def backward(self, grad_y, wrt_preactivation=False, need_grad_x=True):
        self.grads = []
        return grad_y.reshape(self._input_batch_shape) if need_grad_x else None

    def get_config(self):
        config = super().get_config()
        config["target_shape"] = list(self.target_shape)
        return config
