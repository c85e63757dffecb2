"""``Layer``: the base of every pynn layer (docs/design.md, "Layer protocol").

A layer has a Keras face (``build``, ``call``, ``__call__``, ``get_config``, weights) and a
training face (``forward`` keeps what ``backward`` needs; ``backward`` returns dL/dx and fills
``self.grads``). ``forward``/``backward`` write into buffers owned by the layer and keyed by
shape, so a training loop with a repeating batch size allocates nothing after its first step;
the arrays they return are overwritten by the next call. ``call`` (and so ``layer(x)``) returns
a fresh array.
"""
import inspect
import re

import numpy as np

from pynn.variables import Variable
from pynn import initializers as _initializers
from pynn import regularizers as _regularizers

_NAME_COUNTERS = {}
# Distinct batch shapes a layer keeps buffers for (full batch, last partial batch, predict).
_MAX_BUFFERED_SHAPES = 4


_SIGNATURE_CACHE = {}


def accepts_keyword(function, name):
    """Whether ``function`` takes keyword ``name`` (or **kwargs); cached per function."""
    key = (function, name)
    found = _SIGNATURE_CACHE.get(key)
    if found is None:
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            found = True
        else:
            found = any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)
        _SIGNATURE_CACHE[key] = found
    return found


def reset_name_counters():
    _NAME_COUNTERS.clear()


