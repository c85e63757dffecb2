"""General matrix multiply, BLIS style: packing and blocking in ``include/gemm_driver.h``,
one register-tiled micro-kernel per instruction set (``include/microkernel_*.h``) chosen
once at import from what the CPU supports. No BLAS is called."""
import os

import numpy as np
cimport numpy as cnp
from libc.math cimport isfinite

from cnn_core._typedefs cimport floating, intp_t
from cnn_core._threads cimport get_num_threads_c
from cnn_core import _checks

cnp.import_array()

cdef extern from "gemm_driver.h" nogil:
    void cnn_act_math_init()  # act_vec_math.h: the AVX2 activations where the CPU has them
    int cnn_act_vec_enabled()
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
        int *row_nonfinite
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
        int *row_nonfinite
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
    return gemm_flag_nonfinite_raw(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, rs_c,
                                   cs_c, bias, z_out, rs_z, act, act_param, NULL, num_threads)


cdef int gemm_flag_nonfinite_raw(intp_t m, intp_t n, intp_t k, floating alpha,
                                 const floating *a, intp_t rs_a, intp_t cs_a,
                                 const floating *b, intp_t rs_b, intp_t cs_b, floating beta,
                                 floating *c, intp_t rs_c, intp_t cs_c,
                                 const floating *bias, floating *z_out, intp_t rs_z,
                                 int act, floating act_param, int *row_nonfinite,
                                 int num_threads) noexcept nogil:
    cdef cnn_epilogue_f32 ep32
    cdef cnn_epilogue_f64 ep64
    cdef bint has_epilogue = (bias != NULL or z_out != NULL or act != 0
                              or row_nonfinite != NULL)
    if floating is float:
        ep32.bias = bias
        ep32.z_out = z_out
        ep32.rs_z = rs_z
        ep32.act = act
        ep32.param = act_param
        ep32.d_act = 0
        ep32.row_nonfinite = row_nonfinite
        return cnn_gemm_f32(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, rs_c, cs_c,
                            &ep32 if has_epilogue else NULL, num_threads)
    else:
        ep64.bias = bias
        ep64.z_out = z_out
        ep64.rs_z = rs_z
        ep64.act = act
        ep64.param = act_param
        ep64.d_act = 0
        ep64.row_nonfinite = row_nonfinite
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
        ep32.row_nonfinite = NULL
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
        ep64.row_nonfinite = NULL
        return cnn_gemm_f64(m, n, k, 1, a, rs_a, cs_a, b, rs_b, cs_b, 0, c, rs_c, 1, &ep64,
                            num_threads)


def _element_strides(x, name):
    """Strides of a 2-D array in elements (a transposed view just swaps them)."""
    itemsize = x.itemsize
    s0, s1 = x.strides
    if s0 % itemsize or s1 % itemsize:
        raise ValueError(f"{name} has strides {x.strides} that are not whole elements")
    return s0 // itemsize, s1 // itemsize


cdef bint _plain_matrix(object x, int type_num):
    """x is exactly an ndarray (not a subclass), 2-D, of dtype type_num, with strides in whole
    elements."""
    if type(x) is not np.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>x
    if cnp.PyArray_NDIM(arr) != 2 or cnp.PyArray_TYPE(arr) != type_num:
        return False
    cdef intp_t item = cnp.PyArray_ITEMSIZE(arr)
    return cnp.PyArray_STRIDES(arr)[0] % item == 0 and cnp.PyArray_STRIDES(arr)[1] % item == 0


cdef void _byte_bounds(cnp.ndarray x, intp_t *lo, intp_t *hi) noexcept:
    """[lo, hi): the bytes a non-empty 2-D array can touch (numpy's may_share_memory bounds)."""
    cdef intp_t start = <intp_t>cnp.PyArray_DATA(x), end = start, off
    cdef int d
    for d in range(2):
        off = (cnp.PyArray_DIMS(x)[d] - 1) * cnp.PyArray_STRIDES(x)[d]
        if off > 0:
            end += off
        else:
            start += off
    lo[0] = start
    hi[0] = end + cnp.PyArray_ITEMSIZE(x)


cdef bint _disjoint(cnp.ndarray x, cnp.ndarray y) noexcept:
    cdef intp_t x0, x1, y0, y1
    if cnp.PyArray_SIZE(x) == 0 or cnp.PyArray_SIZE(y) == 0:
        return True
    _byte_bounds(x, &x0, &x1)
    _byte_bounds(y, &y0, &y1)
    return x1 <= y0 or y1 <= x0


