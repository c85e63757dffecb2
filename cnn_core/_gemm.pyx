"""General matrix multiply, BLIS style: packing and blocking in ``include/gemm_driver.h``,
one register-tiled micro-kernel per instruction set (``include/microkernel_*.h``) chosen
once at import from what the CPU supports. No BLAS is called."""
import os

import numpy as np
cimport numpy as cnp

from cnn_core._typedefs cimport floating, intp_t
from cnn_core._threads cimport get_num_threads_c
from cnn_core import _checks

cnp.import_array()

cdef extern from "gemm_driver.h" nogil:
    ctypedef struct cnn_epilogue_f32:
        const float *bias
        float *z_out
        intp_t rs_z
        int act
        float param
        int d_act
        const float *d_z
        const float *d_a
        intp_t rs_d
        float d_param
    ctypedef struct cnn_epilogue_f64:
        const double *bias
        double *z_out
        intp_t rs_z
        int act
        double param
        int d_act
        const double *d_z
        const double *d_a
        intp_t rs_d
        double d_param
    int cnn_gemm_f32(intp_t M, intp_t N, intp_t K, float alpha, const float *A, intp_t rs_a,
                     intp_t cs_a, const float *B, intp_t rs_b, intp_t cs_b, float beta,
                     float *C, intp_t rs_c, intp_t cs_c, const cnn_epilogue_f32 *ep,
                     int nthreads)
    int cnn_gemm_f64(intp_t M, intp_t N, intp_t K, double alpha, const double *A, intp_t rs_a,
                     intp_t cs_a, const double *B, intp_t rs_b, intp_t cs_b, double beta,
                     double *C, intp_t rs_c, intp_t cs_c, const cnn_epilogue_f64 *ep,
                     int nthreads)
    int cnn_gemm_select(int requested)
    int cnn_cpu_best_kernel()
    int cnn_kernel_in_use
    int CNN_KERNEL_REFERENCE, CNN_KERNEL_AVX2, CNN_KERNEL_AVX512

KERNEL_NAMES = ("reference", "avx2", "avx512")


cdef int gemm_raw(intp_t m, intp_t n, intp_t k, floating alpha,
                  const floating *a, intp_t rs_a, intp_t cs_a,
                  const floating *b, intp_t rs_b, intp_t cs_b, floating beta,
                  floating *c, intp_t rs_c, intp_t cs_c,
                  const floating *bias, floating *z_out, intp_t rs_z,
                  int act, floating act_param, int num_threads) noexcept nogil:
    cdef cnn_epilogue_f32 ep32
    cdef cnn_epilogue_f64 ep64
    cdef bint has_epilogue = bias != NULL or z_out != NULL or act != 0
    if floating is float:
        ep32.bias = bias
        ep32.z_out = z_out
        ep32.rs_z = rs_z
        ep32.act = act
        ep32.param = act_param
        ep32.d_act = 0
        return cnn_gemm_f32(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, rs_c, cs_c,
                            &ep32 if has_epilogue else NULL, num_threads)
    else:
        ep64.bias = bias
        ep64.z_out = z_out
        ep64.rs_z = rs_z
        ep64.act = act
        ep64.param = act_param
        ep64.d_act = 0
        return cnn_gemm_f64(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, rs_c, cs_c,
                            &ep64 if has_epilogue else NULL, num_threads)


cdef int gemm_act_backward_raw(intp_t m, intp_t n, intp_t k,
                               const floating *a, intp_t rs_a, intp_t cs_a,
                               const floating *b, intp_t rs_b, intp_t cs_b,
                               floating *c, intp_t rs_c, int d_act, const floating *d_z,
                               const floating *d_a, intp_t rs_d, floating d_param,
                               int num_threads) noexcept nogil:
    cdef cnn_epilogue_f32 ep32
    cdef cnn_epilogue_f64 ep64
    if floating is float:
        ep32.bias = NULL
        ep32.z_out = NULL
        ep32.act = 0
        ep32.d_act = d_act
        ep32.d_z = d_z
        ep32.d_a = d_a
        ep32.rs_d = rs_d
        ep32.d_param = d_param
        return cnn_gemm_f32(m, n, k, 1, a, rs_a, cs_a, b, rs_b, cs_b, 0, c, rs_c, 1, &ep32,
                            num_threads)
    else:
        ep64.bias = NULL
        ep64.z_out = NULL
        ep64.act = 0
        ep64.d_act = d_act
        ep64.d_z = d_z
        ep64.d_a = d_a
        ep64.rs_d = rs_d
        ep64.d_param = d_param
        return cnn_gemm_f64(m, n, k, 1, a, rs_a, cs_a, b, rs_b, cs_b, 0, c, rs_c, 1, &ep64,
                            num_threads)


