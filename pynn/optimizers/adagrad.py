"""Adagrad (Keras 3 ``keras.optimizers.Adagrad``).

``acc += g^2; param -= lr g / sqrt(acc + eps)``, the accumulator starting at
``initial_accumulator_value`` (0.1). Keras puts epsilon inside the square root.
"""
from pynn.backend import get_backend
from pynn.optimizers.base import Optimizer


class Adagrad(Optimizer):
    """Adagrad: per-parameter learning rates from the sum of squared gradients."""

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name="adagrad",
                 **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, use_ema=use_ema,
                         ema_momentum=ema_momentum,
                         ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, name=name,
                         **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def _slot_specs(self):
        return [("accumulator", float(self.initial_accumulator_value))]

    def _update(self, index, param, grad, lr, step, weight_decay):
        get_backend().adagrad_update(param, grad, self._slots["accumulator"][index], lr=lr,
                                     epsilon=self.epsilon, weight_decay=weight_decay)

    def get_config(self):
        config = super().get_config()
        config.update(initial_accumulator_value=self.initial_accumulator_value,
                      epsilon=self.epsilon)
        return config
