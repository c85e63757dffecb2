"""Streaming metrics with Keras 3 names and results.

Each metric accumulates over batches with ``update_state(y_true, y_pred, sample_weight=None)``
and reports ``result()``; ``reset_state()`` starts over (``fit`` does it every epoch).
Accuracies count correct predictions as integers, so an unweighted result is the exact ratio
``correct / total`` whatever the batch split; weighted sums accumulate in float64.

``get("accuracy", loss=...)`` picks the accuracy that matches the loss the way Keras users
expect: sparse labels -> SparseCategoricalAccuracy, one-hot -> CategoricalAccuracy,
binary -> BinaryAccuracy, anything else -> Accuracy (exact match). The metric keeps the name it
was asked for ("accuracy"/"acc"), which is the key it gets in ``fit``'s logs.
"""
import numpy as np

from pynn import losses as _losses


# ---------------------------------------------------------------------------------------------
# Per-sample metric functions (Keras' functional form)
# ---------------------------------------------------------------------------------------------
def _pred_array(y_pred):
    y_pred = np.asarray(y_pred)
    if y_pred.dtype.kind not in "biuf":
        raise TypeError(f"y_pred must be numeric, got dtype {y_pred.dtype}")
    return y_pred


def _match_rank(y_true, y_pred):
    """Keras' squeeze_or_expand_to_same_rank: drop a trailing axis of size 1 from the larger."""
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true.reshape(y_true.shape[:-1])
    elif y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_pred = y_pred.reshape(y_pred.shape[:-1])
    return y_true, y_pred


def _check_broadcast(y_true, y_pred, name):
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: y_true has shape {y_true.shape} but y_pred has shape "
                         f"{y_pred.shape}")


def accuracy(y_true, y_pred):
    """1.0 where ``y_true == y_pred`` exactly, per element (Keras' ``accuracy``)."""
    y_true, y_pred = _match_rank(np.asarray(y_true), _pred_array(y_pred))
    _check_broadcast(y_true, y_pred, "accuracy")
    return (y_true == y_pred).astype(np.float32)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Per-sample fraction of ``(y_pred > threshold) == y_true`` over the last axis."""
    y_true, y_pred = _match_rank(np.asarray(y_true), _pred_array(y_pred))
    _check_broadcast(y_true, y_pred, "binary_accuracy")
    return np.mean(y_true == (y_pred > threshold), axis=-1, dtype=np.float32)


def categorical_accuracy(y_true, y_pred):
    """1.0 where ``argmax(y_true) == argmax(y_pred)`` over the last axis."""
    y_true, y_pred = np.asarray(y_true), _pred_array(y_pred)
    _check_broadcast(y_true, y_pred, "categorical_accuracy")
    return (np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float32)


def sparse_categorical_accuracy(y_true, y_pred):
    """1.0 where the integer label equals ``argmax(y_pred)`` over the last axis."""
    y_pred = _pred_array(y_pred)
    y_true = _labels(y_true, y_pred, "sparse_categorical_accuracy")
    return (y_true == np.argmax(y_pred, axis=-1)).astype(np.float32)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where the one-hot target's class is among the k highest predictions."""
    y_true, y_pred = np.asarray(y_true), _pred_array(y_pred)
    _check_broadcast(y_true, y_pred, "top_k_categorical_accuracy")
    return _in_top_k(np.argmax(y_true, axis=-1), y_pred, k).astype(np.float32)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5, from_sorted_ids=False):
    """1.0 where the integer label is among the k highest predictions.

    from_sorted_ids=True: ``y_pred`` already holds class ids sorted by score (N, >=k).
    """
    y_pred = _pred_array(y_pred)
    if from_sorted_ids:
        y_true = np.asarray(y_true).reshape(y_pred.shape[:-1])
        return np.any(y_pred[..., :k] == y_true[..., None], axis=-1).astype(np.float32)
    y_true = _labels(y_true, y_pred, "sparse_top_k_categorical_accuracy")
    return _in_top_k(y_true, y_pred, k).astype(np.float32)


