"""``Optimizer``: Keras 3's optimizer protocol over in-place backend update kernels.

``apply(grads, trainable_variables)`` clips the gradients (``clipnorm`` per variable,
``global_clipnorm`` over all of them, or ``clipvalue``; Keras allows one of the three), then
makes one backend update call per variable, in place on ``variable.value``. Decoupled weight
decay (``param -= lr * weight_decay * param`` before the step, Keras 3 / AdamW) is done by the
same kernel call. Optimizer state (slots) is allocated once in ``build``; without clipping a
step allocates nothing. Norms use the backend's ``sum_of_squares`` (float64, deterministic).

The learning rate is a float or a ``LearningRateSchedule`` evaluated at ``iterations`` (the
number of steps already applied), or a zero-argument callable.
"""
import re
import warnings

import numpy as np

from pynn.backend import get_backend
from pynn.optimizers import schedules as _schedules


def _value_of(variable):
    """The ndarray an update writes into: ``variable.value`` (pynn Variable) or the array."""
    value = getattr(variable, "value", variable)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"cannot optimize {type(variable).__name__}: expected a pynn Variable "
                        "or a numpy array")
    return value


class Optimizer:
    """Base class of the optimizers; subclasses define their slots and ``_update``."""

    # (slot name, initial value) created for every variable in ``build``.
    _slot_names = ()

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.")
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                f"global_clipnorm={global_clipnorm}"
            )
        if use_ema:
            raise NotImplementedError("use_ema=True is not supported by pynn optimizers yet")
        if gradient_accumulation_steps:
            raise NotImplementedError(
                "gradient_accumulation_steps is not supported by pynn optimizers yet")
        self.name = name or _snake_name(type(self).__name__)
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self._learning_rate = self._check_learning_rate(learning_rate)
        self._iterations = 0
        self.built = False
        self._variables = []        # the trainable variables, in build order
        self._index = {}            # id(variable) -> position
        self._slots = {}            # slot name -> list of ndarrays aligned with _variables
        self._decay_mask = []       # per variable: weight decay applies
        self._clip_buffers = None   # per variable scratch for clipped gradients
        self._pending_state = None  # set_state() before build
        self._exclude_ids = set()
        self._exclude_pattern = None

    # --- learning rate and step count -----------------------------------------------------------
    @staticmethod
    def _check_learning_rate(learning_rate):
        if isinstance(learning_rate, _schedules.LearningRateSchedule) or callable(learning_rate):
            return learning_rate
        try:
            value = float(learning_rate)
        except (TypeError, ValueError):
            raise ValueError(
                "Argument `learning_rate` should be a float, a LearningRateSchedule or a "
                f"callable; received learning_rate={learning_rate!r}") from None
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"learning_rate must be finite and >= 0, got {learning_rate}")
        return value

    @property
    def learning_rate(self):
        """The learning rate the next step uses (a float)."""
        lr = self._learning_rate
        if isinstance(lr, _schedules.LearningRateSchedule):
            return float(lr(self._iterations))
        if callable(lr):
            return float(lr())
        return lr

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        if (isinstance(self._learning_rate, _schedules.LearningRateSchedule)
                and not isinstance(learning_rate, _schedules.LearningRateSchedule)
                and not callable(learning_rate)):
            raise TypeError(
                "This optimizer was created with a `LearningRateSchedule` object as its "
                "`learning_rate` constructor argument, hence its learning rate is not "
                "settable. If you need the learning rate to be settable, you should "
                "instantiate the optimizer with a float `learning_rate` argument."
            )
        self._learning_rate = self._check_learning_rate(learning_rate)

    # Keras 2 name, still used by much code.
    lr = learning_rate

    @property
    def iterations(self):
        """Number of update steps applied so far."""
        return self._iterations

    @iterations.setter
    def iterations(self, value):
        self._iterations = int(value)

    # --- building -----------------------------------------------------------------------------
    def build(self, variables):
        """Create the slots (optimizer state) for ``variables``, once."""
        variables = list(variables)
        self._variables = variables
        self._index = {id(v): i for i, v in enumerate(variables)}
        self._slots = {}
        for slot, initial in self._slot_specs():
            self._slots[slot] = [
                np.full_like(_value_of(v), initial) if initial else np.zeros_like(_value_of(v))
                for v in variables
            ]
        self._decay_mask = [self._use_weight_decay(v) for v in variables]
        self._clip_buffers = None
        self.built = True
        if self._pending_state is not None:
            state, self._pending_state = self._pending_state, None
            self.set_state(state)

    def _slot_specs(self):
        """``[(slot name, initial value)]`` for this configuration."""
        return [(name, 0.0) for name in self._slot_names]

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Exclude variables (by object, or by a substring of their name) from weight decay."""
        if self.built:
            raise ValueError(
                "`exclude_from_weight_decay()` can only be configured before the optimizer is "
                "built.")
        self._exclude_ids = {id(v) for v in (var_list or [])}
        self._exclude_pattern = re.compile("|".join(set(var_names))) if var_names else None

    def _use_weight_decay(self, variable):
        if id(variable) in self._exclude_ids:
            return False
        if self._exclude_pattern is not None and self._exclude_pattern.search(
                str(getattr(variable, "name", ""))):
            return False
        return True

    @property
    def variables(self):
        """The optimizer's state arrays (slots), variable by variable."""
        return [arrays[i] for i in range(len(self._variables)) for arrays in self._slots.values()]

    # --- applying gradients ---------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars):
        """Keras: ``apply`` for a list of ``(gradient, variable)`` pairs."""
        grads_and_vars = list(grads_and_vars)
        if not grads_and_vars:
            return self._iterations
        grads, variables = zip(*grads_and_vars)
        self.apply(list(grads), list(variables))
        return self._iterations

    def apply(self, grads, trainable_variables=None):
        """Update ``trainable_variables`` in place from ``grads`` (aligned lists).

        ``trainable_variables`` may be omitted once the optimizer is built; the first call
        builds it. Gradients that are None are skipped with a warning.
        """
        grads = list(grads)
        if not grads:
            return
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "When passing `grads` without `variables`, the optimizer must already be "
                    "built on a list of variables. Call `optimizer.build(trainable_variables)` "
                    "first.")
            if len(grads) != len(self._variables):
                raise ValueError(
                    f"Received {len(grads)} gradients but the optimizer is tracking "
                    f"{len(self._variables)} trainable variables.")
            trainable_variables = self._variables
        else:
            trainable_variables = list(trainable_variables)
            if len(grads) != len(trainable_variables):
                raise ValueError(f"Received {len(grads)} gradients for "
                                 f"{len(trainable_variables)} variables.")
            if not self.built:
                self.build(trainable_variables)
            for v in trainable_variables:
                if id(v) not in self._index:
                    raise ValueError(
                        f"Unknown variable: {v!r}. This optimizer can only be called for the "
                        "variables it was originally built with. When working with a new set "
                        "of variables, you should recreate a new optimizer instance.")

        pairs = [(g, v) for g, v in zip(grads, trainable_variables) if g is not None]
        if len(pairs) != len(grads):
            if not pairs:
                raise ValueError("No gradients provided for any variable.")
            missing = [getattr(v, "name", "?") for g, v in zip(grads, trainable_variables)
                       if g is None]
            warnings.warn(f"Gradients do not exist for variables {missing} when minimizing "
                          "the loss.")
        indices = [self._index[id(v)] for _, v in pairs]
        params = [_value_of(v) for _, v in pairs]
        grads = [self._as_grad(g, p, i) for (g, _), p, i in zip(pairs, params, indices)]

        if self.loss_scale_factor is not None:
            grads = self._scaled(grads, indices, 1.0 / self.loss_scale_factor)
        grads = self._clip_gradients(grads, indices)

        lr = self.learning_rate
        step = self._iterations + 1
        for index, param, grad in zip(indices, params, grads):
            wd = float(self.weight_decay) if (self.weight_decay and self._decay_mask[index]) \
                else 0.0
            self._update(index, param, grad, lr, step, wd)
        self._iterations += 1

    def _as_grad(self, grad, param, index):
        """The gradient as a C-contiguous array of the parameter's dtype and shape."""
        if (isinstance(grad, np.ndarray) and grad.dtype == param.dtype
                and grad.flags.c_contiguous and grad.shape == param.shape):
            return grad
        grad = np.ascontiguousarray(grad, dtype=param.dtype)
        if grad.shape != param.shape:
            name = getattr(self._variables[index], "name", index)
            raise ValueError(f"gradient of shape {grad.shape} for variable {name!r} of shape "
                             f"{param.shape}")
        return grad

    def _buffers(self, indices):
        if self._clip_buffers is None:
            self._clip_buffers = [None] * len(self._variables)
        out = []
        for i in indices:
            if self._clip_buffers[i] is None:
                self._clip_buffers[i] = np.empty_like(_value_of(self._variables[i]))
            out.append(self._clip_buffers[i])
        return out

    def _scaled(self, grads, indices, factor):
        return [np.multiply(g, g.dtype.type(factor), out=b)
                for g, b in zip(grads, self._buffers(indices))]

    def _clip_gradients(self, grads, indices):
        """Keras 3 clipping into per-variable scratch buffers (the caller's arrays are kept)."""
        backend = get_backend()
        if self.clipnorm and self.clipnorm > 0:
            out = []
            for g, b in zip(grads, self._buffers(indices)):
                norm = np.sqrt(backend.sum_of_squares(g))
                if norm > self.clipnorm:
                    g = np.multiply(g, g.dtype.type(self.clipnorm / norm), out=b)
                out.append(g)
            return out
        if self.global_clipnorm and self.global_clipnorm > 0:
            norm = np.sqrt(sum(backend.sum_of_squares(g) for g in grads))
            if np.isfinite(norm) and norm <= self.global_clipnorm:
                return grads
            # Keras: scale = clip * min(1/norm, 1/clip); a non-finite norm gives NaN updates.
            scale = self.global_clipnorm / norm if np.isfinite(norm) else np.nan
            return self._scaled(grads, indices, scale)
        if self.clipvalue and self.clipvalue > 0:
            v = self.clipvalue
            return [np.clip(g, -v, v, out=b) for g, b in zip(grads, self._buffers(indices))]
        return grads

    def _update(self, index, param, grad, lr, step, weight_decay):
        """One in-place backend update of ``param`` (variable number ``index``)."""
        raise NotImplementedError

    # --- configuration and state ----------------------------------------------------------------
    def get_config(self):
        lr = self._learning_rate
        if isinstance(lr, _schedules.LearningRateSchedule):
            lr = _schedules.serialize(lr)
        elif callable(lr):
            lr = float(lr())
        return {
            "name": self.name,
            "learning_rate": lr,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = _schedules.deserialize(config["learning_rate"],
                                                             custom_objects)
        return cls(**config)

    def get_state(self):
        """``{name: ndarray}``: iterations, the float learning rate, and every slot array.

        Slot keys are ``"<slot>_<i>"`` with ``i`` the variable's position in ``build``.
        """
        state = {"iterations": np.array(self._iterations, dtype=np.int64)}
        if not isinstance(self._learning_rate, _schedules.LearningRateSchedule) and not callable(
                self._learning_rate):
            state["learning_rate"] = np.array(self._learning_rate, dtype=np.float64)
        for slot, arrays in self._slots.items():
            for i, array in enumerate(arrays):
                state[f"{slot}_{i}"] = array.copy()
        return state

    def set_state(self, state):
        """Restore ``get_state()``'s dict. Before ``build`` it is kept and applied by ``build``."""
        state = dict(state)
        if not self.built:
            self._pending_state = state
            if "iterations" in state:
                self._iterations = int(np.asarray(state["iterations"]))
            return
        expected = {f"{slot}_{i}" for slot, arrays in self._slots.items()
                    for i in range(len(arrays))}
        missing = expected - set(state)
        if missing:
            raise ValueError(f"optimizer state is missing {sorted(missing)}")
        unknown = set(state) - expected - {"iterations", "learning_rate"}
        if unknown:
            raise ValueError(f"optimizer state has unknown entries {sorted(unknown)}")
        for slot, arrays in self._slots.items():
            for i, array in enumerate(arrays):
                value = np.asarray(state[f"{slot}_{i}"])
                if value.shape != array.shape:
                    raise ValueError(f"optimizer state {slot}_{i} has shape {value.shape}, "
                                     f"expected {array.shape}")
                array[...] = value
        if "iterations" in state:
            self._iterations = int(np.asarray(state["iterations"]))
        if "learning_rate" in state and not isinstance(
                self._learning_rate, _schedules.LearningRateSchedule) and not callable(
                self._learning_rate):
            self._learning_rate = float(np.asarray(state["learning_rate"]))

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} learning_rate={self.learning_rate:g}>"


def _snake_name(class_name):
    return class_name.lower()
