"""Losses with Keras 3 names, defaults and values, plus the gradients the training loop needs.

A loss object is called Keras-style, ``loss(y_true, y_pred) -> float``, and also provides
``loss_and_grad(y_true, y_pred) -> (float, dL/dy_pred)`` for the training step. The math runs in
the backend's fused loss kernels (docs/kernel_api.md), so ``pynn.set_backend("numpy")`` computes
the same values with the NumPy reference.

Fusion with the output activation: a model whose last layer ends in ``softmax`` (``sigmoid``) and
whose loss is (sparse) categorical (binary) cross-entropy on probabilities asks
``loss.fuses_with("softmax")``; when True it calls ``loss_and_grad_from_logits(y_true, z)`` with
the pre-activation ``z`` and back-propagates the returned dL/dz without the activation's own
derivative. That is the fast and numerically exact path (Keras' TensorFlow backend does the same
through ``_keras_logits``); the unfused probability path clips to ``[eps, 1 - eps]`` like Keras.

Reductions (``reduction=``): ``"sum_over_batch_size"`` (default; the mean of the per-sample
losses), ``"mean"`` (same without masks), ``"sum"``, and ``None``/``"none"`` (``__call__``
returns the per-sample losses).
"""
import numpy as np

from pynn.backend import get_backend

EPSILON = 1e-7  # Keras' backend.epsilon(): probabilities are clipped to [EPSILON, 1 - EPSILON]

_REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "none", None)


# ---------------------------------------------------------------------------------------------
# Shape and dtype helpers
# ---------------------------------------------------------------------------------------------
def _as_float_array(x, dtype=None):
    """``x`` as a float ndarray (float32 unless it already is float32/float64)."""
    x = np.asarray(x)
    if dtype is not None:
        return x if x.dtype == dtype else x.astype(dtype)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    return x


def _match_rank(y_true, y_pred):
    """Keras' ``squeeze_or_expand_to_same_rank`` for targets: (N,) vs (N, 1) and back.

    Without it ``(N,) - (N, 1)`` would silently broadcast to ``(N, N)``.
    """
    if y_true.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
        return y_true.reshape(y_true.shape + (1,))
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        return y_true.reshape(y_true.shape[:-1])
    return y_true


def _check_same_shape(y_true, y_pred, loss_name):
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"{loss_name}: y_true has shape {y_true.shape} but y_pred has shape {y_pred.shape}; "
            "they must match (a trailing axis of size 1 may be omitted from y_true)"
        )


def _check_finite_targets(y, loss_name):
    if y.dtype.kind == "f" and y.size and not np.isfinite(y).all():
        bad = y[~np.isfinite(y)].ravel()[0]
        raise ValueError(f"{loss_name}: targets contain a non-finite value ({bad})")


def _sparse_labels(y_true, y_pred_shape, loss_name):
    """Validated integer labels of shape ``y_pred_shape[:-1]`` for a (N, ..., C) prediction.

    Accepts integer dtypes and integer-valued floats (Keras casts them), with an optional
    trailing axis of size 1. Raises ValueError naming the bad label and the class count.
    """
    y = np.asarray(y_true)
    num_classes = int(y_pred_shape[-1])
    want_ndim = len(y_pred_shape) - 1
    if y.ndim == want_ndim + 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if y.ndim != want_ndim:
        hint = ""
        if y.ndim == want_ndim + 1 and y.shape[-1] == num_classes:
            hint = " (one-hot targets: use categorical_crossentropy)"
        raise ValueError(
            f"{loss_name}: expected integer class labels of shape {tuple(y_pred_shape[:-1])} "
            f"for predictions of shape {tuple(y_pred_shape)}, got shape {y.shape}{hint}"
        )
    batch = tuple(s for s in y_pred_shape[:-1])
    if any(b is not None and b != s for b, s in zip(batch, y.shape)):
        raise ValueError(
            f"{loss_name}: labels have shape {y.shape} but predictions have shape "
            f"{tuple(y_pred_shape)}"
        )
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    if y.dtype.kind == "f":
        if y.size and not np.isfinite(y).all():
            bad = y[~np.isfinite(y)].ravel()[0]
            raise ValueError(f"{loss_name}: labels contain a non-finite value ({bad})")
        if y.size and not np.array_equal(y, np.floor(y)):
            bad = y[y != np.floor(y)].ravel()[0]
            raise ValueError(
                f"{loss_name}: labels must be integer class ids, got {bad} "
                "(one-hot or probability targets: use categorical_crossentropy)"
            )
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        raise TypeError(f"{loss_name}: labels must be integers, got dtype {y.dtype}")
    if y.size:
        lo, hi = y.min(), y.max()
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"{loss_name}: label {int(bad)} is outside [0, {num_classes}) for a model with "
                f"{num_classes} output classes"
            )
    return np.ascontiguousarray(y, dtype=np.int64)


