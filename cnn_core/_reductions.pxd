# C-level reductions for other Cython modules (the training loop's gradient clipping).
from cnn_core._typedefs cimport floating, intp_t

# sum(x[i]^2) over n contiguous elements, in float64. Partial sums of SUM_CHUNK elements are
# computed in parallel and added serially in chunk order: the same bits for any num_threads.
cdef double sum_of_squares_raw(const floating *x, intp_t n, int num_threads) noexcept nogil