def _element_strides(x, name):
    """Strides of a 2-D array in elements (a transposed view just swaps them)."""
    itemsize = x.itemsize
    s0, s1 = x.strides
    if s0 % itemsize or s1 % itemsize:
        raise ValueError(f"{name} has strides {x.strides} that are not whole elements")
    return s0 // itemsize, s1 // itemsize


def gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None):
    """``alpha * op(a) @ op(b) + beta * out`` with ``op(x) = x.T if trans else x``.

    a: (M, K) or (K, M) if trans_a; b: (K, N) or (N, K) if trans_b; float32 or float64,
    any strides (views, transposes, Fortran order: nothing is copied).
    out: (M, N), same dtype, any non-overlapping strides; allocated when None. With beta == 0
    the old content of ``out`` is never read. Returns out.
    """
    _checks.check_array(a, "a", ndim=2, allow_empty=True)
    _checks.check_array(b, "b", ndim=2, dtype=a.dtype, allow_empty=True)
    alpha = _checks.check_finite_scalar(alpha, "alpha")
    beta = _checks.check_finite_scalar(beta, "beta")
    rs_a, cs_a = _element_strides(a, "a")
    rs_b, cs_b = _element_strides(b, "b")
    m, k = a.shape
    if trans_a:
        m, k = k, m
        rs_a, cs_a = cs_a, rs_a
    k_b, n = b.shape
    if trans_b:
        k_b, n = n, k_b
        rs_b, cs_b = cs_b, rs_b
    if k != k_b:
        raise ValueError(
            f"gemm: op(a) has shape ({m}, {k}) but op(b) has shape ({k_b}, {n}): "
            f"inner dimensions {k} and {k_b} differ"
        )
    if out is None:
        out = np.empty((m, n), dtype=a.dtype)
        beta = 0.0
    else:
        _checks.check_out(out, "out", (m, n), a.dtype, contiguous=False)
        if out.size > 1 and 0 in out.strides:
            raise ValueError("out has a zero stride: its elements overlap")
        if np.may_share_memory(out, a) or np.may_share_memory(out, b):
            raise ValueError("out must not share memory with a or b")
    rs_c, cs_c = _element_strides(out, "out")
    cdef int nthreads = get_num_threads_c()
    cdef int status
    cdef intp_t M = m, N = n, K = k
    cdef intp_t ra = rs_a, ca = cs_a, rb = rs_b, cb = cs_b, rc = rs_c, cc = cs_c
    cdef float alpha32 = alpha, beta32 = beta
    cdef double alpha64 = alpha, beta64 = beta
    cdef float *a32
    cdef float *b32
    cdef float *c32
    cdef double *a64
    cdef double *b64
    cdef double *c64
    if a.dtype == np.float32:
        a32 = <float *>cnp.PyArray_DATA(a)
        b32 = <float *>cnp.PyArray_DATA(b)
        c32 = <float *>cnp.PyArray_DATA(out)
        with nogil:
            status = gemm_raw[float](M, N, K, alpha32, a32, ra, ca, b32, rb, cb, beta32,
                                     c32, rc, cc, NULL, NULL, 0, 0, 0, nthreads)
    else:
        a64 = <double *>cnp.PyArray_DATA(a)
        b64 = <double *>cnp.PyArray_DATA(b)
        c64 = <double *>cnp.PyArray_DATA(out)
        with nogil:
            status = gemm_raw[double](M, N, K, alpha64, a64, ra, ca, b64, rb, cb, beta64,
                                      c64, rc, cc, NULL, NULL, 0, 0, 0, nthreads)
    if status != 0:
        raise MemoryError("gemm: could not allocate the packing workspace")
    return out


def kernel_name():
    """The micro-kernel family in use: 'avx512', 'avx2' or 'reference'."""
    return KERNEL_NAMES[cnn_kernel_in_use]


def cpu_kernels():
    """Kernel families this CPU can run, slowest first."""
    return KERNEL_NAMES[: cnn_cpu_best_kernel() + 1]


def _select_kernel(name=None):
    """Use kernel family ``name`` (capped at what the CPU has; None = the best). For tests and
    debugging: not thread-safe while GEMMs run. Returns the name in use."""
    if name is None or name == "":
        cnn_gemm_select(-1)
    else:
        if name not in KERNEL_NAMES:
            raise ValueError(f"unknown kernel {name!r}; expected one of {KERNEL_NAMES}")
        cnn_gemm_select(KERNEL_NAMES.index(name))
    return kernel_name()


# PYNN_KERNEL=reference|avx2|avx512 forces a family (e.g. to compare paths on one machine).
_select_kernel(os.environ.get("PYNN_KERNEL") or None)
