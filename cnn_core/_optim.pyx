"""In-place optimizer steps with Keras 3 semantics (docs/kernel_api.md).

Each step is one pass over param, grad and the state arrays, OPTIM_CHUNK elements at a time
(the chunk stays in L1 between the decoupled weight decay and the update). Every element is
updated on its own with the operations, in the order and precision, of the NumPy reference
(scalars computed in double, rounded once to the array dtype), so the result does not depend
on the thread count.
"""
import math

import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange

from cnn_core._typedefs cimport floating, intp_t
from cnn_core._threads cimport threads_for_elements
from cnn_core import _checks

cnp.import_array()

# The per-chunk loops are C (include/optim_math.h), compiled per instruction set.
cdef extern from "optim_math.h" nogil:
    void cnn_sgd_chunk_f32(float *param, const float *grad, float *velocity, intp_t n,
                           float lr, float momentum, int nesterov, float decay)
    void cnn_sgd_chunk_f64(double *param, const double *grad, double *velocity, intp_t n,
                           double lr, double momentum, int nesterov, double decay)
    void cnn_adam_chunk_f32(float *param, const float *grad, float *m, float *v, intp_t n,
                            float lr_t, float one_minus_b1, float one_minus_b2, float eps,
                            float decay)
    void cnn_adam_chunk_f64(double *param, const double *grad, double *m, double *v, intp_t n,
                            double lr_t, double one_minus_b1, double one_minus_b2, double eps,
                            double decay)
    void cnn_rmsprop_chunk_f32(float *param, const float *grad, float *velocity,
                               float *momentum_buf, float *average_grad, intp_t n, float lr,
                               float rho, float one_minus_rho, float momentum, float eps,
                               float decay)
    void cnn_rmsprop_chunk_f64(double *param, const double *grad, double *velocity,
                               double *momentum_buf, double *average_grad, intp_t n, double lr,
                               double rho, double one_minus_rho, double momentum, double eps,
                               double decay)
    void cnn_adagrad_chunk_f32(float *param, const float *grad, float *accumulator, intp_t n,
                               float lr, float eps, float decay)
    void cnn_adagrad_chunk_f64(double *param, const double *grad, double *accumulator,
                               intp_t n, double lr, double eps, double decay)

# Elements per parallel work item: 4096 float64 of each of up to five arrays stay in L2.
cdef enum:
    OPTIM_CHUNK = 4096


cdef inline intp_t _chunk_length(intp_t n, intp_t start) noexcept nogil:
    return n - start if n - start < OPTIM_CHUNK else OPTIM_CHUNK


# ---------------------------------------------------------------------------------------------
# SGD

cdef inline void _sgd_chunk(floating *param, const floating *grad, floating *velocity,
                            intp_t n, floating lr, floating momentum, bint nesterov,
                            floating decay) noexcept nogil:
    if floating is float:
        cnn_sgd_chunk_f32(param, grad, velocity, n, lr, momentum, nesterov, decay)
    else:
        cnn_sgd_chunk_f64(param, grad, velocity, n, lr, momentum, nesterov, decay)

cdef void sgd_raw(floating *param, const floating *grad, floating *velocity, intp_t n,
                  floating lr, floating momentum, bint nesterov, floating decay,
                  int num_threads) noexcept nogil:
    cdef intp_t chunks = (n + OPTIM_CHUNK - 1) // OPTIM_CHUNK
    cdef intp_t c, s
    if num_threads > 1:
        for c in prange(chunks, schedule='static', num_threads=num_threads):
            s = c * OPTIM_CHUNK
            _sgd_chunk(param + s, grad + s, NULL if velocity == NULL else velocity + s,
                       _chunk_length(n, s), lr, momentum, nesterov, decay)
    else:  # no region: libgomp allocates a team even for one thread
        for c in range(chunks):
            s = c * OPTIM_CHUNK
            _sgd_chunk(param + s, grad + s, NULL if velocity == NULL else velocity + s,
                       _chunk_length(n, s), lr, momentum, nesterov, decay)


# ---------------------------------------------------------------------------------------------
# Adam / AdamW

cdef inline void _adam_chunk(floating *param, const floating *grad, floating *m, floating *v,
                             intp_t n, floating lr_t, floating one_minus_b1,
                             floating one_minus_b2, floating eps, floating decay) noexcept nogil:
    if floating is float:
        cnn_adam_chunk_f32(param, grad, m, v, n, lr_t, one_minus_b1, one_minus_b2, eps, decay)
    else:
        cnn_adam_chunk_f64(param, grad, m, v, n, lr_t, one_minus_b1, one_minus_b2, eps, decay)

