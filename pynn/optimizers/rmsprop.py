"""RMSprop (Keras 3 ``keras.optimizers.RMSprop``).

``v = rho v + (1 - rho) g^2``; ``inc = lr g / sqrt(v + eps)`` (centered: ``v - ag^2 + eps``
with ``ag = rho ag + (1 - rho) g``); with momentum ``mb = momentum mb + inc; param -= mb``,
else ``param -= inc``. Keras puts epsilon inside the square root; PyTorch adds it outside.
"""
from pynn.backend import get_backend
from pynn.optimizers.base import Optimizer


class RMSprop(Optimizer):
    """RMSprop with optional momentum and centering."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name="rmsprop", **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, use_ema=use_ema,
                         ema_momentum=ema_momentum,
                         ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, name=name,
                         **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = bool(centered)

    def _slot_specs(self):
        specs = [("velocity", 0.0)]
        if self.momentum > 0:
            specs.append(("momentum", 0.0))
        if self.centered:
            specs.append(("average_gradient", 0.0))
        return specs

    def _update(self, index, param, grad, lr, step, weight_decay):
        get_backend().rmsprop_update(
            param, grad, self._slots["velocity"][index], lr=lr, rho=self.rho,
            momentum=self.momentum, epsilon=self.epsilon,
            momentum_buf=self._slots["momentum"][index] if self.momentum > 0 else None,
            centered=self.centered,
            average_grad=self._slots["average_gradient"][index] if self.centered else None,
            weight_decay=weight_decay,
        )

    def get_config(self):
        config = super().get_config()
        config.update(rho=self.rho, momentum=self.momentum, epsilon=self.epsilon,
                      centered=self.centered)
        return config
