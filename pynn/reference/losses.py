"""Losses (mean over the batch) and the gradients of that mean with respect to the prediction.

Every function returns ``(loss, grad)``: ``loss`` a Python float computed and summed in
float64, ``grad`` in the input's shape and dtype (written into ``grad=`` when given), or
``None`` with ``compute_grad=False``. For MSE / MAE / BCE the per-sample loss is the mean over
the last axis (Keras) and the batch loss the mean of those, i.e. the mean of all elements; the
gradient divides by ``size``, the number of elements.
"""
import numpy as np

from cnn_core import _checks
from pynn.reference.activations import _log_softmax, _sigmoid, _softmax


def _mean_of_sample_means(elementwise):
    """Keras' reduction: mean over the last axis per sample, then mean over the samples."""
    return float(np.mean(np.mean(elementwise, axis=-1)))


def _check_pair(pred, pred_name, target, target_name):
    _checks.check_array(pred, pred_name, min_ndim=1)
    _checks.check_array(target, target_name, dtype=pred.dtype)
    _checks.check_same_shape(pred, pred_name, target, target_name)


def _grad_buffer(grad, like, compute_grad):
    """The validated (or new) gradient buffer, or None when no gradient is wanted."""
    if not compute_grad:
        return None
    return _checks.check_out(grad, "grad", like.shape, like.dtype)


def softmax_cross_entropy_sparse(logits, labels, *, grad=None, compute_grad=True):
    """Cross-entropy of softmax(logits) against integer class labels.

    logits: (B, C) float32/float64; labels: (B,) (or (B, 1)) integers in [0, C).
    loss = mean_i(logsumexp(logits_i) - logits_i[y_i]) = mean_i(-log_softmax(logits_i)[y_i])
    grad = (softmax(logits) - onehot(y)) / B, shape (B, C).
    """
    _checks.check_array(logits, "logits", ndim=2)
    batch, num_classes = logits.shape
    labels = _checks.check_labels(labels, batch, num_classes)
    grad = _grad_buffer(grad, logits, compute_grad)
    rows = np.arange(batch)

    log_p = _log_softmax(logits.astype(np.float64))
    loss = float(np.mean(-log_p[rows, labels]))
    if not compute_grad:
        return loss, None
    one_hot = np.zeros_like(logits)
    one_hot[rows, labels] = 1
    grad[...] = (_softmax(logits) - one_hot) / batch
    return loss, grad


def softmax_cross_entropy(logits, targets, *, grad=None, compute_grad=True):
    """Cross-entropy of softmax(logits) against target distributions.

    logits, targets: (B, C), one float dtype (targets: probabilities, e.g. one-hot).
    loss = mean_i(sum_j(-t_ij * log_softmax(logits_i)_j))
    grad = (softmax(logits) * sum_j(t_ij) - t) / B   (= (softmax - t) / B when rows sum to 1)
    """
    _checks.check_array(logits, "logits", ndim=2)
    _checks.check_array(targets, "targets", ndim=2, dtype=logits.dtype)
    _checks.check_same_shape(logits, "logits", targets, "targets")
    grad = _grad_buffer(grad, logits, compute_grad)
    batch = logits.shape[0]

    log_p = _log_softmax(logits.astype(np.float64))
    loss = float(np.mean(np.sum(-targets.astype(np.float64) * log_p, axis=-1)))
    if not compute_grad:
        return loss, None
    row_mass = np.sum(targets, axis=-1, keepdims=True)
    grad[...] = (_softmax(logits) * row_mass - targets) / batch
    return loss, grad


def mean_squared_error(pred, target, *, grad=None, compute_grad=True):
    """loss = mean((p - t)^2); grad = 2 (p - t) / size.

    pred, target: same shape (ndim >= 1), one float dtype.
    """
    _check_pair(pred, "pred", target, "target")
    grad = _grad_buffer(grad, pred, compute_grad)
    diff64 = pred.astype(np.float64) - target.astype(np.float64)
    loss = _mean_of_sample_means(diff64 * diff64)
    if not compute_grad:
        return loss, None
    grad[...] = 2 * (pred - target) / pred.size
    return loss, grad


def mean_absolute_error(pred, target, *, grad=None, compute_grad=True):
    """loss = mean(|p - t|); grad = sign(p - t) / size (0 where p == t).

    pred, target: same shape (ndim >= 1), one float dtype.
    """
    _check_pair(pred, "pred", target, "target")
    grad = _grad_buffer(grad, pred, compute_grad)
    loss = _mean_of_sample_means(np.abs(pred.astype(np.float64) - target.astype(np.float64)))
    if not compute_grad:
        return loss, None
    grad[...] = np.sign(pred - target) / pred.size
    return loss, grad


def binary_cross_entropy_logits(logits, target, *, grad=None, compute_grad=True):
    """Binary cross-entropy of sigmoid(logits) against targets in [0, 1].

    logits, target: same shape (ndim >= 1), one float dtype.
    loss = mean(max(x, 0) - x t + log1p(exp(-|x|)))   (= -t log s(x) - (1-t) log(1-s(x)),
           written so that exp never overflows)
    grad = (sigmoid(x) - t) / size
    """
    _check_pair(logits, "logits", target, "target")
    grad = _grad_buffer(grad, logits, compute_grad)
    x, t = logits.astype(np.float64), target.astype(np.float64)
    loss = _mean_of_sample_means(np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))))
    if not compute_grad:
        return loss, None
    grad[...] = (_sigmoid(logits) - target) / logits.size
    return loss, grad


def binary_cross_entropy(prob, target, *, grad=None, compute_grad=True, epsilon=1e-7):
    """Binary cross-entropy of probabilities against targets in [0, 1] (Keras, from_logits=False).

    prob, target: same shape (ndim >= 1), one float dtype. p = clip(prob, eps, 1 - eps):
    loss = -mean(t log p + (1 - t) log(1 - p))
    grad = (p - t) / (p (1 - p)) / size, and 0 where prob was clipped (the clip is flat there).
    """
    _check_pair(prob, "prob", target, "target")
    epsilon = _checks.check_finite_scalar(epsilon, "epsilon")
    grad = _grad_buffer(grad, prob, compute_grad)
    p = np.clip(prob, epsilon, 1 - epsilon)  # in the input dtype, as Keras clips
    p64, t = p.astype(np.float64), target.astype(np.float64)
    loss = _mean_of_sample_means(-(t * np.log(p64) + (1 - t) * np.log(1 - p64)))
    if not compute_grad:
        return loss, None
    was_clipped = p != prob
    dp = np.where(was_clipped, 0, (p - target) / (p * (1 - p))).astype(prob.dtype, copy=False)
    grad[...] = dp / prob.size
    return loss, grad
