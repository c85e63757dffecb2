"""Reductions used by training: deterministic sums of squares (clipnorm / global_clipnorm)
and the all-finite check of input batches.

The summation tree is fixed by the data size alone: chunks of SUM_CHUNK elements, each summed
with four interleaved float64 accumulators (combined in a fixed order), then the chunk sums
added serially in index order. Threads only decide who computes which chunk.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange
from libc.stdlib cimport malloc, free

from cnn_core._typedefs cimport floating, intp_t
from cnn_core._threads cimport threads_for_elements
from cnn_core import _checks

cnp.import_array()

cdef extern from "finite_check.h" nogil:
    bint cnn_all_finite_f32(const float *x, intp_t n)
    bint cnn_all_finite_f64(const double *x, intp_t n)

cdef enum:
    SUM_CHUNK = 4096
    FINITE_CHUNK = 65536


cdef inline double _chunk_sum_of_squares(const floating *x, intp_t n) noexcept nogil:
    # Four accumulators break the add latency chain (an ordered sum cannot be vectorised
    # without -ffast-math); their order is part of the fixed summation tree.
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, v
    cdef intp_t i = 0
    cdef intp_t n4 = n - n % 4
    while i < n4:
        v = x[i]
        s0 += v * v
        v = x[i + 1]
        s1 += v * v
        v = x[i + 2]
        s2 += v * v
        v = x[i + 3]
        s3 += v * v
        i += 4
    while i < n:
        v = x[i]
        s0 += v * v
        i += 1
    return (s0 + s1) + (s2 + s3)


cdef intp_t sum_of_squares_partials(intp_t n) noexcept nogil:
    return (n + SUM_CHUNK - 1) // SUM_CHUNK


cdef double sum_of_squares_raw(const floating *x, intp_t n, int num_threads,
                               double *workspace) noexcept nogil:
    cdef intp_t chunks = sum_of_squares_partials(n)
    cdef double *partial = NULL
    cdef double total = 0.0
    cdef intp_t c, start, k
    if num_threads > 1:
        partial = workspace if workspace != NULL else <double *>malloc(chunks * sizeof(double))
    if partial == NULL:
        # One thread (or no memory for the partials): the same chunks added in the same order
        # (same bits), serially and outside any parallel region (libgomp would allocate a team).
        for k in range(chunks):
            start = k * SUM_CHUNK
            total += _chunk_sum_of_squares(x + start, min(n - start, <intp_t>SUM_CHUNK))
        return total
    for c in prange(chunks, schedule='static', num_threads=num_threads):
        start = c * SUM_CHUNK
        partial[c] = _chunk_sum_of_squares(x + start, min(n - start, <intp_t>SUM_CHUNK))
    for k in range(chunks):
        total += partial[k]
    if workspace == NULL:
        free(partial)
    return total


def sum_of_squares(x):
    """``sum(x**2)`` as a Python float, accumulated in float64 in a fixed order.

    x: any shape, float32 or float64, not empty (a strided view is copied first).
    Used for clipnorm / global_clipnorm.
    """
    _checks.check_array(x, "x")
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    cdef intp_t n = x.size
    cdef int nthreads = threads_for_elements(n)
    cdef void *x_ptr = cnp.PyArray_DATA(x)
    cdef double total
    if x.dtype == np.float32:
        with nogil:
            total = sum_of_squares_raw[float](<float *>x_ptr, n, nthreads, NULL)
    else:
        with nogil:
            total = sum_of_squares_raw[double](<double *>x_ptr, n, nthreads, NULL)
    return float(total)


def all_finite(x):
    """True when no element of x is NaN or +-inf (one pass, no temporary array, GIL released).

    x: any shape, float32 or float64; a strided view is copied first. Empty arrays are finite.
    """
    if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be a float32 or float64 ndarray, got "
                        f"{type(x).__name__ if not isinstance(x, np.ndarray) else x.dtype}")
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    cdef intp_t n = x.size
    cdef char *x_ptr = <char *>cnp.PyArray_DATA(x)
    cdef intp_t itemsize = x.itemsize
    cdef intp_t chunks = (n + FINITE_CHUNK - 1) // FINITE_CHUNK
    cdef intp_t c, start, length
    cdef int is_f32 = x.dtype == np.float32
    cdef int n_bad = 0
    # Chunks checked in parallel: a count of bad chunks has no order to preserve.
    for c in prange(chunks, schedule='static', nogil=True,
                    num_threads=threads_for_elements(n)):
        start = c * FINITE_CHUNK
        length = min(n - start, <intp_t>FINITE_CHUNK)
        if is_f32:
            n_bad += not cnn_all_finite_f32(<const float *>(x_ptr + start * itemsize), length)
        else:
            n_bad += not cnn_all_finite_f64(<const double *>(x_ptr + start * itemsize), length)
    return n_bad == 0