def _flatten_rows(x):
    """(N, ..., C) -> (N * ..., C) view (C-contiguous input stays a view)."""
    return x.reshape(-1, x.shape[-1])


# ---------------------------------------------------------------------------------------------
# Per-sample loss functions (Keras' functional form: mean or sum over the last axis)
# ---------------------------------------------------------------------------------------------
def mean_squared_error(y_true, y_pred):
    """Per-sample mean squared error over the last axis: ``mean((y_true - y_pred)**2, -1)``."""
    y_pred = _as_float_array(y_pred)
    y_true = _match_rank(_as_float_array(y_true, y_pred.dtype), y_pred)
    return np.mean(np.square(y_true - y_pred), axis=-1)


def mean_absolute_error(y_true, y_pred):
    """Per-sample mean absolute error over the last axis."""
    y_pred = _as_float_array(y_pred)
    y_true = _match_rank(_as_float_array(y_true, y_pred.dtype), y_pred)
    return np.mean(np.abs(y_true - y_pred), axis=-1)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Per-sample binary cross-entropy, averaged over the last axis (Keras)."""
    _check_axis(axis)
    y_pred = _as_float_array(y_pred)
    y_true = _match_rank(_as_float_array(y_true, y_pred.dtype), y_pred)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        x = y_pred
        bce = np.maximum(x, 0) - x * y_true + np.log1p(np.exp(-np.abs(x)))
    else:
        p = np.clip(y_pred, EPSILON, 1.0 - EPSILON)
        bce = -(y_true * np.log(p) + (1.0 - y_true) * np.log(1.0 - p))
    return np.mean(bce, axis=-1)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Per-sample categorical cross-entropy over the last axis (targets are distributions)."""
    _check_axis(axis)
    y_pred = _as_float_array(y_pred)
    y_true = _as_float_array(y_true, y_pred.dtype)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"categorical_crossentropy: y_true has shape {y_true.shape} but y_pred has shape "
            f"{y_pred.shape} (integer labels: use sparse_categorical_crossentropy)"
        )
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / y_pred.shape[-1]
    return -np.sum(y_true * _log_probs(y_pred, from_logits), axis=-1)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None,
                                    axis=-1):
    """Per-sample cross-entropy for integer labels: ``-log p[label]``."""
    _check_axis(axis)
    y_pred = _as_float_array(y_pred)
    labels = np.asarray(y_true)
    valid = None
    if ignore_class is not None:
        labels = labels.reshape(labels.shape[:-1]) if (
            labels.ndim == y_pred.ndim and labels.shape[-1] == 1) else labels
        valid = labels != ignore_class
        labels = np.where(valid, labels, 0)
    labels = _sparse_labels(labels, y_pred.shape, "sparse_categorical_crossentropy")
    log_p = _log_probs(y_pred, from_logits)
    out = -np.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]
    if valid is not None:
        out = np.where(valid, out, 0.0).astype(y_pred.dtype)
    return out


def _check_axis(axis):
    if axis not in (-1, None):
        raise NotImplementedError(f"only axis=-1 is supported, got axis={axis}")


def _log_probs(y_pred, from_logits):
    """log-probabilities of ``y_pred`` along the last axis, the way Keras computes them."""
    if from_logits:
        shifted = y_pred - np.max(y_pred, axis=-1, keepdims=True)
        return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    probs = y_pred / np.sum(y_pred, axis=-1, keepdims=True)
    return np.log(np.clip(probs, EPSILON, 1.0 - EPSILON))


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error


