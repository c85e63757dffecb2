"""``Model``: functional chains, the Keras training API and the explicit forward/backward loop.

``Model(inputs=Input(...), outputs=...)`` walks back from ``outputs`` to ``inputs`` and keeps the
layers in execution order (chains only: one input, one output, each layer used once). A
subclass that defines ``call`` with layers created in ``__init__`` is traced the same way on
its first data (``call`` is run once on a KerasTensor).

Training (docs/design.md): ``fit`` validates and converts the data once, then for every epoch
runs ``_fit_epoch``, which gathers each batch into a reused buffer and calls ``_train_step``:
forward -> loss (fused with a final softmax/sigmoid when the loss allows) -> backward (layers
add their regularizer gradients) -> ``optimizer.apply``. Both methods are self-contained so a
compiled fast path can replace them.
"""
import math

import numpy as np

from cnn_core import all_finite
from pynn.layers.base import accepts_keyword, standardize_shape, to_snake_case, unique_name
from pynn.layers.input_layer import Input, InputLayer, KerasTensor
from pynn.utils.random import get_rng

_FUSABLE_ACTIVATIONS = ("softmax", "sigmoid")
_DEFAULT_BATCH_SIZE = 32
_PREDICT_CHUNK = 512


def _verbosity(verbose):
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
    return verbose


def _positive_int(value, name, default=None):
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _format_shape(shape):
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def _check_finite(array, what):
    # One compiled pass, no temporary array of x's size (min + max took two).
    if array.size and not all_finite(array):
        bad = "NaN" if np.isnan(array).any() else "inf"
        raise ValueError(f"{what} contains non-finite values ({bad}); clean the data "
                         "before using it")


