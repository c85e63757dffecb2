# C-level GEMM for other Cython modules (dense layers, the training loop).
from cnn_core._typedefs cimport floating, intp_t

# c = alpha * a @ b + beta * c for an m x k `a` and k x n `b`, every matrix given by its
# first element and its row/column strides in elements (so a transpose is only a stride swap).
# Epilogue, applied to each finished tile: + bias[j] (bias may be NULL), copy of that
# pre-activation to z_out (rows rs_z apart; may be NULL), then activation `act`
# (CNN_ACT_* id, elementwise ones only; 0 = identity) with parameter `act_param`.
# The epilogue needs c's columns contiguous (cs_c == 1).
# Returns 0, or -1 when the packing workspace could not be allocated.
cdef int gemm_raw(intp_t m, intp_t n, intp_t k, floating alpha,
                  const floating *a, intp_t rs_a, intp_t cs_a,
                  const floating *b, intp_t rs_b, intp_t cs_b, floating beta,
                  floating *c, intp_t rs_c, intp_t cs_c,
                  const floating *bias, floating *z_out, intp_t rs_z,
                  int act, floating act_param, int num_threads) noexcept nogil

# gemm_raw, and row_nonfinite[0] = 1 when some row's first pre-activation (c[i, 0] after the
# bias, before the activation) is not finite; never cleared. With alpha != 0 a NaN or inf in
# row i of a makes all of c[i, :] non-finite, whatever b holds, so a flag left at 0 proves `a`
# finite at no extra pass over it; a set flag means a non-finite `a` or an overflow.
cdef int gemm_flag_nonfinite_raw(intp_t m, intp_t n, intp_t k, floating alpha,
                                 const floating *a, intp_t rs_a, intp_t cs_a,
                                 const floating *b, intp_t rs_b, intp_t cs_b, floating beta,
                                 floating *c, intp_t rs_c, intp_t cs_c,
                                 const floating *bias, floating *z_out, intp_t rs_z,
                                 int act, floating act_param, int *row_nonfinite,
                                 int num_threads) noexcept nogil

# c = (a @ b) * f'(z) elementwise, c's columns contiguous: the gradient GEMM dx = dz W^T of a
# dense layer carried through the activation of the layer below (d_act: its elementwise
# CNN_ACT_* id; d_z, d_a: its pre-activation and output, m x n, rows rs_d apart). The same
# floating-point operations as the GEMM followed by a separate derivative pass, in one sweep.
cdef int gemm_act_backward_raw(intp_t m, intp_t n, intp_t k,
                               const floating *a, intp_t rs_a, intp_t cs_a,
                               const floating *b, intp_t rs_b, intp_t cs_b,
                               floating *c, intp_t rs_c, int d_act, const floating *d_z,
                               const floating *d_a, intp_t rs_d, floating d_param,
                               int num_threads) noexcept nogil

# The micro-kernel family in use (0 reference, 1 AVX2, 2 AVX-512): kernels of other modules
# that have an AVX2 path of their own follow the GEMM's choice (PYNN_KERNEL, tests).
cdef int gemm_kernel_level() noexcept nogil