def to_snake_case(name):
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    # Keras' rule: a digit does not start a word ("Conv2D" -> "conv2d").
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(base):
    """'dense', 'dense_1', 'dense_2', ... (Keras' automatic names)."""
    count = _NAME_COUNTERS.get(base, 0)
    _NAME_COUNTERS[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def standardize_shape(shape, what="input_shape"):
    """A tuple of ints (None allowed) from an int or a sequence."""
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(None if s is None else int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a tuple of integers, got {shape!r}") from None
    if any(s is not None and s < 0 for s in shape):
        raise ValueError(f"{what} has a negative dimension: {shape}")
    return shape


class Layer:
    """Base layer. Subclasses implement ``build``, ``compute_output_shape``, ``forward``,
    ``backward`` and ``get_config``.

    Keyword arguments (Keras): ``name``, ``trainable``, ``dtype``, ``input_shape`` (or
    ``input_dim``) to give the first layer of a Sequential its input shape (batch excluded).
    """

    def __init__(self, *, name=None, trainable=True, dtype=None, input_shape=None,
                 input_dim=None, batch_input_shape=None, **kwargs):
        if kwargs:
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword argument(s) {sorted(kwargs)}"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"layer name must be a string, got {name!r}")
        self.name = name or unique_name(to_snake_case(type(self).__name__))
        self.trainable = bool(trainable)
        from pynn.utils import floatx

        self.dtype = np.dtype(dtype).name if dtype is not None else floatx()
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"layer dtype must be float32 or float64, got {dtype!r}")
        self.built = False
        self._weights = []
        self._regularizers = []          # (variable, regularizer) pairs
        self._buffers = {}
        self.grads = []
        self.input_shape_arg = None
        if batch_input_shape is not None:
            self.input_shape_arg = standardize_shape(batch_input_shape)[1:]
        if input_dim is not None:
            self.input_shape_arg = (int(input_dim),)
        if input_shape is not None:
            self.input_shape_arg = standardize_shape(input_shape)
        self.input_shape = None          # without the batch axis, set by build
        self.output_shape = None

    # --- Keras API -------------------------------------------------------------------------
    def build(self, input_shape):
        """Create the weights for inputs of ``input_shape`` (batch axis excluded)."""
        self.input_shape = tuple(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, x, training=False):
        """Keras-style forward on an ndarray; returns a new array."""
        if type(self).forward is Layer.forward:
            raise NotImplementedError(f"{type(self).__name__} implements neither call nor forward")
        return np.array(self.forward(x, training=training), copy=True)

    def __call__(self, x, training=False, **kwargs):
        from pynn.layers.input_layer import KerasTensor

        if isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], KerasTensor):
            x = x[0]
        if isinstance(x, KerasTensor):
            return self._call_symbolic(x)
        x = self._convert_input(x)
        self._ensure_built(x.shape[1:])
        if accepts_keyword(type(self).call, "training"):
            kwargs["training"] = training
        return self.call(x, **kwargs)

    def add_weight(self, shape=None, initializer=None, dtype=None, trainable=True,
                   regularizer=None, name=None, **kwargs):
        """Create, initialise and track a Variable (Keras' ``add_weight``)."""
        shape = () if shape is None else standardize_shape(shape, "shape")
        dtype = np.dtype(dtype or self.dtype)
        if initializer is None:
            initializer = "glorot_uniform" if dtype.kind == "f" else "zeros"
        value = _initializers.get(initializer)(shape, dtype=dtype)
        variable = Variable(np.asarray(value, dtype=dtype), name=name or "variable",
                            trainable=trainable, dtype=dtype)
        variable.path = f"{self.name}/{variable.name}"
        self._weights.append(variable)
        regularizer = _regularizers.get(regularizer)
        if regularizer is not None:
            self._regularizers.append((variable, regularizer))
        return variable

    @property
    def weights(self):
        return list(self._weights)

    @property
    def variables(self):
        return self.weights

    @property
    def trainable_weights(self):
        return [v for v in self._weights if v.trainable] if self.trainable else []

    @property
    def trainable_variables(self):
        return self.trainable_weights

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return list(self._weights)
        return [v for v in self._weights if not v.trainable]

    @property
    def non_trainable_variables(self):
        return self.non_trainable_weights

    def get_weights(self):
        return [v.numpy() for v in self._weights]

    def set_weights(self, weights):
        weights = list(weights)
        if len(weights) != len(self._weights):
            raise ValueError(
                f"layer '{self.name}' expects {len(self._weights)} weight arrays "
                f"({[v.shape for v in self._weights]}), got {len(weights)}"
            )
        for variable, value in zip(self._weights, weights):
            value = np.asarray(value)
            if value.shape != variable.shape:
                raise ValueError(
                    f"layer '{self.name}' weight '{variable.name}' has shape {variable.shape}, "
                    f"got an array of shape {value.shape}"
                )
        for variable, value in zip(self._weights, weights):
            variable.assign(value)

    def count_params(self):
        return int(sum(v.size for v in self._weights))

    @property
    def losses(self):
        """The regularization penalties of this layer's weights (Keras: a list of scalars)."""
        return [reg(v.value) for v, reg in self._regularizers]

    def regularization_loss(self):
        return float(sum(reg(v.value) for v, reg in self._regularizers))

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self.input_shape_arg is not None:
            config["input_shape"] = list(self.input_shape_arg)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_build_config(self):
        return None if self.input_shape is None else {"input_shape": list(self.input_shape)}

    def build_from_config(self, config):
        if config and config.get("input_shape") is not None:
            self._ensure_built(tuple(config["input_shape"]))

    # --- training protocol -----------------------------------------------------------------
    def forward(self, x, training=False):
        """Forward pass that keeps what ``backward`` needs; may return a reused buffer.

        The default runs ``call`` (so a custom layer that defines only ``call`` works for
        inference; training it needs a ``backward``).
        """
        if type(self).call is Layer.call:
            raise NotImplementedError(f"{type(self).__name__} implements neither call nor forward")
        if accepts_keyword(type(self).call, "training"):
            return self.call(x, training=training)
        return self.call(x)

    def backward(self, grad_y, wrt_preactivation=False, need_grad_x=True):
        """dL/dx from dL/dy (None when ``need_grad_x`` is False); fills ``self.grads``."""
        raise NotImplementedError(
            f"layer {self.name!r} ({type(self).__name__}) has no backward: pynn can train only "
            "layers that implement it"
        )

    @property
    def output_activation(self):
        """Name of the activation this layer applies last, or None."""
        return None

    @property
    def preactivation(self):
        """The pre-activation ``z`` of the last ``forward`` (when output_activation is set).
        The fused losses ask for it only of a softmax or sigmoid output layer; a layer may
        return None for activations whose z it does not keep (Conv2D with relu)."""
        return None

    # --- helpers for subclasses ------------------------------------------------------------
    def _ensure_built(self, input_shape):
        if not self.built:
            input_shape = tuple(input_shape)
            self.build(input_shape)
            self.built = True
            self.input_shape = input_shape
            self.output_shape = tuple(self.compute_output_shape(input_shape))

    def _convert_input(self, x):
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"layer '{self.name}' expects numeric input, got dtype {x.dtype}")
        if x.ndim < 1:
            raise ValueError(f"layer '{self.name}' expects a batch of inputs, got a scalar")
        return np.ascontiguousarray(x, dtype=self.dtype)

    def _as_compute(self, x):
        """``x`` as a C-contiguous array of this layer's dtype (no copy when it already is)."""
        if x.dtype != self.dtype or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=self.dtype)
        return x

    def _buffer(self, tag, shape, dtype=None):
        """A reusable uninitialised array for (tag, shape); allocated on first request."""
        key = (tag, shape)
        buf = self._buffers.get(key)
        if buf is None:
            if len(self._buffers) >= 8 * _MAX_BUFFERED_SHAPES:
                self._buffers.clear()
            buf = np.empty(shape, dtype=dtype or self.dtype)
            self._buffers[key] = buf
        return buf

    def _kernel_bias_grads(self, grad_kernel, grad_bias):
        """``self.grads`` of a layer with ``kernel`` and (``use_bias``) ``bias`` weights: the
        gradients of those that are trainable, in weight order."""
        if not self.trainable:
            return []
        grads = [grad_kernel] if self.kernel.trainable else []
        if self.use_bias and self.bias.trainable:
            grads.append(grad_bias)
        return grads

    def _add_regularizer_grads(self):
        """Add the regularizers' gradients to ``self.grads`` in place."""
        if not self._regularizers or not self.trainable:
            return
        trainable = self.trainable_weights
        for variable, regularizer in self._regularizers:
            for index, candidate in enumerate(trainable):
                if candidate is variable:
                    scratch = self._buffer(("reg", index), variable.shape, variable.dtype)
                    regularizer.gradient(variable.value, out=scratch)
                    np.add(self.grads[index], scratch, out=self.grads[index])

    def _call_symbolic(self, tensor):
        from pynn.layers.input_layer import KerasTensor

        self._ensure_built(tensor.shape[1:])
        out_shape = (None,) + tuple(self.compute_output_shape(tuple(tensor.shape[1:])))
        return KerasTensor(out_shape, dtype=self.dtype, layer=self, parent=tensor)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}, built={self.built}>"
