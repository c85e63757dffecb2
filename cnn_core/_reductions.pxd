# C-level reductions for other Cython modules (the training loop's gradient clipping).
from cnn_core._typedefs cimport floating, intp_t

# sum(x[i]^2) over n contiguous elements, in float64. Partial sums of SUM_CHUNK elements are
# computed in parallel and added serially in chunk order: the same bits for any num_threads.
# workspace: room for sum_of_squares_partials(n) doubles, or NULL to allocate it for the call.
cdef intp_t sum_of_squares_partials(intp_t n) noexcept nogil
cdef double sum_of_squares_raw(const floating *x, intp_t n, int num_threads,
                               double *workspace) noexcept nogil
