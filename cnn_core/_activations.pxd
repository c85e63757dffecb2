# C-level activation kernels for other Cython modules (dense layers, the training loop).
# `act` is a CNN_ACT_* id (cnn_core/include/activation_math.h, _checks.ACTIVATION_IDS);
# `param` the leaky_relu slope / elu alpha. Every kernel is bitwise independent of
# `num_threads`: elementwise work is split in fixed chunks, row-wise work over whole rows.
from libc.math cimport exp

from cnn_core._typedefs cimport floating, intp_t

cdef extern from "softmax_math.h" nogil:
    float cnn_expf(float x)
    double cnn_exp_sum_row_f32(const float *x, float shift, float *out, intp_t n)
    double cnn_exp_sum_row_f64(const double *x, double shift, double *out, intp_t n)
    void cnn_exp_sum_init()


# The exp of the softmax family, of sigmoid and of the sigmoid cross-entropy: cnn_expf for
# float32 (include/exp_math.h: <= 1 ulp from expf, and vectorised in exp_sum_row and in
# act_vec_math.h), libm's exp for float64.
cdef inline floating softmax_exp(floating x) noexcept nogil:
    if floating is float:
        return cnn_expf(x)
    else:
        return exp(x)


# out[j] = softmax_exp(x[j] - shift) (out may be NULL: sum only), returns the sum of those
# terms in float64, in a fixed order (include/softmax_math.h); vectorised for float32.
cdef inline double exp_sum_row(const floating *x, floating shift, floating *out,
                               intp_t n) noexcept nogil:
    if floating is float:
        return cnn_exp_sum_row_f32(x, shift, out, n)
    else:
        return cnn_exp_sum_row_f64(x, shift, out, n)


# Largest of x[0..n) (n >= 1), scanned in order: the shift of the stable softmax.
cdef inline floating row_max(const floating *x, intp_t n) noexcept nogil:
    cdef floating m = x[0]
    cdef intp_t j
    for j in range(1, n):
        if x[j] > m:
            m = x[j]
    return m


# out[i] = f(x[i]) for an elementwise activation over n elements (out may alias x).
cdef void activation_apply(const floating *x, floating *out, intp_t n, int act,
                           floating param, int num_threads) noexcept nogil

# out[i] = grad[i] * f'(z[i]) (given a = f(z)) for an elementwise activation (out may alias grad).
cdef void activation_grad(const floating *grad, const floating *z, const floating *a,
                          floating *out, intp_t n, int act, floating param,
                          int num_threads) noexcept nogil

# Row-wise over `rows` rows of `cols` contiguous elements (row max subtracted first);
# out may alias x.
cdef void softmax_rows(const floating *x, floating *out, intp_t rows, intp_t cols,
                       int num_threads) noexcept nogil
cdef void log_softmax_rows(const floating *x, floating *out, intp_t rows, intp_t cols,
                           int num_threads) noexcept nogil

# Backward of the row-wise ones (out may alias grad):
#   softmax:     out = a * (grad - sum(grad * a, row))
#   log_softmax: out = grad - exp(a) * sum(grad, row)
cdef void softmax_backward_rows(const floating *grad, const floating *a, floating *out,
                                intp_t rows, intp_t cols, int num_threads) noexcept nogil
cdef void log_softmax_backward_rows(const floating *grad, const floating *a, floating *out,
                                    intp_t rows, intp_t cols, int num_threads) noexcept nogil

# Any activation id, elementwise or row-wise: x/out viewed as (rows, cols) C-contiguous.
cdef void activation_forward_raw(const floating *x, floating *out, intp_t rows, intp_t cols,
                                 int act, floating param, int num_threads) noexcept nogil
cdef void activation_backward_raw(const floating *grad, const floating *z, const floating *a,
                                  floating *out, intp_t rows, intp_t cols, int act,
                                  floating param, int num_threads) noexcept nogil