cdef bint _valid_at_a_glance(object a, object b, bint trans_a, bint trans_b, object alpha,
                             object beta, object out):
    """True when the operands are plainly valid: float64 or float32 matrices of one dtype,
    matching inner sizes, Python float scalars, and an out of the right shape that is writable,
    has no zero stride and lies apart from a and b. Everything else (including every error)
    goes through the full checks, so this changes speed only: a few C tests instead of ~5 us of
    Python checks per call, which a 100 us GEMM notices."""
    if type(a) is not np.ndarray:
        return False
    cdef int type_num = cnp.PyArray_TYPE(<cnp.ndarray>a)
    if type_num != cnp.NPY_FLOAT32 and type_num != cnp.NPY_FLOAT64:
        return False
    if not _plain_matrix(a, type_num) or not _plain_matrix(b, type_num):
        return False
    if type(alpha) is not float or type(beta) is not float:
        return False
    if not (isfinite(<double>alpha) and isfinite(<double>beta)):
        return False
    cdef cnp.ndarray arr_a = <cnp.ndarray>a, arr_b = <cnp.ndarray>b, arr_c
    cdef intp_t m = cnp.PyArray_DIMS(arr_a)[1 if trans_a else 0]
    cdef intp_t k = cnp.PyArray_DIMS(arr_a)[0 if trans_a else 1]
    cdef intp_t k_b = cnp.PyArray_DIMS(arr_b)[1 if trans_b else 0]
    cdef intp_t n = cnp.PyArray_DIMS(arr_b)[0 if trans_b else 1]
    if k != k_b:
        return False
    if out is None:
        return True
    if not _plain_matrix(out, type_num):
        return False
    arr_c = <cnp.ndarray>out
    if cnp.PyArray_DIMS(arr_c)[0] != m or cnp.PyArray_DIMS(arr_c)[1] != n:
        return False
    if not cnp.PyArray_ISWRITEABLE(arr_c):
        return False
    if cnp.PyArray_SIZE(arr_c) > 1 and (cnp.PyArray_STRIDES(arr_c)[0] == 0
                                        or cnp.PyArray_STRIDES(arr_c)[1] == 0):
        return False
    return _disjoint(arr_c, arr_a) and _disjoint(arr_c, arr_b)


def gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None):
    """``alpha * op(a) @ op(b) + beta * out`` with ``op(x) = x.T if trans else x``.

    a: (M, K) or (K, M) if trans_a; b: (K, N) or (N, K) if trans_b; float32 or float64,
    any strides (views, transposes, Fortran order: nothing is copied).
    out: (M, N), same dtype, any non-overlapping strides; allocated when None. With beta == 0
    the old content of ``out`` is never read. Returns out.
    """
    cdef bint ta = bool(trans_a), tb = bool(trans_b)
    if _valid_at_a_glance(a, b, ta, tb, alpha, beta, out):
        return _gemm_checked(a, b, ta, tb, alpha, beta, out)
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
    return _gemm_checked(a, b, ta, tb, alpha, beta, out)


cdef object _gemm_checked(cnp.ndarray a, cnp.ndarray b, bint trans_a, bint trans_b,
                          double alpha, double beta, object out):
    """gemm on validated operands (out may be None: allocated, beta ignored)."""
    cdef intp_t item = cnp.PyArray_ITEMSIZE(a)
    cdef intp_t M = cnp.PyArray_DIMS(a)[1 if trans_a else 0]
    cdef intp_t K = cnp.PyArray_DIMS(a)[0 if trans_a else 1]
    cdef intp_t N = cnp.PyArray_DIMS(b)[0 if trans_b else 1]
    cdef intp_t ra = cnp.PyArray_STRIDES(a)[0] // item, ca = cnp.PyArray_STRIDES(a)[1] // item
    cdef intp_t rb = cnp.PyArray_STRIDES(b)[0] // item, cb = cnp.PyArray_STRIDES(b)[1] // item
    if trans_a:
        ra, ca = ca, ra
    if trans_b:
        rb, cb = cb, rb
    if out is None:
        out = np.empty((M, N), dtype=a.dtype)
        beta = 0.0
    cdef cnp.ndarray c = <cnp.ndarray>out
    cdef intp_t rc = cnp.PyArray_STRIDES(c)[0] // item, cc = cnp.PyArray_STRIDES(c)[1] // item
    cdef int nthreads = get_num_threads_c()
    cdef int status
    cdef float alpha32 = alpha, beta32 = beta
    cdef double alpha64 = alpha, beta64 = beta
    cdef float *a32
    cdef float *b32
    cdef float *c32
    cdef double *a64
    cdef double *b64
    cdef double *c64
    if cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32:
        a32 = <float *>cnp.PyArray_DATA(a)
        b32 = <float *>cnp.PyArray_DATA(b)
        c32 = <float *>cnp.PyArray_DATA(c)
        with nogil:
            status = gemm_raw[float](M, N, K, alpha32, a32, ra, ca, b32, rb, cb, beta32,
                                     c32, rc, cc, NULL, NULL, 0, 0, 0, nthreads)
    else:
        a64 = <double *>cnp.PyArray_DATA(a)
        b64 = <double *>cnp.PyArray_DATA(b)
        c64 = <double *>cnp.PyArray_DATA(c)
        with nogil:
            status = gemm_raw[double](M, N, K, alpha64, a64, ra, ca, b64, rb, cb, beta64,
                                      c64, rc, cc, NULL, NULL, 0, 0, 0, nthreads)
    if status != 0:
        raise MemoryError("gemm: could not allocate the packing workspace")
    return out


cdef int gemm_kernel_level() noexcept nogil:
    return cnn_kernel_in_use


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


# The activations' AVX2 spellings, where the CPU has them (same bits either way).
cnn_act_math_init()


def _act_vec_enabled():
    """For tests: whether this module's activations run their AVX2 spellings."""
    return bool(cnn_act_vec_enabled())