# ---------------------------------------------------------------------------------------------
# Loss classes
# ---------------------------------------------------------------------------------------------
class Loss:
    """Base class: Keras' ``keras.losses.Loss`` plus the gradient protocol of docs/design.md.

    Subclasses implement ``call(y_true, y_pred) -> per-sample losses`` (Keras) and, to be
    trainable, ``_loss_and_grad(y_true, y_pred, grad)`` returning the mean loss and its
    gradient with respect to ``y_pred``.
    """

    from_logits = False

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"invalid reduction {reduction!r}; expected one of {list(_REDUCTIONS)}"
            )
        self.name = name or _snake_case(type(self).__name__)
        self.reduction = reduction
        self.dtype = dtype

    # --- Keras API -----------------------------------------------------------------------------
    def __call__(self, y_true, y_pred, sample_weight=None):
        """The reduced loss as a Python float (per-sample ndarray for ``reduction=None``)."""
        y_pred = _as_float_array(y_pred, self.dtype and np.dtype(self.dtype))
        has_kernel = type(self)._loss_and_grad is not Loss._loss_and_grad
        if (sample_weight is None and has_kernel
                and self.reduction in ("sum_over_batch_size", "mean")):
            loss, _ = self._loss_and_grad(y_true, y_pred, None, compute_grad=False)
            return float(loss)
        values = np.asarray(self.call(y_true, y_pred), dtype=np.float64)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            while sample_weight.ndim > values.ndim and sample_weight.shape[-1] == 1:
                sample_weight = sample_weight.reshape(sample_weight.shape[:-1])
            values = values * sample_weight
        if self.reduction in ("none", None):
            return values.astype(y_pred.dtype)
        total = float(np.sum(values))
        if self.reduction == "sum":
            return total
        return total / max(values.size, 1)

    def call(self, y_true, y_pred):
        """Per-sample losses, shape ``y_pred.shape[:-1]``."""
        raise NotImplementedError

    # --- training protocol (docs/design.md) --------------------------------------------------
    def loss_and_grad(self, y_true, y_pred, grad=None):
        """``(loss: float, dloss/dy_pred: ndarray like y_pred)`` for the reduced loss.

        ``grad``: optional preallocated output (same shape and dtype as ``y_pred``) so a
        training loop can run without allocating.
        """
        y_pred = _as_float_array(y_pred)
        loss, g = self._loss_and_grad(y_true, y_pred, grad, compute_grad=True)
        return self._reduce_grad(loss, g)

    def fuses_with(self, activation_name):
        """True when this loss can take the logits of a final ``activation_name`` directly."""
        return False

    def loss_and_grad_from_logits(self, y_true, logits, grad=None):
        """Loss of ``activation(logits)`` and its gradient with respect to ``logits``."""
        raise NotImplementedError(f"{type(self).__name__} does not fuse with an activation")

    def prepare_targets(self, y, y_pred_shape, dtype=None):
        """Validate and convert targets once per ``fit`` (not once per batch).

        y_pred_shape: the model's output shape including the batch axis (its first entry may be
        None). dtype: the float dtype the model computes in (targets are cast to it).
        Raises ValueError for mismatched shapes and non-finite targets.
        """
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{self.name}: targets must be numeric, got dtype {y.dtype}")
        y = _as_float_array(y, np.dtype(dtype) if dtype is not None else None)
        _check_finite_targets(y, self.name)
        pred_shape = tuple(y_pred_shape)
        if y.ndim == len(pred_shape) - 1 and pred_shape[-1] == 1:
            y = y.reshape(y.shape + (1,))
        elif y.ndim == len(pred_shape) + 1 and y.shape[-1] == 1:
            y = y.reshape(y.shape[:-1])
        if y.ndim != len(pred_shape) or any(
            p is not None and p != s for p, s in zip(pred_shape[1:], y.shape[1:])
        ):
            raise ValueError(
                f"{self.name}: targets of shape {y.shape} do not match the model output "
                f"shape {pred_shape}"
            )
        return np.ascontiguousarray(y)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"

    # --- internals ---------------------------------------------------------------------------
    def _loss_and_grad(self, y_true, y_pred, grad, compute_grad):
        raise NotImplementedError(
            f"{type(self).__name__} has no gradient: implement _loss_and_grad to train with it"
        )

    def _reduce_grad(self, loss, g, count=None):
        """Kernels return the mean and its gradient; rescale for ``reduction='sum'``.

        count: the number of per-sample losses averaged (default: all of them).
        """
        if self.reduction == "sum":
            count = self._per_sample_count(g) if count is None else count
            g *= count
            return float(loss) * count, g
        if self.reduction in ("none", None):
            raise ValueError(f"{self.name}: cannot train with reduction=None; use "
                             "'sum_over_batch_size' or 'sum'")
        return float(loss), g

    def _per_sample_count(self, g):
        """Number of per-sample loss values (elements of y_pred without the last axis)."""
        return int(np.prod(g.shape[:-1])) if g.ndim > 1 else 1