cdef void adam_raw(floating *param, const floating *grad, floating *m, floating *v, intp_t n,
                   floating lr_t, floating one_minus_b1, floating one_minus_b2, floating eps,
                   floating decay, int num_threads) noexcept nogil:
    cdef intp_t chunks = (n + OPTIM_CHUNK - 1) // OPTIM_CHUNK
    cdef intp_t c, s
    if num_threads > 1:
        for c in prange(chunks, schedule='static', num_threads=num_threads):
            s = c * OPTIM_CHUNK
            _adam_chunk(param + s, grad + s, m + s, v + s, _chunk_length(n, s), lr_t,
                        one_minus_b1, one_minus_b2, eps, decay)
    else:  # no region: libgomp allocates a team even for one thread
        for c in range(chunks):
            s = c * OPTIM_CHUNK
            _adam_chunk(param + s, grad + s, m + s, v + s, _chunk_length(n, s), lr_t,
                        one_minus_b1, one_minus_b2, eps, decay)


# ---------------------------------------------------------------------------------------------
# RMSprop

cdef inline void _rmsprop_chunk(floating *param, const floating *grad, floating *velocity,
                                floating *momentum_buf, floating *average_grad, intp_t n,
                                floating lr, floating rho, floating one_minus_rho,
                                floating momentum, floating eps, floating decay) noexcept nogil:
    if floating is float:
        cnn_rmsprop_chunk_f32(param, grad, velocity, momentum_buf, average_grad, n, lr, rho,
                              one_minus_rho, momentum, eps, decay)
    else:
        cnn_rmsprop_chunk_f64(param, grad, velocity, momentum_buf, average_grad, n, lr, rho,
                              one_minus_rho, momentum, eps, decay)

cdef void rmsprop_raw(floating *param, const floating *grad, floating *velocity,
                      floating *momentum_buf, floating *average_grad, intp_t n, floating lr,
                      floating rho, floating one_minus_rho, floating momentum, floating eps,
                      floating decay, int num_threads) noexcept nogil:
    cdef intp_t chunks = (n + OPTIM_CHUNK - 1) // OPTIM_CHUNK
    cdef intp_t c, s
    if num_threads > 1:
        for c in prange(chunks, schedule='static', num_threads=num_threads):
            s = c * OPTIM_CHUNK
            _rmsprop_chunk(param + s, grad + s, velocity + s,
                           NULL if momentum_buf == NULL else momentum_buf + s,
                           NULL if average_grad == NULL else average_grad + s,
                           _chunk_length(n, s), lr, rho, one_minus_rho, momentum, eps, decay)
    else:  # no region: libgomp allocates a team even for one thread
        for c in range(chunks):
            s = c * OPTIM_CHUNK
            _rmsprop_chunk(param + s, grad + s, velocity + s,
                           NULL if momentum_buf == NULL else momentum_buf + s,
                           NULL if average_grad == NULL else average_grad + s,
                           _chunk_length(n, s), lr, rho, one_minus_rho, momentum, eps, decay)


# ---------------------------------------------------------------------------------------------
# Adagrad

cdef inline void _adagrad_chunk(floating *param, const floating *grad, floating *accumulator,
                                intp_t n, floating lr, floating eps,
                                floating decay) noexcept nogil:
    if floating is float:
        cnn_adagrad_chunk_f32(param, grad, accumulator, n, lr, eps, decay)
    else:
        cnn_adagrad_chunk_f64(param, grad, accumulator, n, lr, eps, decay)

cdef void adagrad_raw(floating *param, const floating *grad, floating *accumulator, intp_t n,
                      floating lr, floating eps, floating decay, int num_threads) noexcept nogil:
    cdef intp_t chunks = (n + OPTIM_CHUNK - 1) // OPTIM_CHUNK
    cdef intp_t c, s
    if num_threads > 1:
        for c in prange(chunks, schedule='static', num_threads=num_threads):
            s = c * OPTIM_CHUNK
            _adagrad_chunk(param + s, grad + s, accumulator + s, _chunk_length(n, s), lr, eps,
                           decay)
    else:  # no region: libgomp allocates a team even for one thread
        for c in range(chunks):
            s = c * OPTIM_CHUNK
            _adagrad_chunk(param + s, grad + s, accumulator + s, _chunk_length(n, s), lr, eps,
                           decay)


# ---------------------------------------------------------------------------------------------
# Python API: the validation of the NumPy reference, scalars in double, one kernel call.

