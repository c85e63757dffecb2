"""``Dropout(rate)``: during training zero each input with probability ``rate`` and scale the
kept ones by ``1 / (1 - rate)`` (inverted dropout, Keras); the identity at inference."""
import numpy as np

from pynn.layers.base import Layer
from pynn.utils.random import make_rng


class Dropout(Layer):
    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        rate = float(rate)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1], got {rate}")
        self.rate = rate
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        # A seeded layer owns its generator (a reproducible stream); else the global one.
        self._own_rng = None if seed is None else make_rng(seed)
        self._mask = None

    def _rng(self):
        return self._own_rng if self._own_rng is not None else make_rng(None)

    def _mask_shape(self, shape):
        if self.noise_shape is None:
            return shape
        if len(self.noise_shape) != len(shape):
            raise ValueError(f"noise_shape {self.noise_shape} does not match input shape {shape}")
        return tuple(s if n is None else int(n) for s, n in zip(shape, self.noise_shape))

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        x = self._as_compute(x)
        mask_shape = self._mask_shape(x.shape)
        mask = self._buffer("mask", mask_shape)
        if self.rate >= 1.0:
            mask[...] = 0
        else:
            uniform = self._buffer("uniform", mask_shape)
            self._rng().random(dtype=uniform.dtype, out=uniform)
            keep = self._buffer("keep", mask_shape, np.bool_)
            np.greater_equal(uniform, self.rate, out=keep)
            np.multiply(keep, 1.0 / (1.0 - self.rate), out=mask)
        self._mask = mask
        out = self._buffer("out", x.shape)
        np.multiply(x, mask, out=out)
        return out

    def backward(self, grad_y, wrt_preactivation=False, need_grad_x=True):
        self.grads = []
        if not need_grad_x:
            return None
        if self._mask is None:
            return grad_y
        grad_x = self._buffer("grad_x", grad_y.shape)
        np.multiply(grad_y, self._mask, out=grad_x)
        return grad_x

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed,
                       "noise_shape": None if self.noise_shape is None
                       else list(self.noise_shape)})
        return config
