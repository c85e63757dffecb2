"""Activations ``a = f(z)`` and their backward ``dL/dz``.

Elementwise ones call the single definition in ``include/activation_math.h`` (shared with the
GEMM epilogue and the dense backward); softmax / log_softmax are row-wise here, with the row
max subtracted first and row sums accumulated in float64. Threads split elementwise work in
chunks of a fixed size and row-wise work over whole rows, so no result depends on the thread
count.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange
from libc.math cimport log

from cnn_core._typedefs cimport floating, intp_t
from cnn_core._threads cimport threads_for_elements
from cnn_core import _checks

cnp.import_array()
cnn_exp_sum_init()

cdef extern from "activation_math.h" nogil:
    void cnn_act_math_init()  # act_vec_math.h: the AVX2 activations where the CPU has them
    int cnn_act_vec_enabled()
    float cnn_act_one_f32(int act, float z, float param)
    float cnn_act_deriv_one_f32(int act, float z, float a, float param)
    void cnn_act_apply_f32(int act, const float *z, float *a, intp_t n, float param)
    void cnn_act_apply_f64(int act, const double *z, double *a, intp_t n, double param)
    void cnn_act_backward_f32(int act, const float *g, const float *z, const float *a,
                              float *dz, intp_t n, float param)
    void cnn_act_backward_f64(int act, const double *g, const double *z, const double *a,
                              double *dz, intp_t n, double param)
    int CNN_ACT_SOFTMAX, CNN_ACT_LOG_SOFTMAX

# Elements per parallel work item: large enough to amortise the scheduling, small enough to
# balance; the split never changes a result (elementwise), it only has to be fixed.
cdef enum:
    ELEMENT_CHUNK = 8192


cdef inline void _apply_chunk(const floating *x, floating *out, intp_t n, int act,
                              floating param, intp_t c) noexcept nogil:
    """Elements [c * ELEMENT_CHUNK, ...) of activation_apply."""
    cdef intp_t start = c * ELEMENT_CHUNK
    cdef intp_t length = min(n - start, <intp_t>ELEMENT_CHUNK)
    if floating is float:
        cnn_act_apply_f32(act, x + start, out + start, length, param)
    else:
        cnn_act_apply_f64(act, x + start, out + start, length, param)


cdef void activation_apply(const floating *x, floating *out, intp_t n, int act,
                           floating param, int num_threads) noexcept nogil:
    cdef intp_t chunks = (n + ELEMENT_CHUNK - 1) // ELEMENT_CHUNK
    cdef intp_t c
    if num_threads > 1:
        for c in prange(chunks, schedule='static', num_threads=num_threads):
            _apply_chunk(x, out, n, act, param, c)
    else:  # no region: libgomp allocates a team even for one thread
        for c in range(chunks):
            _apply_chunk(x, out, n, act, param, c)


cdef inline void _grad_chunk(const floating *grad, const floating *z, const floating *a,
                             floating *out, intp_t n, int act, floating param,
                             intp_t c) noexcept nogil:
    """Elements [c * ELEMENT_CHUNK, ...) of activation_grad."""
    cdef intp_t start = c * ELEMENT_CHUNK
    cdef intp_t length = min(n - start, <intp_t>ELEMENT_CHUNK)
    if floating is float:
        cnn_act_backward_f32(act, grad + start, z + start, a + start, out + start, length,
                             param)
    else:
        cnn_act_backward_f64(act, grad + start, z + start, a + start, out + start, length,
                             param)


cdef void activation_grad(const floating *grad, const floating *z, const floating *a,
                          floating *out, intp_t n, int act, floating param,
                          int num_threads) noexcept nogil:
    cdef intp_t chunks = (n + ELEMENT_CHUNK - 1) // ELEMENT_CHUNK
    cdef intp_t c
    if num_threads > 1:
        for c in prange(chunks, schedule='static', num_threads=num_threads):
            _grad_chunk(grad, z, a, out, n, act, param, c)
    else:  # no region: libgomp allocates a team even for one thread
        for c in range(chunks):
            _grad_chunk(grad, z, a, out, n, act, param, c)


cdef inline void _softmax_row(const floating *x, floating *out, intp_t cols) noexcept nogil:
    cdef floating m = row_max(x, cols)
    cdef floating total_f = <floating>exp_sum_row(x, m, out, cols)
    cdef intp_t j
    for j in range(cols):
        out[j] = out[j] / total_f


cdef inline void _log_softmax_row(const floating *x, floating *out, intp_t cols) noexcept nogil:
    cdef floating m = row_max(x, cols)
    cdef double total = exp_sum_row(x, m, <floating *>NULL, cols)
    cdef floating log_total
    cdef intp_t j
    log_total = <floating>log(total)
    for j in range(cols):
        out[j] = (x[j] - m) - log_total


cdef void softmax_rows(const floating *x, floating *out, intp_t rows, intp_t cols,
                       int num_threads) noexcept nogil:
    cdef intp_t i
    if num_threads > 1:
        for i in prange(rows, schedule='static', num_threads=num_threads):
            _softmax_row(x + i * cols, out + i * cols, cols)
    else:  # no region: libgomp allocates a team even for one thread
        for i in range(rows):
            _softmax_row(x + i * cols, out + i * cols, cols)


cdef void log_softmax_rows(const floating *x, floating *out, intp_t rows, intp_t cols,
                           int num_threads) noexcept nogil:
    cdef intp_t i
    if num_threads > 1:
        for i in prange(rows, schedule='static', num_threads=num_threads):
            _log_softmax_row(x + i * cols, out + i * cols, cols)
    else:  # no region: libgomp allocates a team even for one thread
        for i in range(rows):
            _log_softmax_row(x + i * cols, out + i * cols, cols)


cdef inline void _softmax_backward_row(const floating *grad, const floating *a, floating *out,
                                       intp_t cols) noexcept nogil:
    cdef double dot = 0.0
    cdef floating dot_f
    cdef intp_t j
    for j in range(cols):
        dot += <double>grad[j] * a[j]
    dot_f = <floating>dot
    for j in range(cols):
        out[j] = a[j] * (grad[j] - dot_f)


cdef inline void _log_softmax_backward_row(const floating *grad, const floating *a,
                                           floating *out, intp_t cols) noexcept nogil:
    cdef double total = 0.0
    cdef floating total_f
    cdef intp_t j
    for j in range(cols):
        total += grad[j]
    total_f = <floating>total
    for j in range(cols):
        out[j] = grad[j] - softmax_exp(a[j]) * total_f


cdef void softmax_backward_rows(const floating *grad, const floating *a, floating *out,
                                intp_t rows, intp_t cols, int num_threads) noexcept nogil:
    cdef intp_t i
    if num_threads > 1:
        for i in prange(rows, schedule='static', num_threads=num_threads):
            _softmax_backward_row(grad + i * cols, a + i * cols, out + i * cols, cols)
    else:  # no region: libgomp allocates a team even for one thread
        for i in range(rows):
            _softmax_backward_row(grad + i * cols, a + i * cols, out + i * cols, cols)


cdef void log_softmax_backward_rows(const floating *grad, const floating *a, floating *out,
                                    intp_t rows, intp_t cols, int num_threads) noexcept nogil:
    cdef intp_t i
    if num_threads > 1:
        for i in prange(rows, schedule='static', num_threads=num_threads):
            _log_softmax_backward_row(grad + i * cols, a + i * cols, out + i * cols, cols)
    else:  # no region: libgomp allocates a team even for one thread
        for i in range(rows):
            _log_softmax_backward_row(grad + i * cols, a + i * cols, out + i * cols, cols)


cdef void activation_forward_raw(const floating *x, floating *out, intp_t rows, intp_t cols,
                                 int act, floating param, int num_threads) noexcept nogil:
    if act == CNN_ACT_SOFTMAX:
        softmax_rows(x, out, rows, cols, num_threads)
    elif act == CNN_ACT_LOG_SOFTMAX:
        log_softmax_rows(x, out, rows, cols, num_threads)
    else:
        activation_apply(x, out, rows * cols, act, param, num_threads)


cdef void activation_backward_raw(const floating *grad, const floating *z, const floating *a,
                                  floating *out, intp_t rows, intp_t cols, int act,
                                  floating param, int num_threads) noexcept nogil:
    if act == CNN_ACT_SOFTMAX:
        softmax_backward_rows(grad, a, out, rows, cols, num_threads)
    elif act == CNN_ACT_LOG_SOFTMAX:
        log_softmax_backward_rows(grad, a, out, rows, cols, num_threads)
    else:
        activation_grad(grad, z, a, out, rows * cols, act, param, num_threads)


def _rows_cols(x):
    """(rows, cols) of x seen as rows over its last axis (a 0-d array is one element)."""
    cols = x.shape[x.ndim - 1] if x.ndim else 1
    return x.size // cols, cols


def activation_forward(x, activation, *, param=None, out=None):
    """``out = f(x)``.

    x: any shape (softmax/log_softmax: ndim >= 1, over the last axis), float32 or float64,
    C-contiguous, not empty. param: leaky_relu slope / elu alpha (None: the default).
    out: x.shape, x.dtype, C-contiguous (may be ``x`` itself). Returns out.
    """
    name, act, param = _checks.resolve_activation(activation, param)
    row_wise = name in _checks.ROW_WISE_ACTIVATIONS
    _checks.check_array(x, "x", min_ndim=1 if row_wise else None)
    _checks.check_contiguous(x, "x")
    out = _checks.check_out(out, "out", x.shape, x.dtype)
    rows, cols = _rows_cols(x)
    cdef intp_t R = rows, C = cols
    cdef int act_id = act
    cdef int nthreads = threads_for_elements(R * C)
    cdef float p32 = param
    cdef double p64 = param
    cdef void *x_ptr = cnp.PyArray_DATA(x)
    cdef void *o_ptr = cnp.PyArray_DATA(out)
    if x.dtype == np.float32:
        with nogil:
            activation_forward_raw[float](<float *>x_ptr, <float *>o_ptr, R, C, act_id, p32,
                                          nthreads)
    else:
        with nogil:
            activation_forward_raw[double](<double *>x_ptr, <double *>o_ptr, R, C, act_id, p64,
                                           nthreads)
    return out


def activation_backward(grad, z, a, activation, *, param=None, out=None):
    """``out = dL/dz`` given ``grad = dL/da``, the pre-activation ``z`` and ``a = f(z)``.

    grad, z, a: one shape, one float dtype, C-contiguous, not empty. Elementwise activations:
    ``grad * f'(z)``; softmax: ``a * (grad - sum(grad * a, -1))``; log_softmax:
    ``grad - exp(a) * sum(grad, -1)``. out: grad.shape, grad.dtype (may be ``grad``).
    Returns out.
    """
    name, act, param = _checks.resolve_activation(activation, param)
    row_wise = name in _checks.ROW_WISE_ACTIVATIONS
    _checks.check_array(grad, "grad", min_ndim=1 if row_wise else None)
    _checks.check_contiguous(grad, "grad")
    _checks.check_like(z, "z", grad, "grad")
    _checks.check_like(a, "a", grad, "grad")
    out = _checks.check_out(out, "out", grad.shape, grad.dtype)
    rows, cols = _rows_cols(grad)
    cdef intp_t R = rows, C = cols
    cdef int act_id = act
    cdef int nthreads = threads_for_elements(R * C)
    cdef float p32 = param
    cdef double p64 = param
    cdef void *g_ptr = cnp.PyArray_DATA(grad)
    cdef void *z_ptr = cnp.PyArray_DATA(z)
    cdef void *a_ptr = cnp.PyArray_DATA(a)
    cdef void *o_ptr = cnp.PyArray_DATA(out)
    if grad.dtype == np.float32:
        with nogil:
            activation_backward_raw[float](<float *>g_ptr, <float *>z_ptr, <float *>a_ptr,
                                           <float *>o_ptr, R, C, act_id, p32, nthreads)
    else:
        with nogil:
            activation_backward_raw[double](<double *>g_ptr, <double *>z_ptr, <double *>a_ptr,
                                            <double *>o_ptr, R, C, act_id, p64, nthreads)
    return out


def _softmax_exp_paths(x):
    """For tests: softmax_exp of a float32 1-D array two ways, (element by element with the
    scalar cnn_expf, through exp_sum_row: eight lanes at a time where the CPU has AVX2, the
    scalar function for the last n % 8), plus exp_sum_row's float64 sum."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    cdef const float[::1] xv = x
    one = np.empty_like(x)
    row = np.empty_like(x)
    cdef float[::1] ov = one
    cdef float[::1] rv = row
    cdef intp_t j, n = x.shape[0]
    cdef double total
    with nogil:
        for j in range(n):
            ov[j] = cnn_expf(xv[j])
        total = cnn_exp_sum_row_f32(&xv[0], 0, &rv[0], n) if n > 0 else 0.0
    return one, row, total


def _activation_scalar_f32(x, activation, param=None, derivative=False):
    """For tests: a float32 elementwise activation f(x) (or f'(x)) of a 1-D array element by
    element, through the scalar functions that the vector code must match bit for bit."""
    name, act, p = _checks.resolve_activation(activation, param)
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    cdef const float[::1] xv = x
    cdef float[::1] ov = out
    cdef intp_t j, n = x.shape[0]
    cdef int act_id = act
    cdef float pf = p, a
    cdef bint deriv = derivative
    with nogil:
        for j in range(n):
            a = cnn_act_one_f32(act_id, xv[j], pf)
            ov[j] = cnn_act_deriv_one_f32(act_id, xv[j], a, pf) if deriv else a
    return out


# The activations' AVX2 spellings, where the CPU has them (same bits either way).
cnn_act_math_init()


def _act_vec_enabled():
    """For tests: whether this module's activations run their AVX2 spellings."""
    return bool(cnn_act_vec_enabled())
