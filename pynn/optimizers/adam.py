"""Adam (Keras 3 ``keras.optimizers.Adam``).

``m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
param -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon)``
(Keras puts epsilon on the un-bias-corrected ``sqrt(v)``; PyTorch adds it after correction.)
"""
import numpy as np

from pynn.backend import get_backend
from pynn.optimizers.base import Optimizer


class Adam(Optimizer):
    """Adam; ``amsgrad=True`` keeps the running maximum of ``v`` (NumPy path, no kernel)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name="adam", **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, use_ema=use_ema,
                         ema_momentum=ema_momentum,
                         ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, name=name,
                         **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = bool(amsgrad)

    def _slot_specs(self):
        specs = [("momentum", 0.0), ("velocity", 0.0)]
        if self.amsgrad:
            specs.append(("velocity_hat", 0.0))
        return specs

    def _update(self, index, param, grad, lr, step, weight_decay):
        m = self._slots["momentum"][index]
        v = self._slots["velocity"][index]
        if not self.amsgrad:
            get_backend().adam_update(param, grad, m, v, lr=lr, step=step, beta_1=self.beta_1,
                                      beta_2=self.beta_2, epsilon=self.epsilon,
                                      weight_decay=weight_decay)
            return
        # AMSGrad has no kernel: the same equations in NumPy, with max(v_hat, v).
        dtype = param.dtype.type
        if weight_decay:
            param -= dtype(lr * weight_decay) * param
        m += (grad - m) * dtype(1 - self.beta_1)
        v += (np.square(grad) - v) * dtype(1 - self.beta_2)
        v_hat = self._slots["velocity_hat"][index]
        np.maximum(v_hat, v, out=v_hat)
        alpha = lr * np.sqrt(1 - self.beta_2 ** step) / (1 - self.beta_1 ** step)
        param -= dtype(alpha) * m / (np.sqrt(v_hat) + dtype(self.epsilon))

    def get_config(self):
        config = super().get_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                      amsgrad=self.amsgrad)
        return config
