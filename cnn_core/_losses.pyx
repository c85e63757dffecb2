"""Losses (mean over the batch) and the gradient of that mean, fused in one pass.

The loss value is accumulated in float64: each row (softmax cross-entropies) or each chunk of
LOSS_CHUNK elements (elementwise losses) gets its partial sum, computed in parallel into a
buffer, and the buffer is then summed serially in index order. Neither the partition nor the
summation order depends on the thread count, so loss and gradient are bitwise reproducible.
The gradient is computed in the input dtype with the operations of the NumPy reference.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange
from libc.math cimport fabs, log, log1p
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free

from cnn_core._typedefs cimport floating, intp_t
from cnn_core._threads cimport threads_for_elements
from cnn_core._activations cimport (softmax_exp, exp_sum_row, row_max,
                                    cnn_exp_sum_init)
from cnn_core import _checks

cnp.import_array()
cnn_exp_sum_init()

# Elements per partial sum of the elementwise losses: a constant, so the summation tree is
# the same for every thread count.
cdef enum:
    LOSS_CHUNK = 4096

cdef enum:
    KIND_MSE = 0
    KIND_MAE = 1
    KIND_BCE_LOGITS = 2
    KIND_BCE = 3


# ---------------------------------------------------------------------------------------------
# Softmax cross-entropies: one partial loss per row.

cdef inline double _softmax_ce_sparse_row(const floating *x, intp_t label, floating *g,
                                          intp_t cols, floating batch_f) noexcept nogil:
    cdef floating m = row_max(x, cols)
    cdef floating x_label = x[label]  # read before g (which may alias x) is written
    cdef floating total_f
    cdef double total = exp_sum_row(x, m, g, cols)
    cdef intp_t j
    if g != NULL:
        total_f = <floating>total
        for j in range(cols):
            g[j] = (g[j] / total_f) / batch_f
        g[label] = (softmax_exp(x_label - m) / total_f - <floating>1) / batch_f
    # -log_softmax(x)[label] = logsumexp(x - m) - (x[label] - m)
    return log(total) + (<double>m - <double>x_label)


cdef inline double _softmax_ce_row(const floating *x, const floating *t, floating *g,
                                   intp_t cols, floating batch_f) noexcept nogil:
    cdef floating m = row_max(x, cols)
    cdef floating total_f, mass_f
    cdef double mass = 0.0, weighted_shift = 0.0
    cdef intp_t j
    for j in range(cols):  # before g (which may alias x) is written
        mass += t[j]
        weighted_shift += <double>t[j] * (<double>x[j] - <double>m)
    cdef double total = exp_sum_row(x, m, g, cols)
    if g != NULL:
        total_f = <floating>total
        mass_f = <floating>mass
        for j in range(cols):
            g[j] = ((g[j] / total_f) * mass_f - t[j]) / batch_f
    # sum_j -t_j (x_j - m - lse) = lse sum_j t_j - sum_j t_j (x_j - m): for t >= 0 both terms
    # are >= 0 (x_j - m <= 0), so nothing cancels.
    return log(total) * mass - weighted_shift


cdef double softmax_ce_sparse_raw(const floating *logits, const int64_t *labels, floating *grad,
                                  intp_t batch, intp_t classes, int num_threads,
                                  double *partial) noexcept nogil:
    cdef floating batch_f = <floating>batch
    cdef double *row_loss = NULL
    cdef double total = 0.0
    cdef intp_t i, r
    if num_threads > 1:
        row_loss = partial if partial != NULL else <double *>malloc(batch * sizeof(double))
    if row_loss == NULL:
        # One thread (or no memory for the row losses): the same rows added in the same order
        # (same bits), serially and outside any parallel region (libgomp would allocate a team).
        for r in range(batch):
            total += _softmax_ce_sparse_row(logits + r * classes, labels[r],
                                            NULL if grad == NULL else grad + r * classes,
                                            classes, batch_f)
        return total / batch
    for i in prange(batch, schedule='static', num_threads=num_threads):
        row_loss[i] = _softmax_ce_sparse_row(logits + i * classes, labels[i],
                                             NULL if grad == NULL else grad + i * classes,
                                             classes, batch_f)
    for r in range(batch):
        total += row_loss[r]
    if partial == NULL:
        free(row_loss)
    return total / batch


cdef double softmax_ce_raw(const floating *logits, const floating *targets, floating *grad,
                           intp_t batch, intp_t classes, int num_threads,
                           double *partial) noexcept nogil:
    cdef floating batch_f = <floating>batch
    cdef double *row_loss = NULL
    cdef double total = 0.0
    cdef intp_t i, r
    if num_threads > 1:
        row_loss = partial if partial != NULL else <double *>malloc(batch * sizeof(double))
    if row_loss == NULL:  # serially, as in softmax_ce_sparse_raw
        for r in range(batch):
            total += _softmax_ce_row(logits + r * classes, targets + r * classes,
                                     NULL if grad == NULL else grad + r * classes,
                                     classes, batch_f)
        return total / batch
    for i in prange(batch, schedule='static', num_threads=num_threads):
        row_loss[i] = _softmax_ce_row(logits + i * classes, targets + i * classes,
                                      NULL if grad == NULL else grad + i * classes,
                                      classes, batch_f)
    for r in range(batch):
        total += row_loss[r]
    if partial == NULL:
        free(row_loss)
    return total / batch


# ---------------------------------------------------------------------------------------------
# Elementwise losses: one partial loss per LOSS_CHUNK elements.

cdef inline double _log1p_small(floating e) noexcept nogil:
    """log(1 + e) in float64 for 0 <= e <= 1. float32 input: log(1 + e) with the sum
    rounded in float64 (absolute error ~1e-16, far below float32's; glibc's log is much
    faster than log1pf). float64 input: log1p, which keeps tiny e exactly."""
    if floating is float:
        return log(1.0 + <double>e)
    else:
        return log1p(e)


cdef inline double _elementwise_chunk(int kind, const floating *p, const floating *t,
                                      floating *g, intp_t n, floating size_f, floating lo,
                                      floating hi) noexcept nogil:
    """Sum of the elementwise losses of n elements (float64); g[i] = d loss_mean / d p[i].
    Element i is read before g[i] is written, so g may be p or t themselves."""
    # MSE / MAE: four interleaved accumulators (combined in a fixed order) break the float64
    # add latency chain, which would otherwise bound these loops.
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, acc = 0.0, d64, x64, t64, p64
    cdef floating d, pc, e, one = 1, zero = 0, two = 2
    cdef intp_t i, n4 = n - n % 4
    if kind == KIND_MSE or kind == KIND_MAE:
        i = 0
        if kind == KIND_MSE:
            while i < n4:
                d64 = <double>p[i] - <double>t[i]
                s0 += d64 * d64
                d64 = <double>p[i + 1] - <double>t[i + 1]
                s1 += d64 * d64
                d64 = <double>p[i + 2] - <double>t[i + 2]
                s2 += d64 * d64
                d64 = <double>p[i + 3] - <double>t[i + 3]
                s3 += d64 * d64
                i += 4
            while i < n:
                d64 = <double>p[i] - <double>t[i]
                s0 += d64 * d64
                i += 1
        else:
            while i < n4:
                s0 += fabs(<double>p[i] - <double>t[i])
                s1 += fabs(<double>p[i + 1] - <double>t[i + 1])
                s2 += fabs(<double>p[i + 2] - <double>t[i + 2])
                s3 += fabs(<double>p[i + 3] - <double>t[i + 3])
                i += 4
            while i < n:
                s0 += fabs(<double>p[i] - <double>t[i])
                i += 1
        acc = (s0 + s1) + (s2 + s3)
        if g != NULL:
            if kind == KIND_MSE:
                for i in range(n):
                    g[i] = (two * (p[i] - t[i])) / size_f
            else:
                for i in range(n):
                    d = p[i] - t[i]
                    # sign(d); d * 0 keeps 0 for d == 0 and NaN for NaN, as numpy.sign
                    g[i] = (one if d > zero else (-one if d < zero else d * zero)) / size_f
    elif kind == KIND_BCE_LOGITS:
        for i in range(n):
            x64 = p[i]
            t64 = t[i]
            # e = exp(-|x|) <= 1 never overflows. It serves the loss
            # max(x, 0) - x t + log1p(e) and the gradient through sigmoid(x), which is
            # 1 / (1 + e) for x >= 0 and e / (1 + e) below: the same operations as
            # cnn_sigmoid_* in activation_math.h, with the exp shared instead of recomputed.
            pc = p[i]
            e = softmax_exp(-pc if pc > zero else pc)  # in the input precision, as sigmoid
            acc += (x64 if x64 > 0.0 else 0.0) - x64 * t64 + _log1p_small(e)
            if g != NULL:
                g[i] = ((one / (one + e) if pc >= zero else e / (one + e)) - t[i]) / size_f
    else:  # KIND_BCE
        for i in range(n):
            pc = p[i]
            if pc < lo:
                pc = lo
            elif pc > hi:
                pc = hi
            p64 = pc
            t64 = t[i]
            acc -= t64 * log(p64) + (1.0 - t64) * log(1.0 - p64)
            if g != NULL:
                if p[i] >= lo and p[i] <= hi:
                    g[i] = ((pc - t[i]) / (pc * (one - pc))) / size_f
                else:
                    g[i] = zero  # clipped (or NaN): the clip is flat there
    return acc


cdef intp_t elementwise_loss_partials(intp_t n) noexcept nogil:
    return (n + LOSS_CHUNK - 1) // LOSS_CHUNK


cdef inline double _elementwise_chunk_at(int kind, const floating *p, const floating *t,
                                         floating *g, intp_t n, floating size_f, floating lo,
                                         floating hi, intp_t c) noexcept nogil:
    """The partial loss of elements [c * LOSS_CHUNK, ...)."""
    cdef intp_t start = c * LOSS_CHUNK
    return _elementwise_chunk(kind, p + start, t + start, NULL if g == NULL else g + start,
                              min(n - start, <intp_t>LOSS_CHUNK), size_f, lo, hi)


cdef double _elementwise_loss(int kind, const floating *p, const floating *t, floating *g,
                              intp_t n, double epsilon, int num_threads,
                              double *workspace) noexcept nogil:
    cdef intp_t chunks = elementwise_loss_partials(n)
    cdef double *partial = NULL
    cdef floating size_f = <floating>n
    cdef floating lo = <floating>epsilon
    cdef floating hi = <floating>(1.0 - epsilon)
    cdef double total = 0.0
    cdef intp_t c, k
    if num_threads > 1:
        partial = workspace if workspace != NULL else <double *>malloc(chunks * sizeof(double))
    if partial == NULL:
        # One thread (or no memory for the partials): the same chunks added in the same order
        # (same bits), serially and outside any parallel region (libgomp would allocate a team).
        for k in range(chunks):
            total += _elementwise_chunk_at(kind, p, t, g, n, size_f, lo, hi, k)
        return total / n
    for c in prange(chunks, schedule='static', num_threads=num_threads):
        partial[c] = _elementwise_chunk_at(kind, p, t, g, n, size_f, lo, hi, c)
    for k in range(chunks):
        total += partial[k]
    if workspace == NULL:
        free(partial)
    return total / n


cdef double mse_raw(const floating *pred, const floating *target, floating *grad, intp_t n,
                    int num_threads, double *partial) noexcept nogil:
    return _elementwise_loss(KIND_MSE, pred, target, grad, n, 0.0, num_threads, partial)


cdef double mae_raw(const floating *pred, const floating *target, floating *grad, intp_t n,
                    int num_threads, double *partial) noexcept nogil:
    return _elementwise_loss(KIND_MAE, pred, target, grad, n, 0.0, num_threads, partial)


cdef double bce_logits_raw(const floating *logits, const floating *target, floating *grad,
                           intp_t n, int num_threads, double *partial) noexcept nogil:
    return _elementwise_loss(KIND_BCE_LOGITS, logits, target, grad, n, 0.0, num_threads,
                             partial)


cdef double bce_raw(const floating *prob, const floating *target, floating *grad, intp_t n,
                    double epsilon, int num_threads, double *partial) noexcept nogil:
    return _elementwise_loss(KIND_BCE, prob, target, grad, n, epsilon, num_threads, partial)


# ---------------------------------------------------------------------------------------------
# Python API (docs/kernel_api.md): validation as the NumPy reference, then one kernel call.

def _grad_buffer(grad, like, compute_grad):
    """The validated (or new) gradient buffer, or None when no gradient is wanted."""
    if not compute_grad:
        return None
    return _checks.check_out(grad, "grad", like.shape, like.dtype)


def _check_pair(pred, pred_name, target, target_name):
    _checks.check_array(pred, pred_name, min_ndim=1)
    _checks.check_array(target, target_name, dtype=pred.dtype)
    _checks.check_same_shape(pred, pred_name, target, target_name)


def _readable(x, grad):
    """x as a C-contiguous array the kernel may read while it writes grad: strided inputs
    (accepted, as by the reference) and inputs that overlap grad without being grad are copied."""
    if not x.flags.c_contiguous or (grad is not None and grad is not x
                                    and np.may_share_memory(grad, x)):
        return np.array(x, order="C", copy=True)
    return x


cdef void *_data_or_null(x):
    return NULL if x is None else cnp.PyArray_DATA(x)


def softmax_cross_entropy_sparse(logits, labels, *, grad=None, compute_grad=True):
    """Cross-entropy of softmax(logits) against integer class labels.

    logits: (B, C) float32/float64; labels: (B,) (or (B, 1)) integers in [0, C).
    loss = mean_i(logsumexp(logits_i) - logits_i[y_i]); grad = (softmax(logits) - onehot(y)) / B.
    grad: (B, C) buffer written in place (may be ``logits``). Returns (loss, grad or None).
    """
    _checks.check_array(logits, "logits", ndim=2)
    batch, classes = logits.shape
    labels = _checks.check_labels(labels, batch, classes)
    grad = _grad_buffer(grad, logits, compute_grad)
    logits = _readable(logits, grad)
    cdef intp_t B = batch, C = classes
    cdef int nthreads = threads_for_elements(B * C)
    cdef void *l_ptr = cnp.PyArray_DATA(logits)
    cdef const int64_t *y_ptr = <const int64_t *>cnp.PyArray_DATA(labels)
    cdef void *g_ptr = _data_or_null(grad)
    cdef double loss
    if logits.dtype == np.float32:
        with nogil:
            loss = softmax_ce_sparse_raw[float](<float *>l_ptr, y_ptr, <float *>g_ptr, B, C,
                                                nthreads, NULL)
    else:
        with nogil:
            loss = softmax_ce_sparse_raw[double](<double *>l_ptr, y_ptr, <double *>g_ptr, B, C,
                                                 nthreads, NULL)
    return float(loss), grad


def softmax_cross_entropy(logits, targets, *, grad=None, compute_grad=True):
    """Cross-entropy of softmax(logits) against target distributions.

    logits, targets: (B, C), one float dtype (targets: probabilities, e.g. one-hot).
    loss = mean_i(sum_j(-t_ij * log_softmax(logits_i)_j));
    grad = (softmax(logits) * sum_j(t_ij) - t) / B. Returns (loss, grad or None).
    """
    _checks.check_array(logits, "logits", ndim=2)
    _checks.check_array(targets, "targets", ndim=2, dtype=logits.dtype)
    _checks.check_same_shape(logits, "logits", targets, "targets")
    grad = _grad_buffer(grad, logits, compute_grad)
    logits = _readable(logits, grad)
    # targets are read again after grad[row] is written: a grad that overlaps them gets a copy
    if grad is not None and np.may_share_memory(grad, targets):
        targets = np.array(targets, order="C", copy=True)
    targets = _readable(targets, None)
    batch, classes = logits.shape
    cdef intp_t B = batch, C = classes
    cdef int nthreads = threads_for_elements(B * C)
    cdef void *l_ptr = cnp.PyArray_DATA(logits)
    cdef void *t_ptr = cnp.PyArray_DATA(targets)
    cdef void *g_ptr = _data_or_null(grad)
    cdef double loss
    if logits.dtype == np.float32:
        with nogil:
            loss = softmax_ce_raw[float](<float *>l_ptr, <float *>t_ptr, <float *>g_ptr, B, C,
                                         nthreads, NULL)
    else:
        with nogil:
            loss = softmax_ce_raw[double](<double *>l_ptr, <double *>t_ptr, <double *>g_ptr, B,
                                          C, nthreads, NULL)
    return float(loss), grad


cdef object _elementwise_api(int kind, pred, str pred_name, target, grad, bint compute_grad,
                             double epsilon):
    _check_pair(pred, pred_name, target, "target")
    grad = _grad_buffer(grad, pred, compute_grad)
    pred = _readable(pred, grad)
    target = _readable(target, grad)
    cdef intp_t n = pred.size
    cdef int nthreads = threads_for_elements(n)
    cdef void *p_ptr = cnp.PyArray_DATA(pred)
    cdef void *t_ptr = cnp.PyArray_DATA(target)
    cdef void *g_ptr = _data_or_null(grad)
    cdef double loss
    if pred.dtype == np.float32:
        with nogil:
            loss = _elementwise_loss[float](kind, <float *>p_ptr, <float *>t_ptr, <float *>g_ptr,
                                            n, epsilon, nthreads, NULL)
    else:
        with nogil:
            loss = _elementwise_loss[double](kind, <double *>p_ptr, <double *>t_ptr,
                                             <double *>g_ptr, n, epsilon, nthreads, NULL)
    return float(loss), grad


def mean_squared_error(pred, target, *, grad=None, compute_grad=True):
    """loss = mean((p - t)^2); grad = 2 (p - t) / size.

    pred, target: same shape (ndim >= 1), one float dtype. Returns (loss, grad or None).
    """
    return _elementwise_api(KIND_MSE, pred, "pred", target, grad, compute_grad, 0.0)


def mean_absolute_error(pred, target, *, grad=None, compute_grad=True):
    """loss = mean(|p - t|); grad = sign(p - t) / size (0 where p == t).

    pred, target: same shape (ndim >= 1), one float dtype. Returns (loss, grad or None).
    """
    return _elementwise_api(KIND_MAE, pred, "pred", target, grad, compute_grad, 0.0)


def binary_cross_entropy_logits(logits, target, *, grad=None, compute_grad=True):
    """loss = mean(max(x, 0) - x t + log1p(exp(-|x|))); grad = (sigmoid(x) - t) / size.

    logits, target: same shape (ndim >= 1), one float dtype. Returns (loss, grad or None).
    """
    return _elementwise_api(KIND_BCE_LOGITS, logits, "logits", target, grad, compute_grad, 0.0)


def binary_cross_entropy(prob, target, *, grad=None, compute_grad=True, epsilon=1e-7):
    """Binary cross-entropy of probabilities (Keras, from_logits=False).

    prob, target: same shape (ndim >= 1), one float dtype. p = clip(prob, eps, 1 - eps):
    loss = -mean(t log p + (1 - t) log(1 - p)); grad = (p - t) / (p (1 - p)) / size, 0 where
    prob was clipped. Returns (loss, grad or None).
    """
    _check_pair(prob, "prob", target, "target")
    epsilon = _checks.check_finite_scalar(epsilon, "epsilon")
    return _elementwise_api(KIND_BCE, prob, "prob", target, grad, compute_grad, epsilon)
