# C-level loss kernels for other Cython modules (the compiled training loop).
# Each returns the batch loss (a mean, accumulated in float64) and, when `grad` is not NULL,
# writes the gradient of that mean into `grad` (same layout as the prediction; grad may alias
# the prediction). Per-row / per-chunk partial losses are summed serially in a fixed order,
# so the value and the gradient are bitwise independent of `num_threads`.
# `partial`: room for those partial losses, `batch` doubles for the softmax cross-entropies,
# elementwise_loss_partials(n) for the elementwise ones; NULL allocates it for the call (the
# training loop passes its own, so a step allocates nothing).
from libc.stdint cimport int64_t

from cnn_core._typedefs cimport floating, intp_t

# logits (batch, classes) C-contiguous, labels (batch,) in [0, classes).
# loss = mean(logsumexp(l) - l[y]); grad = (softmax(l) - onehot(y)) / batch.
cdef double softmax_ce_sparse_raw(const floating *logits, const int64_t *labels, floating *grad,
                                  intp_t batch, intp_t classes, int num_threads,
                                  double *partial) noexcept nogil

# logits, targets (batch, classes). loss = mean(sum(-t log_softmax(l)));
# grad = (softmax(l) * sum(t) - t) / batch.
cdef double softmax_ce_raw(const floating *logits, const floating *targets, floating *grad,
                           intp_t batch, intp_t classes, int num_threads,
                           double *partial) noexcept nogil

# Elementwise losses over n elements (the mean over all elements equals Keras' mean over the
# last axis then over the batch); the gradient divides by n.
cdef intp_t elementwise_loss_partials(intp_t n) noexcept nogil
cdef double mse_raw(const floating *pred, const floating *target, floating *grad, intp_t n,
                    int num_threads, double *partial) noexcept nogil
cdef double mae_raw(const floating *pred, const floating *target, floating *grad, intp_t n,
                    int num_threads, double *partial) noexcept nogil
cdef double bce_logits_raw(const floating *logits, const floating *target, floating *grad,
                           intp_t n, int num_threads, double *partial) noexcept nogil
# prob clipped to [epsilon, 1 - epsilon] (bounds rounded to floating); grad 0 where clipped.
cdef double bce_raw(const floating *prob, const floating *target, floating *grad, intp_t n,
                    double epsilon, int num_threads, double *partial) noexcept nogil