def _readable_size(num_bytes):
    """Keras' ``readable_memory_size``: '198.79 KB'."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if num_bytes / 1024 < 1:
            return f"{num_bytes:.2f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.2f} PB"


class Model:
    """A model made of a chain of layers (Keras 3's ``keras.Model``).

    ``Model(inputs, outputs, name=None)``; ``Sequential`` subclasses it.
    """

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        if kwargs:
            raise TypeError(f"Model got unexpected keyword argument(s) {sorted(kwargs)}")
        default = "functional" if inputs is not None else to_snake_case(type(self).__name__)
        self.name = name or unique_name(default)
        self.trainable = bool(trainable)
        self._input_layer = None
        self._layers = []          # computational layers in execution order (no InputLayer)
        self._buffers = {}
        self.built = False
        self.stop_training = False
        self.history = None
        self.optimizer = None
        self.loss = None
        self.compiled = False
        self._loss_fn = None
        self._metric_ids = []
        self._metrics = None
        self._compile_config = None
        self._loss_sum = 0.0
        self._loss_count = 0
        if inputs is not None or outputs is not None:
            if inputs is None or outputs is None:
                raise ValueError("a functional Model needs both inputs= and outputs=")
            self._init_graph(inputs, outputs)
        if not self.trainable:
            self.trainable = False  # now that the layers exist: freeze them too

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        """As in Keras, setting it sets every layer's: a frozen model's BatchNormalization
        layers normalise with their moving statistics and stop updating them."""
        self._trainable = bool(value)
        for layer in list(self.__dict__.get("_layers", ())) + [self.__dict__.get("_input_layer")]:
            if layer is not None:
                layer.trainable = self._trainable

    # =========================================================================================
    # Graph
    # =========================================================================================
    def _init_graph(self, inputs, outputs):
        inputs = self._single_tensor(inputs, "inputs")
        outputs = self._single_tensor(outputs, "outputs")
        if not isinstance(inputs.layer, InputLayer):
            raise ValueError("Model inputs must come from pynn.layers.Input(...)")
        layers = []
        tensor = outputs
        while tensor is not inputs:
            layer, parent = tensor._keras_history
            if parent is None:
                raise ValueError(
                    f"the outputs of model '{self.name}' are not computed from its inputs "
                    f"(reached input '{layer.name}' instead)"
                )
            layers.append(layer)
            tensor = parent
        layers.reverse()
        self._input_layer = inputs.layer
        self._set_layers(layers)
        self.built = True

    @staticmethod
    def _single_tensor(value, what):
        if isinstance(value, dict) and len(value) == 1:
            value = next(iter(value.values()))
        if isinstance(value, (list, tuple)):
            if len(value) != 1:
                raise NotImplementedError(
                    f"models with several {what} are not supported (got {len(value)})")
            value = value[0]
        if not isinstance(value, KerasTensor):
            raise TypeError(f"Model {what} must be KerasTensors (from pynn.layers.Input and "
                            f"layer calls), got {type(value).__name__}")
        return value

    def _set_layers(self, layers):
        seen_ids, seen_names = set(), set()
        for layer in layers:
            if id(layer) in seen_ids:
                raise NotImplementedError(
                    f"layer '{layer.name}' is used twice; shared layers are not supported")
            if layer.name in seen_names:
                raise ValueError(f"all layer names must be unique; '{layer.name}' is used by "
                                 "two layers of this model")
            seen_ids.add(id(layer))
            seen_names.add(layer.name)
        self._layers = list(layers)

    def _is_subclassed(self):
        return type(self).call is not Model.call and not getattr(self, "_is_sequential", False)

    def _trace_call(self, input_shape):
        """Build a subclassed model: run its ``call`` once on a KerasTensor."""
        inputs = Input(shape=input_shape, dtype=self._dtype_hint())
        try:
            # training=True so layers used only in training (Dropout) are part of the graph.
            if accepts_keyword(type(self).call, "training"):
                outputs = self.call(inputs, training=True)
            else:
                outputs = self.call(inputs)
        except (TypeError, AttributeError) as error:
            raise NotImplementedError(
                f"could not trace {type(self).__name__}.call: pynn supports subclassed models "
                f"whose call() applies layers one after another ({error})"
            ) from error
        self._init_graph(inputs, outputs)
        if not self.trainable:
            self.trainable = False  # freeze the layers the trace found

    def _dtype_hint(self):
        from pynn.utils import floatx

        return floatx()

    def build(self, input_shape):
        """Build for inputs of ``input_shape`` (Keras: the batch axis included, e.g. (None, 4))."""
        shape = standardize_shape(input_shape)
        if len(shape) < 2:
            raise ValueError(f"input_shape must include the batch axis, e.g. (None, 4); "
                             f"got {input_shape}")
        self._build_for(shape[1:])

    def _build_for(self, sample_shape):
        """Build from the shape of one sample (no batch axis)."""
        if self.built:
            return
        if self._is_subclassed():
            self._trace_call(tuple(sample_shape))
            return
        raise ValueError(f"model '{self.name}' has no layers to build")

    @property
    def layers(self):
        return ([self._input_layer] if self._input_layer is not None else []) + self._layers

    def get_layer(self, name=None, index=None):
        if index is not None:
            try:
                return self.layers[index]
            except IndexError:
                raise ValueError(f"model '{self.name}' has {len(self.layers)} layers, "
                                 f"no index {index}") from None
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers: {[l.name for l in self.layers]}")

    @property
    def dtype(self):
        if self._input_layer is not None:
            return self._input_layer.dtype
        if self._layers:
            return self._layers[0].dtype
        return self._dtype_hint()

    @property
    def _sample_shape(self):
        """Input shape without the batch axis, or None before build."""
        if self._input_layer is not None:
            return tuple(self._input_layer.input_shape_arg)
        return None

    @property
    def input_shape(self):
        shape = self._sample_shape
        return None if shape is None else (None,) + shape

    @property
    def output_shape(self):
        shape = self._sample_shape
        if shape is None:
            return None
        for layer in self._layers:
            shape = tuple(layer.compute_output_shape(shape))
        return (None,) + shape

    @property
    def inputs(self):
        return [self._input_layer.output] if self._input_layer is not None else None

    # =========================================================================================
    # Weights
    # =========================================================================================
    @property
    def weights(self):
        return [v for layer in self._layers for v in layer.weights]

    variables = weights

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        return [v for layer in self._layers for v in layer.trainable_weights]

    @property
    def trainable_variables(self):
        return self.trainable_weights

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.weights
        return [v for layer in self._layers for v in layer.non_trainable_weights]

    @property
    def non_trainable_variables(self):
        return self.non_trainable_weights

    def get_weights(self):
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights):
        weights = list(weights)
        variables = self.weights
        if len(weights) != len(variables):
            raise ValueError(
                f"model '{self.name}' has {len(variables)} weight arrays "
                f"({[v.shape for v in variables]}), got {len(weights)}"
            )
        for index, (variable, value) in enumerate(zip(variables, weights)):
            shape = np.shape(value)
            if shape != variable.shape:
                raise ValueError(
                    f"weight {index} ('{getattr(variable, 'path', variable.name)}') has shape "
                    f"{variable.shape}, got an array of shape {shape}"
                )
        for variable, value in zip(variables, weights):
            variable.assign(value)

    def count_params(self):
        if not self.built:
            raise ValueError(f"model '{self.name}' is not built yet: call it on data or give "
                             "the first layer an input_shape")
        return int(sum(v.size for v in self.weights))

    @property
    def losses(self):
        return [loss for layer in self._layers for loss in layer.losses]

    def _regularization_loss(self):
        total = 0.0
        for layer in self._layers:
            if layer._regularizers:
                total += layer.regularization_loss()
        return total

    # =========================================================================================
    # Forward / backward (explicit loop)
    # =========================================================================================
    def forward(self, x, training=False):
        """Run every layer keeping what ``backward`` needs.

        x: (batch, ...) ndarray of the model dtype. Returns the output, a buffer that the next
        ``forward`` overwrites.
        """
        for layer in self._layers:
            x = layer.forward(x, training=training)
        return x

    def backward(self, grad, wrt_preactivation=False):
        """Back-propagate dL/dy_pred (or dL/dz of the last layer when ``wrt_preactivation``).

        Returns the gradients aligned with ``trainable_variables`` (buffers reused per step).
        """
        layers = self._layers
        first = len(layers)
        for index, layer in enumerate(layers):
            if layer.trainable_weights:
                first = index
                break
        last = len(layers) - 1
        for index in range(last, first - 1, -1):
            layer = layers[index]
            wrt_pre = wrt_preactivation and index == last
            if accepts_keyword(type(layer).backward, "need_grad_x"):
                grad = layer.backward(grad, wrt_preactivation=wrt_pre,
                                      need_grad_x=index > first)
            else:  # a layer written to docs/design.md's two-argument backward
                grad = layer.backward(grad, wrt_preactivation=wrt_pre)
        return self._collect_grads()

    def _collect_grads(self):
        if not self.trainable:
            return []
        grads = []
        for layer in self._layers:
            if layer.trainable_weights:
                grads.extend(layer.grads)
        return grads

    def call(self, inputs, training=False):
        """Forward on an ndarray; returns a new array (Keras' ``Model.call``)."""
        return np.array(self.forward(inputs, training=training), copy=True)

    def __call__(self, inputs, training=False, **kwargs):
        if isinstance(inputs, KerasTensor):
            raise NotImplementedError("calling a model on a KerasTensor (nesting models) is "
                                      "not supported; add its layers instead")
        x = self._prepare_x(inputs, "inputs")
        return np.array(self.forward(x, training=bool(training)), copy=True)

    # =========================================================================================
    # Compile
    # =========================================================================================
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True):
        """Configure training (Keras 3 signature). ``jit_compile``: "auto"/True lets ``fit`` run
        supported models (dense chains) in the compiled training loop; False keeps the
        per-layer Python loop (same results; useful to debug or to step into layers).
        run_eagerly, steps_per_execution and auto_scale_loss are accepted and ignored."""
        from pynn import losses as _losses
        from pynn import metrics as _metrics
        from pynn import optimizers as _optimizers

        if loss_weights is not None:
            raise NotImplementedError("loss_weights is not supported (single-output models)")
        if weighted_metrics:
            raise NotImplementedError("weighted_metrics is not supported")
        self.optimizer = _optimizers.get(optimizer)
        self._loss_fn = _losses.get(loss)
        self.loss = loss
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, dict)) or not isinstance(metrics, (list, tuple)):
            metrics = [metrics]
        self._metric_ids = list(metrics)
        # Resolve once now so unknown names fail at compile time (as Keras does).
        self._metrics = [_metrics.get(m, loss=self._loss_fn if self._loss_fn is not None
                                      else None) for m in self._metric_ids]
        self._metrics_resolved_with_shapes = False
        self.jit_compile = jit_compile is not False and not run_eagerly
        self._compile_config = {"optimizer": optimizer, "loss": loss, "metrics": metrics}
        self.compiled = True
        self.stop_training = False

    def _assert_compiled(self, method):
        if not self.compiled:
            raise RuntimeError(f"You must call compile() before {method}() "
                               f"(model '{self.name}' is not compiled)")
        if self._loss_fn is None and method not in ("predict",):
            raise ValueError(f"model '{self.name}' was compiled without a loss; "
                             f"{method}() needs one: compile(loss=...)")

    @property
    def metrics(self):
        return list(self._metrics or [])

    @property
    def metrics_names(self):
        return ["loss"] + [m.name for m in self.metrics]

    def reset_metrics(self):
        self._loss_sum = 0.0
        self._loss_count = 0
        for metric in self._metrics or []:
            metric.reset_state()

    def get_compile_config(self):
        if not self.compiled:
            return None
        from pynn.models.saving import serialize_compile_config

        return serialize_compile_config(self)

    def compile_from_config(self, config):
        from pynn.models.saving import compile_from_config

        compile_from_config(self, config)

    # =========================================================================================
    # Data validation and conversion (once per fit/evaluate/predict, before any work)
    # =========================================================================================
    def _prepare_x(self, x, what="x", check_finite=True):
        if x is None:
            raise ValueError(f"{what} is None; pass a numeric array of samples")
        if isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], np.ndarray):
            x = x[0]
        try:
            array = np.asarray(x)
        except (ValueError, TypeError) as error:
            raise TypeError(f"{what} must be a numeric array: {error}") from None
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{what} must be numeric (ints or floats), got dtype {array.dtype}")
        if array.ndim < 1 or array.shape[0] == 0:
            raise ValueError(f"{what} must be a non-empty batch of samples, got shape "
                             f"{array.shape}")
        if not self.built:
            self._build_for(array.shape[1:])
        expected = self._sample_shape
        if expected is not None and (
                len(expected) != array.ndim - 1
                or any(e is not None and e != s for e, s in zip(expected, array.shape[1:]))):
            raise ValueError(
                f"model '{self.name}' expects input of shape {_format_shape((None,) + expected)}"
                f", got {what} with shape {array.shape}"
            )
        array = np.ascontiguousarray(array, dtype=self.dtype)
        if check_finite:
            _check_finite(array, what)
        return array

    def _prepare_y(self, y, num_samples, what="y"):
        if y is None:
            raise ValueError(f"{what} is None: this method needs targets")
        try:
            y = np.asarray(y)
        except (ValueError, TypeError) as error:
            raise TypeError(f"{what} must be a numeric array: {error}") from None
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{what} must be numeric, got dtype {y.dtype}")
        if y.ndim < 1 or y.shape[0] != num_samples:
            got = y.shape[0] if y.ndim else "a scalar"
            raise ValueError(f"x and {what} must have the same number of samples: x has "
                             f"{num_samples}, {what} has {got} (shape {y.shape})")
        pred_shape = self.output_shape
        prepare = getattr(self._loss_fn, "prepare_targets", None)
        if prepare is not None:
            y = prepare(y, (num_samples,) + tuple(pred_shape[1:]), self.dtype)
        else:
            y = np.ascontiguousarray(y)
            if y.dtype.kind == "f" and y.size and not np.isfinite(y).all():
                raise ValueError(f"{what} contains non-finite values")
        return np.ascontiguousarray(y)

    def _resolve_metrics_for(self, y, pred_shape):
        """Re-resolve 'accuracy' from the data shapes for losses compile() could not classify."""
        if getattr(self, "_metrics_resolved_with_shapes", True):
            return
        self._metrics_resolved_with_shapes = True
        from pynn import losses as _losses
        from pynn import metrics as _metrics

        if type(self._loss_fn) in (_losses.MeanSquaredError, _losses.MeanAbsoluteError,
                                   _losses.BinaryCrossentropy, _losses.CategoricalCrossentropy,
                                   _losses.SparseCategoricalCrossentropy):
            return
        self._metrics = [
            m_obj if not isinstance(m_id, str) else _metrics.get(
                m_id, loss=None, y_true_shape=y.shape, y_pred_shape=pred_shape)
            for m_id, m_obj in zip(self._metric_ids, self._metrics)
        ]

    # =========================================================================================
    # One step
    # =========================================================================================
    def _buffer(self, tag, shape, dtype):
        key = (tag, shape, np.dtype(dtype).str)
        buf = self._buffers.get(key)
        if buf is None:
            if len(self._buffers) > 32:
                self._buffers.clear()
            buf = np.empty(shape, dtype=dtype)
            self._buffers[key] = buf
        return buf

    def _fused_activation(self):
        """The final activation the loss takes the logits of, or None."""
        if not self._layers:
            return None
        activation = self._layers[-1].output_activation
        if activation in _FUSABLE_ACTIVATIONS and self._loss_fn.fuses_with(activation):
            return activation
        return None

    def _loss_and_grad(self, y_batch, y_pred):
        """(loss, dL/d output or dL/d logits, fused?) for one batch."""
        grad = self._buffer("loss_grad", y_pred.shape, y_pred.dtype)
        if self._fused_activation() is not None:
            logits = self._layers[-1].preactivation.reshape(y_pred.shape)
            loss, grad = self._loss_fn.loss_and_grad_from_logits(y_batch, logits, grad=grad)
            return loss, grad, True
        loss, grad = self._loss_fn.loss_and_grad(y_batch, y_pred, grad=grad)
        return loss, grad, False

    def _train_step(self, x_batch, y_batch):
        """forward -> loss -> backward -> optimizer.apply on one batch; returns the loss
        (including the regularization penalties) and updates the metrics."""
        y_pred = self.forward(x_batch, training=True)
        loss, grad, fused = self._loss_and_grad(y_batch, y_pred)
        loss += self._regularization_loss()
        grads = self.backward(grad, wrt_preactivation=fused)
        self.optimizer.apply(grads, self.trainable_variables)
        for metric in self._metrics:
            metric.update_state(y_batch, y_pred)
        return loss

    def _test_step(self, x_batch, y_batch):
        y_pred = self.forward(x_batch, training=False)
        loss, _, _ = self._loss_and_grad(y_batch, y_pred)
        loss += self._regularization_loss()
        for metric in self._metrics:
            metric.update_state(y_batch, y_pred)
        return loss

    def _track_loss(self, loss, count):
        self._loss_sum += float(loss) * count
        self._loss_count += count

    def _logs(self):
        """Running mean of the loss (weighted by batch size, as Keras) and the metrics."""
        logs = {"loss": self._loss_sum / self._loss_count if self._loss_count else 0.0}
        for metric in self._metrics:
            logs[metric.name] = float(metric.result())
        return logs

    # =========================================================================================
    # fit
    # =========================================================================================
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Train for ``epochs`` epochs (Keras 3 semantics); returns the History."""
        from pynn.callbacks import CallbackList, History, ProgbarLogger
        from pynn.models.fast_path import FastFit

        self._assert_compiled("fit")
        if class_weight is not None or sample_weight is not None:
            raise NotImplementedError("class_weight and sample_weight are not supported")
        if steps_per_epoch is not None or validation_steps is not None:
            raise NotImplementedError("steps_per_epoch/validation_steps are not supported "
                                      "(pynn trains on in-memory arrays)")
        verbose = _verbosity(verbose)
        batch_size = _positive_int(batch_size, "batch_size", _DEFAULT_BATCH_SIZE)
        validation_batch_size = _positive_int(validation_batch_size, "validation_batch_size",
                                              batch_size)
        validation_freq = _positive_int(validation_freq, "validation_freq", 1)
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")

        x = self._prepare_x(x)
        y = self._prepare_y(y, x.shape[0])
        val = None
        if validation_data is not None:
            val = self._prepare_validation_data(validation_data)
        elif validation_split:
            # Keras: the last fraction of the samples, taken before any shuffling.
            split_at = int(math.floor(x.shape[0] * (1.0 - float(validation_split))))
            if split_at == 0 or split_at == x.shape[0]:
                raise ValueError(
                    f"validation_split={validation_split} leaves no training or no validation "
                    f"samples out of {x.shape[0]}")
            val = (x[split_at:], y[split_at:])
            x, y = x[:split_at], y[:split_at]
        self._resolve_metrics_for(y, (None,) + tuple(self.output_shape[1:]))

        steps = math.ceil(x.shape[0] / batch_size)
        callback_list = callbacks if isinstance(callbacks, CallbackList) else CallbackList(
            callbacks, add_history=True, add_progbar=verbose != 0, model=self,
            verbose=verbose, epochs=epochs, steps=steps)
        batch_hooks = _overrides_any(callback_list, ("on_train_batch_begin",
                                                     "on_train_batch_end", "on_batch_begin",
                                                     "on_batch_end"))
        self.stop_training = False
        # Dense chains with a supported loss/optimizer train in compiled code (fast_path.py).
        self._fast_fit = FastFit.prepare(self, x, y, batch_size)
        self._exact_batch_hooks = _overrides_any(
            callback_list, ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin",
                            "on_batch_end"), ignore=(ProgbarLogger, History))
        callback_list.on_train_begin()
        epoch_logs = {}
        for epoch in range(int(initial_epoch), int(epochs)):
            self.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            self._fit_epoch(x, y, batch_size, shuffle, callback_list, batch_hooks)
            epoch_logs = self._logs()
            if val is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._evaluate_arrays(val[0], val[1], validation_batch_size,
                                                 callback_list)
                epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
            callback_list.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        self._fast_fit = None  # drop the compiled loop's batch buffers
        callback_list.on_train_end(epoch_logs)
        history = next((cb for cb in callback_list.callbacks if isinstance(cb, History)), None)
        if history is not None:
            self.history = history
        return self.history

    def _prepare_validation_data(self, validation_data):
        if not isinstance(validation_data, (list, tuple)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be a tuple (x_val, y_val)")
        if len(validation_data) == 3 and validation_data[2] is not None:
            raise NotImplementedError("validation sample weights are not supported")
        x_val = self._prepare_x(validation_data[0], "validation_data x")
        y_val = self._prepare_y(validation_data[1], x_val.shape[0], "validation_data y")
        return x_val, y_val

    def _fit_epoch(self, x, y, batch_size, shuffle, callbacks, batch_hooks):
        """One epoch of mini-batch training over (x, y); returns the mean loss.

        x, y: validated, C-contiguous arrays of the model dtype / prepared targets. Batches are
        gathered with ``np.take`` into buffers reused for every full batch.
        """
        fast = getattr(self, "_fast_fit", None)
        if fast is not None:
            fast.run_epoch(x, y, batch_size, shuffle, callbacks, batch_hooks,
                           self._exact_batch_hooks)
            return self._loss_sum / max(self._loss_count, 1)
        num_samples = x.shape[0]
        order = get_rng().permutation(num_samples) if shuffle else None
        for step, start in enumerate(range(0, num_samples, batch_size)):
            stop = min(start + batch_size, num_samples)
            if order is None:
                x_batch, y_batch = x[start:stop], y[start:stop]
            else:
                index = order[start:stop]
                count = stop - start
                x_batch = self._buffer("x_batch", (count,) + x.shape[1:], x.dtype)
                y_batch = self._buffer("y_batch", (count,) + y.shape[1:], y.dtype)
                # mode='clip' (indices are valid) lets take write straight into `out`.
                np.take(x, index, axis=0, out=x_batch, mode="clip")
                np.take(y, index, axis=0, out=y_batch, mode="clip")
            if batch_hooks:
                callbacks.on_train_batch_begin(step)
            loss = self._train_step(x_batch, y_batch)
            self._track_loss(loss, stop - start)
            if batch_hooks:
                callbacks.on_train_batch_end(step, self._logs())
            if self.stop_training:
                break
        return self._loss_sum / max(self._loss_count, 1)

    # =========================================================================================
    # evaluate / predict
    # =========================================================================================
    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """Loss (and metrics) on (x, y): a float, or [loss, *metrics] (dict with return_dict)."""
        from pynn.callbacks import CallbackList

        self._assert_compiled("evaluate")
        if sample_weight is not None or steps is not None:
            raise NotImplementedError("sample_weight and steps are not supported")
        verbose = _verbosity(verbose)
        batch_size = _positive_int(batch_size, "batch_size", _DEFAULT_BATCH_SIZE)
        x = self._prepare_x(x)
        y = self._prepare_y(y, x.shape[0])
        self._resolve_metrics_for(y, (None,) + tuple(self.output_shape[1:]))
        callback_list = callbacks if isinstance(callbacks, CallbackList) else CallbackList(
            callbacks, add_progbar=verbose != 0, model=self, verbose=verbose, epochs=1,
            steps=math.ceil(x.shape[0] / batch_size))
        logs = self._evaluate_arrays(x, y, batch_size, callback_list)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def _evaluate_arrays(self, x, y, batch_size, callbacks):
        self.reset_metrics()
        batch_hooks = _overrides_any(callbacks, ("on_test_batch_begin", "on_test_batch_end"))
        callbacks.on_test_begin()
        for step, start in enumerate(range(0, x.shape[0], batch_size)):
            stop = min(start + batch_size, x.shape[0])
            if batch_hooks:
                callbacks.on_test_batch_begin(step)
            loss = self._test_step(x[start:stop], y[start:stop])
            self._track_loss(loss, stop - start)
            if batch_hooks:
                callbacks.on_test_batch_end(step, self._logs())
        logs = self._logs()
        callbacks.on_test_end(logs)
        return logs

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs for x, computed in batches: an ndarray (num_samples, ...)."""
        from pynn.callbacks import CallbackList
        from pynn.models.fast_path import compiled_predictor

        if steps is not None:
            raise NotImplementedError("steps is not supported")
        verbose = _verbosity(verbose)
        batch_size = _positive_int(batch_size, "batch_size", _DEFAULT_BATCH_SIZE)
        x = self._prepare_x(x, check_finite=False)
        if verbose == 0 and not callbacks:
            # Dense chains: the whole forward pass in compiled code (fast_path.py), in chunks
            # of at least _PREDICT_CHUNK rows: a row's outputs do not depend on the chunk it is
            # in (same bits), and 32-row GEMMs would leave a third of the speed unused.
            predictor = compiled_predictor(self, max(batch_size, _PREDICT_CHUNK))
            if predictor is not None:
                sample_shape = tuple(self.output_shape[1:])
                out = np.empty((x.shape[0], math.prod(sample_shape)), np.float32)
                flat = x.reshape(x.shape[0], -1)
                # The predictor shows x finite from the first layer's outputs, saving the
                # separate pass over x (5% of predict); x itself is read only when it cannot.
                if not predictor.predict(flat, out):
                    _check_finite(x, "x")
                    predictor.predict(flat, out, prove_finite=False)  # the first layer overflowed
                return out.reshape((x.shape[0],) + sample_shape)
        _check_finite(x, "x")
        callback_list = callbacks if isinstance(callbacks, CallbackList) else CallbackList(
            callbacks, add_progbar=verbose != 0, model=self, verbose=verbose, epochs=1,
            steps=math.ceil(x.shape[0] / batch_size))
        batch_hooks = _overrides_any(callback_list, ("on_predict_batch_begin",
                                                     "on_predict_batch_end"))
        callback_list.on_predict_begin()
        out = None
        for step, start in enumerate(range(0, x.shape[0], batch_size)):
            stop = min(start + batch_size, x.shape[0])
            if batch_hooks:
                callback_list.on_predict_batch_begin(step)
            y_pred = self.forward(x[start:stop], training=False)
            if out is None:
                out = np.empty((x.shape[0],) + y_pred.shape[1:], dtype=y_pred.dtype)
            out[start:stop] = y_pred
            if batch_hooks:
                callback_list.on_predict_batch_end(step, {"outputs": out[start:stop]})
        callback_list.on_predict_end()
        return out

    # =========================================================================================
    # *_on_batch
    # =========================================================================================
    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        """One training step on one batch; returns that batch's loss (and metrics)."""
        self._assert_compiled("train_on_batch")
        if sample_weight is not None or class_weight is not None:
            raise NotImplementedError("sample_weight and class_weight are not supported")
        x = self._prepare_x(x)
        y = self._prepare_y(y, x.shape[0])
        self._resolve_metrics_for(y, (None,) + tuple(self.output_shape[1:]))
        # Per-batch values: metrics restart at every call (Keras PR #22617).
        self.reset_metrics()
        loss = self._train_step(x, y)
        self._track_loss(loss, x.shape[0])
        return self._flatten_logs(self._logs(), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._assert_compiled("test_on_batch")
        if sample_weight is not None:
            raise NotImplementedError("sample_weight is not supported")
        x = self._prepare_x(x)
        y = self._prepare_y(y, x.shape[0])
        self._resolve_metrics_for(y, (None,) + tuple(self.output_shape[1:]))
        self.reset_metrics()
        loss = self._test_step(x, y)
        self._track_loss(loss, x.shape[0])
        return self._flatten_logs(self._logs(), return_dict)

    def predict_on_batch(self, x):
        x = self._prepare_x(x)
        return np.array(self.forward(x, training=False), copy=True)

    @staticmethod
    def _flatten_logs(logs, return_dict):
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    # =========================================================================================
    # Summary
    # =========================================================================================
    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """Print Keras 3's table: layer (type), output shape, param #, then the totals.

        ``print_fn`` (if given) receives the whole summary as one string, as in Keras 3.
        """
        rows = []
        shape = self._sample_shape
        for layer in self.layers:
            if shape is not None and not isinstance(layer, InputLayer):
                shape = tuple(layer.compute_output_shape(shape))
            out = "?" if shape is None else _format_shape((None,) + tuple(shape))
            params = layer.count_params() if layer.built else 0
            rows.append((f"{layer.name} ({type(layer).__name__})", out, f"{params:,}"))
        header = ("Layer (type)", "Output Shape", "Param #")
        widths = [33, 24, 15]
        if line_length:
            widths = [max(10, int(line_length * f)) for f in (0.34, 0.25, 0.16)]
        for row in rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell) + 2)

        def line(cells, left, mid, right, align=("<", "<", ">")):
            parts = [f" {cell:{a}{w - 2}} " for cell, w, a in zip(cells, widths, align)]
            return left + mid.join(parts) + right

        def rule(left, mid, right, fill):
            return left + mid.join(fill * w for w in widths) + right

        lines = [f'Model: "{self.name}"', rule("┏", "┳", "┓", "━"),
                 line(header, "┃", "┃", "┃"), rule("┡", "╇", "┩", "━")]
        for i, row in enumerate(rows):
            if i:
                lines.append(rule("├", "┼", "┤", "─"))
            lines.append(line(row, "│", "│", "│"))
        lines.append(rule("└", "┴", "┘", "─"))
        total = sum(v.size for v in self.weights)
        trainable = sum(v.size for v in self.trainable_weights)
        itemsize = np.dtype(self.dtype).itemsize
        lines.append(f" Total params: {total:,} ({_readable_size(total * itemsize)})")
        lines.append(f" Trainable params: {trainable:,} "
                     f"({_readable_size(trainable * itemsize)})")
        lines.append(f" Non-trainable params: {total - trainable:,} "
                     f"({_readable_size((total - trainable) * itemsize)})")
        if self.optimizer is not None and getattr(self.optimizer, "built", False):
            opt_vars = self.optimizer.variables
            count = sum(np.size(v) for v in opt_vars)
            size = sum(np.asarray(v).nbytes for v in opt_vars)
            lines.append(f" Optimizer params: {count:,} ({_readable_size(size)})")
        text = "\n".join(lines)
        (print_fn or print)(text)

    # =========================================================================================
    # Config and saving
    # =========================================================================================
    def get_config(self):
        """Keras-like functional config: the layers with their inbound layer names."""
        if self._is_subclassed():
            raise NotImplementedError(
                f"{type(self).__name__} is a subclassed model: override get_config/from_config")
        from pynn.layers import serialize as serialize_layer

        layer_configs = []
        previous = None
        for layer in self.layers:
            entry = serialize_layer(layer)
            entry["name"] = layer.name
            entry["inbound_nodes"] = [] if previous is None else [[previous, 0, 0]]
            layer_configs.append(entry)
            previous = layer.name
        names = [layer.name for layer in self.layers]
        return {"name": self.name, "trainable": self.trainable, "layers": layer_configs,
                "input_layers": [[names[0], 0, 0]] if names else [],
                "output_layers": [[names[-1], 0, 0]] if names else []}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from pynn.layers import deserialize as deserialize_layer

        tensors = {}
        inputs = outputs = None
        for entry in config["layers"]:
            layer = deserialize_layer(entry, custom_objects)
            inbound = entry.get("inbound_nodes") or []
            if isinstance(layer, InputLayer):
                tensor = layer.output
                inputs = inputs or tensor
            else:
                if len(inbound) != 1:
                    raise ValueError(f"layer {layer.name!r} must have exactly one inbound "
                                     "layer in a pynn model config")
                parent = inbound[0][0] if isinstance(inbound[0], (list, tuple)) else inbound[0]
                if parent not in tensors:
                    raise ValueError(f"layer {layer.name!r} refers to unknown layer {parent!r}")
                tensor = layer(tensors[parent])
            tensors[layer.name] = tensor
            outputs = tensor
        output_names = config.get("output_layers")
        if output_names:
            outputs = tensors[output_names[0][0]]
        return cls(inputs=inputs, outputs=outputs, name=config.get("name"),
                   trainable=config.get("trainable", True))

    def save(self, filepath, overwrite=True, **kwargs):
        """Write architecture, compile config, weights and optimizer state to one zip file."""
        from pynn.models.saving import save_model

        save_model(self, filepath, overwrite=overwrite, **kwargs)

    def save_weights(self, filepath, overwrite=True):
        from pynn.models.saving import save_weights

        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False):
        from pynn.models.saving import load_weights

        load_weights(self, filepath, skip_mismatch=skip_mismatch)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}, built={self.built}>"


def _overrides_any(callback_list, hooks, ignore=()):
    """True when some callback (not of a type in ``ignore``) does something in one of ``hooks``
    (else the loop skips them, saving the per-batch logs dict)."""
    from pynn.callbacks import Callback

    for callback in getattr(callback_list, "callbacks", [callback_list]):
        if isinstance(callback, ignore):
            continue
        for hook in hooks:
            # Bound methods compare by their function; a function set on the instance
            # (LambdaCallback) has no __func__ and always counts.
            method = getattr(callback, hook, None)
            method = getattr(method, "__func__", method)
            if method is not None and method is not getattr(Callback, hook, None):
                return True
    return False