def mean_squared_error(y_true, y_pred):
    return _losses.mean_squared_error(y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    return _losses.mean_absolute_error(y_true, y_pred)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error


def _labels(y_true, y_pred, name):
    y_true = np.asarray(y_true)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true.reshape(y_true.shape[:-1])
    if y_true.shape != y_pred.shape[:-1]:
        raise ValueError(f"{name}: labels have shape {y_true.shape}, expected "
                         f"{y_pred.shape[:-1]} for predictions of shape {y_pred.shape}")
    return y_true


def _in_top_k(labels, y_pred, k):
    """TensorFlow's in_top_k: the target's score is beaten by fewer than k classes.

    Ties at the boundary count as hits; a non-finite target score is a miss.
    """
    labels = np.asarray(labels).astype(np.int64, copy=False)
    num_classes = y_pred.shape[-1]
    in_range = (labels >= 0) & (labels < num_classes)
    target = np.take_along_axis(y_pred, np.where(in_range, labels, 0)[..., None], axis=-1)
    beaten_by = np.count_nonzero(y_pred > target, axis=-1)
    return in_range & np.isfinite(target[..., 0]) & (beaten_by < k)


# ---------------------------------------------------------------------------------------------
# Metric classes
# ---------------------------------------------------------------------------------------------
class Metric:
    """Base class: ``update_state``, ``result``, ``reset_state``, ``name``, ``get_config``.

    Calling a metric updates it and returns the running result (Keras).
    """

    _direction = None  # "up" when larger is better, "down" when smaller is better

    def __init__(self, name=None, dtype=None):
        self.name = name or _losses._snake_case(type(self).__name__)
        self.dtype = dtype

    def update_state(self, y_true, y_pred, sample_weight=None):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def reset_state(self):
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        self.update_state(y_true, y_pred, sample_weight=sample_weight)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"


class Mean(Metric):
    """(Weighted) mean of the values passed to ``update_state(values, sample_weight=None)``."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.reset_state()

    def reset_state(self):
        self._total = 0.0       # float64 sum of (weighted) values
        self._count = 0.0       # number of values, or sum of weights

    def update_state(self, values, sample_weight=None):
        values = np.asarray(values, dtype=np.float64)
        if sample_weight is None:
            self._total += float(np.sum(values))
            self._count += values.size
            return
        weight = _broadcast_weight(sample_weight, values)
        self._total += float(np.sum(values * weight))
        self._count += float(np.sum(weight))

    def result(self):
        return self._total / self._count if self._count else 0.0


def _broadcast_weight(sample_weight, values):
    """Sample weights (N,) or (N, 1) broadcast against per-sample values."""
    weight = np.asarray(sample_weight, dtype=np.float64)
    while weight.ndim > values.ndim and weight.shape[-1] == 1:
        weight = weight.reshape(weight.shape[:-1])
    while weight.ndim < values.ndim:
        weight = weight[..., None]
    return np.broadcast_to(weight, values.shape)


class MeanMetricWrapper(Mean):
    """Mean of a per-sample function ``fn(y_true, y_pred, **kwargs)`` (Keras)."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", "mean"), dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update(self._fn_kwargs)
        return config


