# C-level optimizer steps for other Cython modules (the compiled training loop).
# One in-place pass over n contiguous elements, split in fixed chunks (elementwise, so bitwise
# independent of num_threads). Scalars are precomputed by the caller in double and rounded once
# to `floating` (as NumPy does with a Python float next to a float32 array):
#   decay = lr * weight_decay (decoupled; 0 skips it), one_minus_x = 1 - x.
from cnn_core._typedefs cimport floating, intp_t

# velocity == NULL: param -= lr g (momentum must be 0). Otherwise
# v = momentum v - lr g; param += (momentum v - lr g) if nesterov else v.
cdef void sgd_raw(floating *param, const floating *grad, floating *velocity, intp_t n,
                  floating lr, floating momentum, bint nesterov, floating decay,
                  int num_threads) noexcept nogil

# m += (g - m) one_minus_b1; v += (g^2 - v) one_minus_b2; param -= lr_t m / (sqrt(v) + eps)
# with lr_t = lr sqrt(1 - b2^t) / (1 - b1^t) (bias correction folded in by the caller).
cdef void adam_raw(floating *param, const floating *grad, floating *m, floating *v, intp_t n,
                   floating lr_t, floating one_minus_b1, floating one_minus_b2, floating eps,
                   floating decay, int num_threads) noexcept nogil

# v = rho v + one_minus_rho g^2; average_grad != NULL (centered): ag = rho ag + one_minus_rho g,
# denom = v - ag^2 + eps, else denom = v + eps; inc = lr g / sqrt(denom);
# momentum_buf != NULL: mb = momentum mb + inc, param -= mb; else param -= inc.
cdef void rmsprop_raw(floating *param, const floating *grad, floating *velocity,
                      floating *momentum_buf, floating *average_grad, intp_t n, floating lr,
                      floating rho, floating one_minus_rho, floating momentum, floating eps,
                      floating decay, int num_threads) noexcept nogil

# acc += g^2; param -= lr g / sqrt(acc + eps)
cdef void adagrad_raw(floating *param, const floating *grad, floating *accumulator, intp_t n,
                      floating lr, floating eps, floating decay, int num_threads) noexcept nogil
