"""``LeakyReLU(negative_slope=0.3)`` (Keras 3's layer default; the function's is 0.2)."""
from pynn.layers.activation import ActivationBase


class LeakyReLU(ActivationBase):
    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:  # Keras 2 name, still accepted by Keras 3
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        if negative_slope < 0:
            raise ValueError(f"negative_slope must be >= 0, got {negative_slope}")
        self.negative_slope = float(negative_slope)
        self._name, self._param = "leaky_relu", self.negative_slope
        self._z = self._a = None

    def get_config(self):
        config = super().get_config()
        config["negative_slope"] = self.negative_slope
        return config
