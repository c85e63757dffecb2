# C-level dense-layer kernels for other Cython modules (the compiled training loop).
from cnn_core._typedefs cimport floating, intp_t

# dz[i, j] = grad[i, j] * f'(z[i, j]) for elementwise activations (dz may alias grad),
# threads split rows.
cdef void activation_grad_rows(const floating *grad, const floating *z, const floating *a,
                               floating *dz, intp_t rows, intp_t cols, int act,
                               floating param, int num_threads) noexcept nogil

# db[j] = sum_i dz[i, j], rows summed in order for every column (deterministic): threads split
# the columns, never the rows.
cdef void column_sums(const floating *dz, floating *db, intp_t rows, intp_t cols,
                      int num_threads) noexcept nogil

# The whole dense backward on raw pointers (see dense_backward). act >= 0: dz = grad * f'(z)
# is computed first (act must be elementwise); act < 0: dz already holds dL/dz.
# grad_x may be NULL (not needed). act_x > 0 (elementwise id of the layer below, whose output
# x = f_x(z_x) is): grad_x receives dL/dz_x = (dz w^T) * f_x'(z_x), fused into the GEMM's
# write-back, so that layer is then called with act < 0. z_x, a_x: (batch, n_in) contiguous.
# Returns 0, or -1 on workspace allocation failure.
cdef int dense_backward_raw(const floating *x, intp_t rs_x, intp_t cs_x,
                            const floating *w, intp_t rs_w, intp_t cs_w,
                            const floating *z, const floating *a, const floating *grad,
                            floating *dz, floating *grad_w, floating *grad_b, floating *grad_x,
                            intp_t batch, intp_t n_in, intp_t units, int act, floating param,
                            int num_threads, int act_x=*, const floating *z_x=*,
                            const floating *a_x=*, floating param_x=*) noexcept nogil
