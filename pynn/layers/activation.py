"""``Activation(activation)``: applies a named activation (Keras 3)."""
from pynn import activations as _activations
from pynn.backend import get_backend
from pynn.layers.base import Layer


class ActivationBase(Layer):
    """Shared forward/backward of the activation layers: one backend kernel call each."""

    _name = "linear"
    _param = None

    @property
    def output_activation(self):
        return self._name

    @property
    def preactivation(self):
        return self._z

    def forward(self, x, training=False):
        x = self._as_compute(x)
        self._z = x
        if self._name == "linear":
            self._a = x
            return x
        out = self._buffer("a", x.shape)
        get_backend().activation_forward(x, self._name, param=self._param, out=out)
        self._a = out
        return out

    def backward(self, grad_y, wrt_preactivation=False, need_grad_x=True):
        self.grads = []
        if not need_grad_x:
            return None
        if wrt_preactivation or self._name == "linear":
            return grad_y
        grad_x = self._buffer("grad_x", grad_y.shape)
        get_backend().activation_backward(self._as_compute(grad_y), self._z, self._a,
                                          self._name, param=self._param, out=grad_x)
        return grad_x


class Activation(ActivationBase):
    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self._name, self._param = _activations.resolve(activation)
        self._z = self._a = None

    @property
    def activation(self):
        return self._name

    def get_config(self):
        config = super().get_config()
        config["activation"] = self._name
        return config
