"""One optimizer step, in place, with Keras 3 semantics (docs/kernel_api.md).

``param``, ``grad`` and the state arrays share one shape and one float dtype and are
C-contiguous; ``param`` and the state arrays are updated in place (``x[...] = ...``), so the
caller's arrays (a Variable's value, the optimizer slots) see the new values. Weight decay is
decoupled (Keras 3 / AdamW): ``param -= lr * weight_decay * param`` before the step.
"""
import math

import numpy as np

from cnn_core import _checks


def _check_param_and_grad(param, grad):
    _checks.check_array(param, "param")
    _checks.check_contiguous(param, "param")
    if not param.flags.writeable:
        raise ValueError("param is read-only")
    _checks.check_like(grad, "grad", param, "param")


def _check_state(state, name, param, needed_because="by this optimizer"):
    """A state array (slot) of the optimizer: like param, and writable."""
    if state is None:
        raise ValueError(f"{name} is required {needed_because}, got None")
    _checks.check_like(state, name, param, "param")
    if not state.flags.writeable:
        raise ValueError(f"{name} is read-only")


def _apply_weight_decay(param, lr, weight_decay):
    if weight_decay != 0.0:
        param -= lr * weight_decay * param


def sgd_update(param, grad, velocity, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """Stochastic gradient descent, with optional (Nesterov) momentum.

        v = momentum * v - lr * g
        param += (momentum * v - lr * g) if nesterov else v

    velocity: the momentum slot; may be None when momentum == 0 (then param -= lr * g).
    """
    _check_param_and_grad(param, grad)
    lr = _checks.check_finite_scalar(lr, "lr")
    momentum = _checks.check_finite_scalar(momentum, "momentum")
    weight_decay = _checks.check_finite_scalar(weight_decay, "weight_decay")
    if velocity is not None or momentum != 0.0:
        _check_state(velocity, "velocity", param, "when momentum != 0")

    _apply_weight_decay(param, lr, weight_decay)
    if velocity is None:
        param -= lr * grad
        return
    velocity[...] = momentum * velocity - lr * grad
    if nesterov:
        param += momentum * velocity - lr * grad
    else:
        param += velocity


def adam_update(param, grad, m, v, *, lr, step, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                weight_decay=0.0):
    """Adam (AdamW when weight_decay > 0). ``step`` counts from 1 (the first update is 1).

        m += (g - m) (1 - beta_1)            first moment
        v += (g^2 - v) (1 - beta_2)          second moment
        alpha = lr sqrt(1 - beta_2^step) / (1 - beta_1^step)   bias correction
        param -= alpha m / (sqrt(v) + epsilon)
    """
    _check_param_and_grad(param, grad)
    _check_state(m, "m", param)
    _check_state(v, "v", param)
    lr = _checks.check_finite_scalar(lr, "lr")
    step = _checks.check_positive_int(step, "step")
    beta_1 = _checks.check_finite_scalar(beta_1, "beta_1")
    beta_2 = _checks.check_finite_scalar(beta_2, "beta_2")
    epsilon = _checks.check_finite_scalar(epsilon, "epsilon")
    weight_decay = _checks.check_finite_scalar(weight_decay, "weight_decay")

    _apply_weight_decay(param, lr, weight_decay)
    m += (grad - m) * (1 - beta_1)
    v += (grad * grad - v) * (1 - beta_2)
    alpha = lr * math.sqrt(1 - beta_2**step) / (1 - beta_1**step)
    param -= alpha * m / (np.sqrt(v) + epsilon)


def rmsprop_update(param, grad, velocity, *, lr, rho=0.9, momentum=0.0, epsilon=1e-7,
                   momentum_buf=None, centered=False, average_grad=None, weight_decay=0.0):
    """RMSprop, optionally centered and with momentum.

        v = rho v + (1 - rho) g^2
        centered:  ag = rho ag + (1 - rho) g;  denom = v - ag^2 + epsilon
        otherwise: denom = v + epsilon
        inc = lr g / sqrt(denom)
        momentum > 0: mb = momentum mb + inc; param -= mb    otherwise: param -= inc

    momentum_buf: required when momentum > 0; average_grad: required when centered.
    """
    _check_param_and_grad(param, grad)
    _check_state(velocity, "velocity", param)
    lr = _checks.check_finite_scalar(lr, "lr")
    rho = _checks.check_finite_scalar(rho, "rho")
    momentum = _checks.check_finite_scalar(momentum, "momentum")
    epsilon = _checks.check_finite_scalar(epsilon, "epsilon")
    weight_decay = _checks.check_finite_scalar(weight_decay, "weight_decay")
    if momentum > 0:
        _check_state(momentum_buf, "momentum_buf", param, "when momentum > 0")
    if centered:
        _check_state(average_grad, "average_grad", param, "when centered")

    _apply_weight_decay(param, lr, weight_decay)
    velocity[...] = rho * velocity + (1 - rho) * grad * grad
    if centered:
        average_grad[...] = rho * average_grad + (1 - rho) * grad
        denominator = velocity - average_grad * average_grad + epsilon
    else:
        denominator = velocity + epsilon
    increment = lr * grad / np.sqrt(denominator)
    if momentum > 0:
        momentum_buf[...] = momentum * momentum_buf + increment
        param -= momentum_buf
    else:
        param -= increment


def adagrad_update(param, grad, accumulator, *, lr, epsilon=1e-7, weight_decay=0.0):
    """Adagrad: ``acc += g^2; param -= lr g / sqrt(acc + epsilon)``.

    accumulator: the caller initialises it (Keras: initial_accumulator_value = 0.1).
    """
    _check_param_and_grad(param, grad)
    _check_state(accumulator, "accumulator", param)
    lr = _checks.check_finite_scalar(lr, "lr")
    epsilon = _checks.check_finite_scalar(epsilon, "epsilon")
    weight_decay = _checks.check_finite_scalar(weight_decay, "weight_decay")

    _apply_weight_decay(param, lr, weight_decay)
    accumulator += grad * grad
    param -= lr * grad / np.sqrt(accumulator + epsilon)
