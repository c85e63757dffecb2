"""The compiled fit loop: whole training steps inside ``cnn_core`` for dense chains.

``fit`` asks ``FastFit.prepare(model, ...)`` once; when the model is a chain the compiled
trainer understands (Flatten/Input, then Dense layers, each optionally preceded by one Dropout
without noise_shape; a loss and optimizer it has kernels for;
accuracy as the only metric; the cnn_core backend; float32), each epoch runs in
``cnn_core._train.DenseChainTrainer.run``: gather, forward, loss, backward, regularisation,
clipping and the optimizer update, with no Python per layer or per step and no allocation.
Anything else returns None and ``fit`` takes the per-layer Python path, which computes the same
thing (tests compare the two).

Batch-level callbacks still see every batch when a user callback asks for them; when only the
progress bar listens, steps run in chunks of about 50 ms and the bar is told after each chunk
(Keras' ``steps_per_execution`` does the same).
"""
import time

import numpy as np

from pynn import backend as _backend
from pynn import losses as _losses
from pynn import metrics as _metrics
from pynn import optimizers as _optimizers
from pynn import regularizers as _regularizers
from pynn.layers.dense import Dense
from pynn.layers.dropout import Dropout
from pynn.layers.flatten import Flatten
from pynn.layers.input_layer import InputLayer
from pynn.optimizers import schedules as _schedules
from pynn.utils.random import get_rng

# Target wall time of one chunk of steps between two progress-bar updates.
_CHUNK_SECONDS = 0.05


def _loss_kind(loss, output_activation):
    """The trainer's loss kind for (Loss object, final activation), or None."""
    kind = type(loss)
    if kind is _losses.SparseCategoricalCrossentropy and loss.ignore_class is None:
        fused = "sparse_softmax_ce"
    elif kind is _losses.CategoricalCrossentropy and not loss.label_smoothing:
        fused = "softmax_ce"
    elif kind is _losses.BinaryCrossentropy and not loss.label_smoothing:
        fused = "sigmoid_bce"
    elif kind is _losses.MeanSquaredError:
        return "mse" if output_activation not in ("softmax", "log_softmax") else None
    elif kind is _losses.MeanAbsoluteError:
        return "mae" if output_activation not in ("softmax", "log_softmax") else None
    else:
        return None
    if getattr(loss, "reduction", "sum_over_batch_size") != "sum_over_batch_size":
        return None
    wanted = "sigmoid" if fused == "sigmoid_bce" else "softmax"
    if loss.from_logits and output_activation == "linear":
        return fused
    if not loss.from_logits and output_activation == wanted:
        return fused
    return None


_METRIC_FOR_LOSS = {
    "sparse_softmax_ce": _metrics.SparseCategoricalAccuracy,
    "softmax_ce": _metrics.CategoricalAccuracy,
    "sigmoid_bce": _metrics.BinaryAccuracy,
}


def _optimizer_spec(optimizer, variables):
    """The trainer's optimizer description (sharing the slot arrays), or None."""
    kind = type(optimizer)
    if (optimizer.loss_scale_factor is not None or optimizer.use_ema
            or optimizer.gradient_accumulation_steps):
        return None
    if not optimizer.built:
        optimizer.build(variables)
    try:
        indices = [optimizer._index[id(v)] for v in variables]
    except KeyError:
        return None
    spec = {
        "weight_decay": float(optimizer.weight_decay or 0.0),
        "clipnorm": optimizer.clipnorm,
        "clipvalue": optimizer.clipvalue,
        "global_clipnorm": optimizer.global_clipnorm,
        "decay": [optimizer._decay_mask[i] for i in indices],
    }
    if kind is _optimizers.SGD:
        spec.update(kind="sgd", momentum=optimizer.momentum, nesterov=optimizer.nesterov)
        names = ["momentum"] if optimizer.momentum != 0 else []
    elif kind in (_optimizers.Adam, _optimizers.AdamW) and not optimizer.amsgrad:
        spec.update(kind="adam", beta_1=optimizer.beta_1, beta_2=optimizer.beta_2,
                    epsilon=optimizer.epsilon)
        names = ["momentum", "velocity"]
    elif kind is _optimizers.RMSprop:
        spec.update(kind="rmsprop", rho=optimizer.rho, momentum=optimizer.momentum,
                    epsilon=optimizer.epsilon, centered=optimizer.centered)
        names = ["velocity"] + (["momentum"] if optimizer.momentum > 0 else []) + (
            ["average_gradient"] if optimizer.centered else [])
    elif kind is _optimizers.Adagrad:
        spec.update(kind="adagrad", epsilon=optimizer.epsilon)
        names = ["accumulator"]
    else:
        return None
    spec["slots"] = [[optimizer._slots[name][i] for name in names] for i in indices]
    return spec


