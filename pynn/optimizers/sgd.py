"""SGD with optional (Nesterov) momentum (Keras 3 ``keras.optimizers.SGD``).

``v = momentum * v - lr * g``; ``param += v`` (or ``momentum * v - lr * g`` with Nesterov).
"""
from pynn.backend import get_backend
from pynn.optimizers.base import Optimizer


class SGD(Optimizer):
    """Gradient descent, with momentum when ``momentum > 0``.

    The velocity slot exists only when momentum is used.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name="SGD", **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, use_ema=use_ema,
                         ema_momentum=ema_momentum,
                         ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, name=name,
                         **kwargs)
        if not isinstance(momentum, (int, float)) or momentum < 0 or momentum > 1:
            raise ValueError("`momentum` must be a float between [0, 1].")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _slot_specs(self):
        return [("momentum", 0.0)] if self.momentum != 0 else []

    def _update(self, index, param, grad, lr, step, weight_decay):
        velocity = self._slots["momentum"][index] if self.momentum != 0 else None
        get_backend().sgd_update(param, grad, velocity, lr=lr, momentum=self.momentum,
                                 nesterov=self.nesterov, weight_decay=weight_decay)

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, nesterov=self.nesterov)
        return config