def _snake_case(name):
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


class LossFunctionWrapper(Loss):
    """Wrap a function ``fn(y_true, y_pred) -> per-sample losses`` as a Loss.

    Training needs a gradient: pass ``grad_fn(y_true, y_pred) -> dloss/dy_pred`` (of the mean
    loss) or subclass Loss. Values work without it.
    """

    def __init__(self, fn, grad_fn=None, name=None, reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", "loss"), reduction=reduction)
        self.fn = fn
        self.grad_fn = grad_fn
        self._fn_kwargs = kwargs

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def _loss_and_grad(self, y_true, y_pred, grad, compute_grad):
        loss = float(np.mean(np.asarray(self.call(y_true, y_pred), dtype=np.float64)))
        if not compute_grad:
            return loss, None
        if self.grad_fn is None:
            raise NotImplementedError(
                f"loss function {self.name!r} has no gradient: pass grad_fn= or subclass "
                "pynn.losses.Loss to train with it"
            )
        g = np.asarray(self.grad_fn(y_true, y_pred), dtype=y_pred.dtype)
        if grad is not None:
            grad[...] = g
            g = grad
        return loss, g

    def get_config(self):
        config = super().get_config()
        config.update(fn=getattr(self.fn, "__name__", None), **self._fn_kwargs)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        fn = config.pop("fn")
        if isinstance(fn, str):
            resolved = globals().get(fn)
            if not callable(resolved):
                raise ValueError(f"cannot rebuild loss function {fn!r}: not a pynn.losses "
                                 "function; pass the function itself")
            fn = resolved
        config.pop("dtype", None)
        return cls(fn, **config)


class MeanSquaredError(Loss):
    """``mean((y_true - y_pred)**2)``; gradient ``2 (y_pred - y_true) / size``."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return mean_squared_error(y_true, y_pred)

    def _loss_and_grad(self, y_true, y_pred, grad, compute_grad):
        y_true = _match_rank(_as_float_array(y_true, y_pred.dtype), y_pred)
        _check_same_shape(y_true, y_pred, self.name)
        return get_backend().mean_squared_error(
            y_pred, np.ascontiguousarray(y_true), grad=grad, compute_grad=compute_grad
        )


class MeanAbsoluteError(Loss):
    """``mean(|y_true - y_pred|)``; gradient ``sign(y_pred - y_true) / size``."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return mean_absolute_error(y_true, y_pred)

    def _loss_and_grad(self, y_true, y_pred, grad, compute_grad):
        y_true = _match_rank(_as_float_array(y_true, y_pred.dtype), y_pred)
        _check_same_shape(y_true, y_pred, self.name)
        return get_backend().mean_absolute_error(
            y_pred, np.ascontiguousarray(y_true), grad=grad, compute_grad=compute_grad
        )


class BinaryCrossentropy(Loss):
    """Binary cross-entropy, mean over the last axis then the batch (Keras).

    from_logits=False: ``y_pred`` are probabilities, clipped to [1e-7, 1 - 1e-7]; the gradient
    is zero where clipping was active. Fuses with a final ``sigmoid``.
    """

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _check_axis(axis)
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)
        self.axis = axis

    def call(self, y_true, y_pred):
        return binary_crossentropy(y_true, y_pred, from_logits=self.from_logits,
                                   label_smoothing=self.label_smoothing)

    def fuses_with(self, activation_name):
        return not self.from_logits and activation_name == "sigmoid"

    def _targets(self, y_true, y_pred):
        y_true = _match_rank(_as_float_array(y_true, y_pred.dtype), y_pred)
        _check_same_shape(y_true, y_pred, self.name)
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return np.ascontiguousarray(y_true, dtype=y_pred.dtype)

    def _loss_and_grad(self, y_true, y_pred, grad, compute_grad):
        y_true = self._targets(y_true, y_pred)
        backend = get_backend()
        if self.from_logits:
            return backend.binary_cross_entropy_logits(y_pred, y_true, grad=grad,
                                                       compute_grad=compute_grad)
        return backend.binary_cross_entropy(y_pred, y_true, grad=grad,
                                            compute_grad=compute_grad, epsilon=EPSILON)

    def loss_and_grad_from_logits(self, y_true, logits, grad=None):
        logits = _as_float_array(logits)
        y_true = self._targets(y_true, logits)
        loss, g = get_backend().binary_cross_entropy_logits(logits, y_true, grad=grad)
        return self._reduce_grad(loss, g)

    def get_config(self):
        config = super().get_config()
        config.update(from_logits=self.from_logits, label_smoothing=self.label_smoothing,
                      axis=self.axis)
        return config