def _regularization(regularizer):
    """(l1, l2) of an L1/L2/L1L2 regularizer; None for one the trainer does not know."""
    if regularizer is None:
        return 0.0, 0.0
    if isinstance(regularizer, _regularizers.L1L2) and type(regularizer) in (
            _regularizers.L1L2, _regularizers.L1, _regularizers.L2):
        return float(regularizer.l1), float(regularizer.l2)
    return None


def _dense_chain(model, inference=False):
    """(Dense layers, per Dense the Dropout on its input or None) of a Flatten/Input +
    [Dropout] Dense ... chain (all trainable, unless for inference), or None."""
    if not inference and not model.trainable:  # nothing to train: the Python loop says so
        return None
    denses, dropouts = [], []
    pending = None
    for layer in model.layers:
        if isinstance(layer, InputLayer):
            continue
        if isinstance(layer, Flatten) and not denses and pending is None:
            continue
        if type(layer) is Dropout:
            # The trainer draws a float32 mask of the input's shape from the layer's
            # generator (a float64 layer would draw doubles).
            if (pending is not None or layer.noise_shape is not None
                    or np.dtype(layer.dtype) != np.float32):
                return None
            pending = layer
            continue
        if (type(layer) is not Dense or not layer.built
                or layer.kernel.value.dtype != np.float32):
            return None
        if not inference and (not layer.trainable or not layer.kernel.trainable
                              or (layer.use_bias and not layer.bias.trainable)):
            return None
        denses.append(layer)
        dropouts.append(pending)
        pending = None
    if not denses or pending is not None:  # a Dropout on the output: left to the Python loop
        return None
    return denses, dropouts


def _dropout_rates(dropouts):
    """Per layer, the rate of the Dropout on its input (0.0: none)."""
    return [0.0 if d is None else float(d.rate) for d in dropouts]


def _generators(dropouts, rates):
    """Per layer, the Generator its input dropout draws from now (None: nothing drawn)."""
    return [d._rng() if 0.0 < rate < 1.0 else None for d, rate in zip(dropouts, rates)]


def _layer_specs(denses, loss, dropouts=None):
    """The trainer's description of each Dense layer (sharing its arrays), or None.
    dropouts: per layer, the Dropout on its input (training only) or None."""
    layers = []
    for dense in denses:
        kernel_reg = _regularization(dense.kernel_regularizer)
        bias_reg = _regularization(dense.bias_regularizer)
        if kernel_reg is None or bias_reg is None:
            return None
        activation = dense.activation
        if dense is denses[-1] and loss in ("sparse_softmax_ce", "softmax_ce"):
            activation = "softmax"  # logits either way: the loss kernel applies it
        elif dense is denses[-1] and loss == "sigmoid_bce":
            activation = "sigmoid"
        layers.append({
            "kernel": dense.kernel.value,
            "bias": dense.bias.value if dense.use_bias else None,
            "activation": activation,
            "param": dense._param,
            "kernel_l1": kernel_reg[0], "kernel_l2": kernel_reg[1],
            "bias_l1": bias_reg[0], "bias_l2": bias_reg[1],
        })
    for spec, dropout in zip(layers, dropouts or [None] * len(layers)):
        if dropout is not None and dropout.rate > 0:  # rate 0: the layer passes x on as is
            spec["dropout"] = dropout.rate
    return layers


def _takes_flat_input(model, denses):
    """The first Dense sees the whole flattened sample (not, say, the last axis of 3-D data)."""
    shape = getattr(model, "input_shape", None)
    if shape is None:
        return False
    features = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    has_flatten = any(isinstance(layer, Flatten) for layer in model.layers)
    return (len(shape) == 2 or has_flatten) and denses[0].kernel.value.shape[0] == features


def _compiled_ok(model):
    return (getattr(model, "jit_compile", True) and _backend.backend_name() == "cnn_core"
            and np.dtype(model.dtype) == np.float32)