class _CountingAccuracy(Metric):
    """Accuracy accumulated as integer counts (exact); weighted updates use float64 sums."""

    _direction = "up"

    def __init__(self, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.reset_state()

    def reset_state(self):
        self._correct = 0          # int: correct elements (unweighted updates)
        self._seen = 0             # int: elements seen (unweighted updates)
        self._w_correct = 0.0      # float64: weighted per-sample hits
        self._w_total = 0.0        # float64: sum of weights

    def _hits(self, y_true, y_pred):
        """Boolean array of hits, per element of the per-sample result or (N, K) for binary."""
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        hits = self._hits(y_true, y_pred)
        if sample_weight is None:
            self._correct += int(np.count_nonzero(hits))
            self._seen += int(hits.size)
            return
        per_sample = self._per_sample(hits)
        weight = _broadcast_weight(sample_weight, per_sample)
        self._w_correct += float(np.sum(per_sample * weight))
        self._w_total += float(np.sum(weight))

    def _add_counts(self, correct, seen, elements_per_sample=1):
        """Merge counts made elsewhere (the compiled fit loop counts hits as it trains)."""
        self._correct += int(correct)
        self._seen += int(seen)
        if hasattr(self, "_k"):
            self._k = int(elements_per_sample)

    def _per_sample(self, hits):
        return hits.astype(np.float64)

    def result(self):
        if not self._w_total:
            return self._correct / self._seen if self._seen else 0.0
        # Weighted and unweighted updates combine as in Keras: an unweighted sample has
        # weight 1 and contributes its per-sample value.
        total = self._w_total + self._seen / self._elements_per_sample()
        if not total:
            return 0.0
        correct = self._w_correct + self._correct / self._elements_per_sample()
        return correct / total

    def _elements_per_sample(self):
        return 1


class Accuracy(_CountingAccuracy):
    """How often predictions equal the targets exactly (Keras ``Accuracy``)."""

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _hits(self, y_true, y_pred):
        y_true, y_pred = _match_rank(np.asarray(y_true), _pred_array(y_pred))
        _check_broadcast(y_true, y_pred, self.name)
        return y_true == y_pred


class BinaryAccuracy(_CountingAccuracy):
    """How often ``y_pred > threshold`` equals the binary target (mean over the last axis)."""

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        self.threshold = float(threshold)
        self._k = 1
        super().__init__(name=name, dtype=dtype)

    def _hits(self, y_true, y_pred):
        y_true, y_pred = _match_rank(np.asarray(y_true), _pred_array(y_pred))
        _check_broadcast(y_true, y_pred, self.name)
        self._k = y_pred.shape[-1] if y_pred.ndim > 1 else 1
        hits = y_true == (y_pred > self.threshold)
        return hits if y_pred.ndim > 1 else hits[:, None]

    def _per_sample(self, hits):
        return np.mean(hits, axis=-1, dtype=np.float64)

    def _elements_per_sample(self):
        return self._k

    def get_config(self):
        config = super().get_config()
        config["threshold"] = self.threshold
        return config


class CategoricalAccuracy(_CountingAccuracy):
    """How often ``argmax(y_pred) == argmax(y_true)`` (one-hot targets)."""

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _hits(self, y_true, y_pred):
        y_true, y_pred = np.asarray(y_true), _pred_array(y_pred)
        _check_broadcast(y_true, y_pred, self.name)
        return np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)


class SparseCategoricalAccuracy(_CountingAccuracy):
    """How often ``argmax(y_pred)`` equals the integer label."""

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _hits(self, y_true, y_pred):
        y_pred = _pred_array(y_pred)
        return _labels(y_true, y_pred, self.name) == np.argmax(y_pred, axis=-1)


class TopKCategoricalAccuracy(_CountingAccuracy):
    """How often the one-hot target is among the top ``k`` predictions."""

    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        self.k = int(k)
        super().__init__(name=name, dtype=dtype)

    def _hits(self, y_true, y_pred):
        y_true, y_pred = np.asarray(y_true), _pred_array(y_pred)
        _check_broadcast(y_true, y_pred, self.name)
        return _in_top_k(np.argmax(y_true, axis=-1), y_pred, self.k)

    def get_config(self):
        config = super().get_config()
        config["k"] = self.k
        return config


class SparseTopKCategoricalAccuracy(_CountingAccuracy):
    """How often the integer label is among the top ``k`` predictions."""

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None,
                 from_sorted_ids=False):
        self.k = int(k)
        self.from_sorted_ids = bool(from_sorted_ids)
        super().__init__(name=name, dtype=dtype)

    def _hits(self, y_true, y_pred):
        return sparse_top_k_categorical_accuracy(
            y_true, y_pred, k=self.k, from_sorted_ids=self.from_sorted_ids) > 0

    def get_config(self):
        config = super().get_config()
        config.update(k=self.k, from_sorted_ids=self.from_sorted_ids)
        return config


class MeanSquaredError(MeanMetricWrapper):
    """Running mean of the per-sample mean squared error."""

    _direction = "down"

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(mean_squared_error, name=name, dtype=dtype)