class CategoricalCrossentropy(Loss):
    """Cross-entropy between target distributions (one-hot) and predictions over the last axis.

    from_logits=False: like Keras, predictions are normalised to sum to one per row and
    clipped to [1e-7, 1 - 1e-7]. Fuses with a final ``softmax`` (exact log-softmax kernel).
    """

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _check_axis(axis)
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)
        self.axis = axis

    def call(self, y_true, y_pred):
        return categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits,
                                        label_smoothing=self.label_smoothing)

    def fuses_with(self, activation_name):
        return not self.from_logits and activation_name == "softmax"

    def prepare_targets(self, y, y_pred_shape, dtype=None):
        y_arr = np.asarray(y)
        pred_shape = tuple(y_pred_shape)
        if (y_arr.ndim == len(pred_shape) - 1 or (y_arr.ndim == len(pred_shape)
                                                  and y_arr.shape[-1] == 1)) and pred_shape[-1] != 1:
            raise ValueError(
                f"{self.name}: targets of shape {y_arr.shape} look like integer class labels "
                f"but the model outputs shape {pred_shape}: use "
                "loss='sparse_categorical_crossentropy' or one-hot encode the targets"
            )
        return super().prepare_targets(y, y_pred_shape, dtype)

    def _targets(self, y_true, y_pred):
        y_true = _as_float_array(y_true, y_pred.dtype)
        if y_true.shape != y_pred.shape:
            raise ValueError(
                f"{self.name}: y_true has shape {y_true.shape} but y_pred has shape "
                f"{y_pred.shape} (integer labels: use sparse_categorical_crossentropy)"
            )
        if self.label_smoothing:
            y_true = (y_true * (1.0 - self.label_smoothing)
                      + self.label_smoothing / y_pred.shape[-1])
        return np.ascontiguousarray(_flatten_rows(y_true), dtype=y_pred.dtype)

    def _loss_and_grad(self, y_true, y_pred, grad, compute_grad):
        targets = self._targets(y_true, y_pred)
        if self.from_logits:
            return _run_rows(get_backend().softmax_cross_entropy, y_pred, targets, grad,
                             compute_grad)
        return _categorical_ce_probs(targets, y_pred, grad, compute_grad)

    def loss_and_grad_from_logits(self, y_true, logits, grad=None):
        logits = _as_float_array(logits)
        targets = self._targets(y_true, logits)
        loss, g = _run_rows(get_backend().softmax_cross_entropy, logits, targets, grad, True)
        return self._reduce_grad(loss, g)

    def get_config(self):
        config = super().get_config()
        config.update(from_logits=self.from_logits, label_smoothing=self.label_smoothing,
                      axis=self.axis)
        return config


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy for integer class labels: ``mean(-log p[label])``.

    Labels: shape ``y_pred.shape[:-1]`` (or with a trailing axis of 1), integers in [0, C).
    ``ignore_class``: label whose samples contribute nothing; the loss is the mean over the
    others (Keras' masked ``sum_over_batch_size``). Fuses with a final ``softmax``.
    """

    def __init__(self, from_logits=False, ignore_class=None, axis=-1,
                 reduction="sum_over_batch_size", name="sparse_categorical_crossentropy",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _check_axis(axis)
        self.from_logits = bool(from_logits)
        self.ignore_class = ignore_class
        self.axis = axis

    def call(self, y_true, y_pred):
        return sparse_categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits,
                                               ignore_class=self.ignore_class)

    def fuses_with(self, activation_name):
        return not self.from_logits and activation_name == "softmax"

    def prepare_targets(self, y, y_pred_shape, dtype=None):
        y = np.asarray(y)
        if self.ignore_class is not None:
            labels = _sparse_labels(np.where(y == self.ignore_class, 0, y), y_pred_shape,
                                    self.name)
            flat_y = y.reshape(labels.shape)
            return np.where(flat_y == self.ignore_class, self.ignore_class, labels)
        return _sparse_labels(y, y_pred_shape, self.name)

    def _split(self, y_true, y_pred):
        """(labels (rows,), rows mask or None) for a prediction flattened to (rows, C)."""
        y_true = np.asarray(y_true)
        if y_true.dtype.kind not in "iu" or y_true.ndim != y_pred.ndim - 1:
            if self.ignore_class is None:
                y_true = _sparse_labels(y_true, y_pred.shape, self.name)
        labels = y_true.reshape(-1)
        if labels.shape[0] * y_pred.shape[-1] != y_pred.size:
            raise ValueError(
                f"{self.name}: labels of shape {y_true.shape} do not match predictions of "
                f"shape {y_pred.shape}"
            )
        if self.ignore_class is None:
            return labels, None
        valid = labels != self.ignore_class
        return labels, (None if valid.all() else valid)

    def _loss_and_grad(self, y_true, y_pred, grad, compute_grad):
        labels, valid = self._split(y_true, y_pred)
        if self.from_logits:
            kernel = get_backend().softmax_cross_entropy_sparse
        else:
            kernel = _sparse_ce_probs
        return _run_masked(kernel, y_pred, labels, valid, grad, compute_grad)

    def loss_and_grad(self, y_true, y_pred, grad=None):
        y_pred = _as_float_array(y_pred)
        kernel = get_backend().softmax_cross_entropy_sparse if self.from_logits \
            else _sparse_ce_probs
        return self._masked_loss_and_grad(kernel, y_true, y_pred, grad)

    def loss_and_grad_from_logits(self, y_true, logits, grad=None):
        logits = _as_float_array(logits)
        return self._masked_loss_and_grad(get_backend().softmax_cross_entropy_sparse, y_true,
                                          logits, grad)

    def _masked_loss_and_grad(self, kernel, y_true, y_pred, grad):
        labels, valid = self._split(y_true, y_pred)
        loss, g = _run_masked(kernel, y_pred, labels, valid, grad, True)
        # With ignore_class the mean is over the kept samples; 'sum' multiplies by their count.
        return self._reduce_grad(loss, g, None if valid is None else int(valid.sum()))

    def get_config(self):
        config = super().get_config()
        config.update(from_logits=self.from_logits, ignore_class=self.ignore_class,
                      axis=self.axis)
        return config


# ---------------------------------------------------------------------------------------------
# Cross-entropy plumbing: (N, ..., C) predictions run through the 2-D row kernels
# ---------------------------------------------------------------------------------------------
def _rows_grad(grad, shape):
    if grad is None or grad.ndim == 2:
        return grad
    return grad.reshape(-1, shape[-1])


def _unflatten(g, shape):
    """The row-kernel gradient in the prediction's shape (the same object for 2-D)."""
    if g is None or g.shape == shape:
        return g
    return g.reshape(shape)


def _run_rows(kernel, y_pred, targets, grad, compute_grad):
    rows = np.ascontiguousarray(_flatten_rows(y_pred))
    loss, g = kernel(rows, targets, grad=_rows_grad(grad, y_pred.shape),
                     compute_grad=compute_grad)
    return loss, _unflatten(g, y_pred.shape)


def _run_masked(kernel, y_pred, labels, valid, grad, compute_grad):
    """Run a sparse kernel on all rows, or only on the ``valid`` rows (ignore_class)."""
    rows = np.ascontiguousarray(_flatten_rows(y_pred))
    if valid is None:
        loss, g = kernel(rows, labels, grad=_rows_grad(grad, y_pred.shape),
                         compute_grad=compute_grad)
        return loss, _unflatten(g, y_pred.shape)
    out = np.zeros_like(rows) if grad is None else _rows_grad(grad, y_pred.shape)
    if not valid.any():
        out[...] = 0
        return 0.0, (_unflatten(out, y_pred.shape) if compute_grad else None)
    loss, g = kernel(np.ascontiguousarray(rows[valid]), np.ascontiguousarray(labels[valid]),
                     compute_grad=compute_grad)
    if not compute_grad:
        return loss, None
    # The kernel's gradient is of the mean over the valid rows; ignored rows get zero.
    out[...] = 0
    out[valid] = g
    return loss, _unflatten(out, y_pred.shape)


def _categorical_ce_probs(targets, y_pred, grad, compute_grad):
    """Keras' cross-entropy on probabilities: q = p / sum(p); loss = -sum(t log clip(q)).

    No kernel exists for it (the fused softmax path is the fast one); this is the reference
    formula in NumPy with its exact gradient: with g = -t / clip(q) (0 where clipped),
    dL/dp = (g - sum(g q)) / sum(p), divided by the number of rows for the mean.
    """
    p = np.ascontiguousarray(_flatten_rows(y_pred))
    rows = p.shape[0]
    total = np.sum(p, axis=-1, keepdims=True)
    q = p / total
    clipped = np.clip(q, EPSILON, 1.0 - EPSILON)
    per_row = -np.sum(targets.astype(np.float64) * np.log(clipped.astype(np.float64)), axis=-1)
    loss = float(np.mean(per_row))
    if not compute_grad:
        return loss, None
    inside = (q >= EPSILON) & (q <= 1.0 - EPSILON)
    g = np.where(inside, -targets / clipped, 0.0).astype(p.dtype)
    d = (g - np.sum(g * q, axis=-1, keepdims=True)) / (total * rows)
    out = _rows_grad(grad, y_pred.shape) if grad is not None else np.empty_like(p)
    out[...] = d
    return loss, _unflatten(out, y_pred.shape)


def _sparse_ce_probs(probs, labels, grad=None, compute_grad=True):
    """Sparse cross-entropy on probabilities (Keras: normalise, clip, -log p[label])."""
    labels = _sparse_labels(labels, probs.shape, "sparse_categorical_crossentropy")
    targets = np.zeros_like(probs)
    targets[np.arange(probs.shape[0]), labels] = 1.0
    return _categorical_ce_probs(targets, probs, grad, compute_grad)


# ---------------------------------------------------------------------------------------------
# Lookup and serialisation
# ---------------------------------------------------------------------------------------------
_CLASSES = {
    cls.__name__: cls
    for cls in (MeanSquaredError, MeanAbsoluteError, BinaryCrossentropy, CategoricalCrossentropy,
                SparseCategoricalCrossentropy)
}
_ALIASES = {
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "binary_crossentropy": BinaryCrossentropy,
    "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
_FUNCTIONS = {
    mean_squared_error: MeanSquaredError,
    mean_absolute_error: MeanAbsoluteError,
    binary_crossentropy: BinaryCrossentropy,
    categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
}


def serialize(loss):
    """``{"module", "class_name", "config"}`` for a Loss (Keras' serialisation layout)."""
    if not isinstance(loss, Loss):
        loss = get(loss)
    return {"module": "pynn.losses", "class_name": type(loss).__name__,
            "config": loss.get_config(), "registered_name": None}


def deserialize(config, custom_objects=None):
    """Rebuild a Loss from ``serialize``'s dict (or a bare name)."""
    if isinstance(config, str):
        return get(config)
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"cannot deserialize a loss from {config!r}")
    name = config["class_name"]
    cls = (custom_objects or {}).get(name) or _CLASSES.get(name) or _ALIASES.get(name)
    if cls is None:
        raise ValueError(f"unknown loss class {name!r}; known: {sorted(_CLASSES)}")
    return cls.from_config(dict(config.get("config") or {}))


def get(identifier):
    """A Loss from a name, a Loss instance or class, a config dict or a callable.

    Names: 'mse'/'mean_squared_error', 'mae'/'mean_absolute_error', 'binary_crossentropy',
    'categorical_crossentropy', 'sparse_categorical_crossentropy' and the class names.
    Other callables ``fn(y_true, y_pred) -> per-sample losses`` are wrapped (values only).
    """
    if identifier is None:
        return None
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower()) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(
                f"unknown loss {identifier!r}; expected one of "
                f"{sorted(set(_ALIASES) | set(_CLASSES))}"
            )
        return cls()
    if callable(identifier):
        if identifier in _FUNCTIONS:
            return _FUNCTIONS[identifier]()
        return LossFunctionWrapper(identifier)
    raise ValueError(f"could not interpret loss identifier {identifier!r}")