def _check_param_and_grad(param, grad):
    _checks.check_array(param, "param")
    _checks.check_contiguous(param, "param")
    if not param.flags.writeable:
        raise ValueError("param is read-only")
    _checks.check_like(grad, "grad", param, "param")


def _check_state(state, name, param, needed_because="by this optimizer"):
    """A state array (slot) of the optimizer: like param, and writable."""
    if state is None:
        raise ValueError(f"{name} is required {needed_because}, got None")
    _checks.check_like(state, name, param, "param")
    if not state.flags.writeable:
        raise ValueError(f"{name} is read-only")


cdef void *_data_or_null(x):
    return NULL if x is None else cnp.PyArray_DATA(x)


def sgd_update(param, grad, velocity, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """Stochastic gradient descent, with optional (Nesterov) momentum, in place.

        v = momentum * v - lr * g
        param += (momentum * v - lr * g) if nesterov else v

    param, grad, velocity: one shape and float dtype, C-contiguous. velocity may be None when
    momentum == 0 (then param -= lr * g).
    """
    _check_param_and_grad(param, grad)
    lr = _checks.check_finite_scalar(lr, "lr")
    momentum = _checks.check_finite_scalar(momentum, "momentum")
    weight_decay = _checks.check_finite_scalar(weight_decay, "weight_decay")
    if velocity is not None or momentum != 0.0:
        _check_state(velocity, "velocity", param, "when momentum != 0")
    cdef intp_t n = param.size
    cdef int nthreads = threads_for_elements(n)
    cdef bint nest = bool(nesterov)
    cdef double lr64 = lr, mom64 = momentum, decay64 = lr * weight_decay
    cdef float lr32 = lr64, mom32 = mom64, decay32 = decay64
    cdef void *p_ptr = cnp.PyArray_DATA(param)
    cdef void *g_ptr = cnp.PyArray_DATA(grad)
    cdef void *v_ptr = _data_or_null(velocity)
    if param.dtype == np.float32:
        with nogil:
            sgd_raw[float](<float *>p_ptr, <float *>g_ptr, <float *>v_ptr, n, lr32, mom32, nest,
                           decay32, nthreads)
    else:
        with nogil:
            sgd_raw[double](<double *>p_ptr, <double *>g_ptr, <double *>v_ptr, n, lr64, mom64,
                            nest, decay64, nthreads)


def adam_update(param, grad, m, v, *, lr, step, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                weight_decay=0.0):
    """Adam (AdamW when weight_decay > 0), in place. ``step`` counts from 1.

        m += (g - m) (1 - beta_1);  v += (g^2 - v) (1 - beta_2)
        alpha = lr sqrt(1 - beta_2^step) / (1 - beta_1^step)
        param -= alpha m / (sqrt(v) + epsilon)

    param, grad, m, v: one shape and float dtype, C-contiguous.
    """
    _check_param_and_grad(param, grad)
    _check_state(m, "m", param)
    _check_state(v, "v", param)
    lr = _checks.check_finite_scalar(lr, "lr")
    step = _checks.check_positive_int(step, "step")
    beta_1 = _checks.check_finite_scalar(beta_1, "beta_1")
    beta_2 = _checks.check_finite_scalar(beta_2, "beta_2")
    epsilon = _checks.check_finite_scalar(epsilon, "epsilon")
    weight_decay = _checks.check_finite_scalar(weight_decay, "weight_decay")
    alpha = lr * math.sqrt(1 - beta_2**step) / (1 - beta_1**step)
    cdef intp_t n = param.size
    cdef int nthreads = threads_for_elements(n)
    cdef double alpha64 = alpha, omb1_64 = 1 - beta_1, omb2_64 = 1 - beta_2
    cdef double eps64 = epsilon, decay64 = lr * weight_decay
    cdef float alpha32 = alpha64, omb1_32 = omb1_64, omb2_32 = omb2_64
    cdef float eps32 = eps64, decay32 = decay64
    cdef void *p_ptr = cnp.PyArray_DATA(param)
    cdef void *g_ptr = cnp.PyArray_DATA(grad)
    cdef void *m_ptr = cnp.PyArray_DATA(m)
    cdef void *v_ptr = cnp.PyArray_DATA(v)
    if param.dtype == np.float32:
        with nogil:
            adam_raw[float](<float *>p_ptr, <float *>g_ptr, <float *>m_ptr, <float *>v_ptr, n,
                            alpha32, omb1_32, omb2_32, eps32, decay32, nthreads)
    else:
        with nogil:
            adam_raw[double](<double *>p_ptr, <double *>g_ptr, <double *>m_ptr, <double *>v_ptr,
                             n, alpha64, omb1_64, omb2_64, eps64, decay64, nthreads)


def rmsprop_update(param, grad, velocity, *, lr, rho=0.9, momentum=0.0, epsilon=1e-7,
                   momentum_buf=None, centered=False, average_grad=None, weight_decay=0.0):
    """RMSprop, optionally centered and with momentum, in place.

        v = rho v + (1 - rho) g^2
        centered:  ag = rho ag + (1 - rho) g;  denom = v - ag^2 + epsilon
        otherwise: denom = v + epsilon
        inc = lr g / sqrt(denom)
        momentum > 0: mb = momentum mb + inc; param -= mb    otherwise: param -= inc

    momentum_buf: required when momentum > 0; average_grad: required when centered.
    """
    _check_param_and_grad(param, grad)
    _check_state(velocity, "velocity", param)
    lr = _checks.check_finite_scalar(lr, "lr")
    rho = _checks.check_finite_scalar(rho, "rho")
    momentum = _checks.check_finite_scalar(momentum, "momentum")
    epsilon = _checks.check_finite_scalar(epsilon, "epsilon")
    weight_decay = _checks.check_finite_scalar(weight_decay, "weight_decay")
    if momentum > 0:
        _check_state(momentum_buf, "momentum_buf", param, "when momentum > 0")
    else:
        momentum_buf = None
    if centered:
        _check_state(average_grad, "average_grad", param, "when centered")
    else:
        average_grad = None
    cdef intp_t n = param.size
    cdef int nthreads = threads_for_elements(n)
    cdef double lr64 = lr, rho64 = rho, omr64 = 1 - rho, mom64 = momentum, eps64 = epsilon
    cdef double decay64 = lr * weight_decay
    cdef float lr32 = lr64, rho32 = rho64, omr32 = omr64, mom32 = mom64, eps32 = eps64
    cdef float decay32 = decay64
    cdef void *p_ptr = cnp.PyArray_DATA(param)
    cdef void *g_ptr = cnp.PyArray_DATA(grad)
    cdef void *v_ptr = cnp.PyArray_DATA(velocity)
    cdef void *mb_ptr = _data_or_null(momentum_buf)
    cdef void *ag_ptr = _data_or_null(average_grad)
    if param.dtype == np.float32:
        with nogil:
            rmsprop_raw[float](<float *>p_ptr, <float *>g_ptr, <float *>v_ptr, <float *>mb_ptr,
                               <float *>ag_ptr, n, lr32, rho32, omr32, mom32, eps32, decay32,
                               nthreads)
    else:
        with nogil:
            rmsprop_raw[double](<double *>p_ptr, <double *>g_ptr, <double *>v_ptr,
                                <double *>mb_ptr, <double *>ag_ptr, n, lr64, rho64, omr64,
                                mom64, eps64, decay64, nthreads)


def adagrad_update(param, grad, accumulator, *, lr, epsilon=1e-7, weight_decay=0.0):
    """Adagrad, in place: ``acc += g^2; param -= lr g / sqrt(acc + epsilon)``.

    accumulator: initialised by the caller (Keras: initial_accumulator_value = 0.1).
    """
    _check_param_and_grad(param, grad)
    _check_state(accumulator, "accumulator", param)
    lr = _checks.check_finite_scalar(lr, "lr")
    epsilon = _checks.check_finite_scalar(epsilon, "epsilon")
    weight_decay = _checks.check_finite_scalar(weight_decay, "weight_decay")
    cdef intp_t n = param.size
    cdef int nthreads = threads_for_elements(n)
    cdef double lr64 = lr, eps64 = epsilon, decay64 = lr * weight_decay
    cdef float lr32 = lr64, eps32 = eps64, decay32 = decay64
    cdef void *p_ptr = cnp.PyArray_DATA(param)
    cdef void *g_ptr = cnp.PyArray_DATA(grad)
    cdef void *a_ptr = cnp.PyArray_DATA(accumulator)
    if param.dtype == np.float32:
        with nogil:
            adagrad_raw[float](<float *>p_ptr, <float *>g_ptr, <float *>a_ptr, n, lr32, eps32,
                               decay32, nthreads)
    else:
        with nogil:
            adagrad_raw[double](<double *>p_ptr, <double *>g_ptr, <double *>a_ptr, n, lr64, eps64,
                                decay64, nthreads)