def compiled_predictor(model, batch_size):
    """A compiled forward pass for ``predict`` of a dense chain (cached on the model while its
    weight arrays and the batch size stay the same), or None."""
    if not _compiled_ok(model):
        return None
    chain = _dense_chain(model, inference=True)
    if chain is None or not _takes_flat_input(model, chain[0]):
        return None
    denses = chain[0]  # Dropout is the identity outside training
    key = (int(batch_size),) + tuple(id(w.value) for w in model.weights)
    cached = getattr(model, "_compiled_predictor", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    last = denses[-1].activation
    if last == "log_softmax":
        return None
    loss = {"softmax": "sparse_softmax_ce", "sigmoid": "sigmoid_bce"}.get(last, "mse")
    layers = _layer_specs(denses, loss)
    if layers is None:
        return None
    n_arrays = sum(2 if spec["bias"] is not None else 1 for spec in layers)
    inference_only = {"kind": "sgd", "slots": [[]] * n_arrays, "decay": [False] * n_arrays}
    from cnn_core._train import DenseChainTrainer

    predictor = DenseChainTrainer(layers, loss, inference_only, int(batch_size))
    model._compiled_predictor = (key, predictor)
    return predictor


class FastFit:
    """Runs fit epochs of a supported model through the compiled trainer."""

    def __init__(self, model, trainer, metric, y_kind, dropouts):
        self.model = model
        self.dropouts = dropouts
        self.rates = _dropout_rates(dropouts)  # what the trainer was built with
        self.trainer = trainer
        self.metric = metric
        self.y_kind = y_kind
        self._chunk = 1

    @classmethod
    def prepare(cls, model, x, y, batch_size):
        """A FastFit for this model and data, or None when the Python path must be used."""
        if not _compiled_ok(model):
            return None
        chain = _dense_chain(model)
        if chain is None or x.dtype != np.float32 or not _takes_flat_input(model, chain[0]):
            return None
        denses, dropouts = chain
        loss = _loss_kind(model._loss_fn, denses[-1].activation)
        if loss is None:
            return None
        metric = None
        for m in model._metrics:
            wanted = _METRIC_FOR_LOSS.get(loss)
            if wanted is None or type(m) is not wanted or metric is not None:
                return None
            if wanted is _metrics.BinaryAccuracy and m.threshold != 0.5:
                return None
            metric = m
        spec = _optimizer_spec(model.optimizer, model.trainable_variables)
        if spec is None:
            return None
        layers = _layer_specs(denses, loss, dropouts)
        if layers is None:
            return None
        from cnn_core._train import DenseChainTrainer

        trainer = DenseChainTrainer(layers, loss, spec, int(batch_size))
        fast = cls(model, trainer, metric, loss, dropouts)
        fast._rebuild = lambda: DenseChainTrainer(_layer_specs(denses, loss, dropouts), loss,
                                                  spec, int(batch_size))
        return fast

    def _targets(self, y):
        if self.y_kind == "sparse_softmax_ce":
            y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
            return np.ascontiguousarray(y, dtype=np.int64)
        y = np.ascontiguousarray(y, dtype=np.float32)
        return y.reshape(y.shape[0], -1)

    def _learning_rates(self, first_iteration, steps):
        optimizer = self.model.optimizer
        lr = optimizer._learning_rate
        if isinstance(lr, _schedules.LearningRateSchedule):
            return np.array([float(lr(first_iteration + s)) for s in range(steps)])
        if callable(lr):
            return np.array([float(lr()) for _ in range(steps)])
        return np.full(steps, float(lr))

    def run_epoch(self, x, y, batch_size, shuffle, callbacks, batch_hooks, exact_batch_hooks):
        """One epoch (same batches, in the same order, as the Python path would take)."""
        model = self.model
        optimizer = model.optimizer
        num_samples = x.shape[0]
        x2 = x.reshape(num_samples, -1)
        y2 = self._targets(y)
        order = get_rng().permutation(num_samples) if shuffle else np.arange(num_samples)
        order = np.ascontiguousarray(order, dtype=np.int64)
        steps = -(-num_samples // batch_size)
        step = 0
        while step < steps:
            chunk = 1 if exact_batch_hooks else min(self._chunk, steps - step)
            if exact_batch_hooks:
                callbacks.on_train_batch_begin(step)
            lrs = self._learning_rates(optimizer.iterations, chunk)
            started = time.perf_counter()
            # Looked up per chunk: a callback may reseed the global generator or change a
            # dropout rate between batches (then the trainer is rebuilt for the new rates).
            rates = _dropout_rates(self.dropouts)
            if rates != self.rates:
                self.trainer = self._rebuild()
                self.rates = rates
            loss_sum, correct, compared, seen = self.trainer.run(
                x2, y2, order, step * batch_size, chunk, lrs, optimizer.iterations,
                _generators(self.dropouts, self.rates))
            elapsed = time.perf_counter() - started
            optimizer.iterations = optimizer.iterations + chunk
            model._loss_sum += loss_sum
            model._loss_count += seen
            if self.metric is not None:
                self.metric._add_counts(correct, compared, y2.shape[1] if y2.ndim == 2 else 1)
            step += chunk
            if not exact_batch_hooks:
                # Grow or shrink chunks toward ~50 ms of work between progress updates.
                per_step = elapsed / chunk
                self._chunk = max(1, min(4096, int(_CHUNK_SECONDS / max(per_step, 1e-6))))
            if batch_hooks:
                callbacks.on_train_batch_end(step - 1, model._logs())
            if model.stop_training:
                break