class MeanAbsoluteError(MeanMetricWrapper):
    """Running mean of the per-sample mean absolute error."""

    _direction = "down"

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(mean_absolute_error, name=name, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Lookup and serialisation
# ---------------------------------------------------------------------------------------------
_CLASSES = {
    cls.__name__: cls
    for cls in (Mean, Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
                TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, MeanSquaredError,
                MeanAbsoluteError)
}
_NAMES = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "mean": Mean,
}
_FUNCTIONS = {
    accuracy: Accuracy,
    binary_accuracy: BinaryAccuracy,
    categorical_accuracy: CategoricalAccuracy,
    sparse_categorical_accuracy: SparseCategoricalAccuracy,
    top_k_categorical_accuracy: TopKCategoricalAccuracy,
    sparse_top_k_categorical_accuracy: SparseTopKCategoricalAccuracy,
    mean_squared_error: MeanSquaredError,
    mean_absolute_error: MeanAbsoluteError,
    _losses.mean_squared_error: MeanSquaredError,
    _losses.mean_absolute_error: MeanAbsoluteError,
}


def _accuracy_for_loss(loss, y_true_shape=None, y_pred_shape=None):
    """The accuracy class that matches ``loss`` (a name, Loss, class or function)."""
    if loss is not None:
        try:
            loss_obj = _losses.get(loss)
        except (ValueError, TypeError):
            loss_obj = None
        if isinstance(loss_obj, _losses.SparseCategoricalCrossentropy):
            return SparseCategoricalAccuracy
        if isinstance(loss_obj, _losses.CategoricalCrossentropy):
            return CategoricalAccuracy
        if isinstance(loss_obj, _losses.BinaryCrossentropy):
            return BinaryAccuracy
        if isinstance(loss_obj, (_losses.MeanSquaredError, _losses.MeanAbsoluteError)):
            return Accuracy
    if y_pred_shape is not None:
        # Keras 3's shape rule for losses it does not know.
        y_pred_shape = tuple(y_pred_shape)
        if y_pred_shape[-1] == 1:
            return BinaryAccuracy
        if y_true_shape is not None:
            y_true_shape = tuple(y_true_shape)
            if len(y_true_shape) == len(y_pred_shape) - 1 or y_true_shape[-1] == 1:
                return SparseCategoricalAccuracy
            return CategoricalAccuracy
    return Accuracy


def serialize(metric):
    if not isinstance(metric, Metric):
        metric = get(metric)
    return {"module": "pynn.metrics", "class_name": type(metric).__name__,
            "config": metric.get_config(), "registered_name": None}


def deserialize(config, custom_objects=None):
    if isinstance(config, str):
        return get(config)
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"cannot deserialize a metric from {config!r}")
    name = config["class_name"]
    cls = (custom_objects or {}).get(name) or _CLASSES.get(name) or _NAMES.get(name)
    if cls is None:
        raise ValueError(f"unknown metric class {name!r}; known: {sorted(_CLASSES)}")
    return cls.from_config(dict(config.get("config") or {}))


def get(identifier, loss=None, y_true_shape=None, y_pred_shape=None):
    """A Metric instance from a name, instance, class, config dict or per-sample function.

    'accuracy'/'acc' resolve through ``loss``: sparse_categorical_crossentropy ->
    SparseCategoricalAccuracy, categorical_crossentropy -> CategoricalAccuracy,
    binary_crossentropy -> BinaryAccuracy, mse/mae -> Accuracy. For other losses the shapes
    (when given) decide as in Keras 3, else Accuracy. A metric made from a string is named by
    that string (the key ``fit`` logs it under, as in Keras).
    """
    if identifier is None:
        return None
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in ("accuracy", "acc"):
            return _accuracy_for_loss(loss, y_true_shape, y_pred_shape)(name=identifier)
        cls = _NAMES.get(key) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(
                f"unknown metric {identifier!r}; expected one of "
                f"{sorted(set(_NAMES) | set(_CLASSES) | {'accuracy', 'acc'})}"
            )
        return cls(name=identifier)
    if callable(identifier):
        if identifier in _FUNCTIONS:
            return _FUNCTIONS[identifier](name=identifier.__name__)
        return MeanMetricWrapper(identifier)
    raise ValueError(f"could not interpret metric identifier {identifier!r}")
