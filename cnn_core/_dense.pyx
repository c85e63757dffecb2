"""Dense layer, forward and backward, on the GEMM of ``_gemm``.

forward:  z = x W + b, a = f(z): one GEMM whose tile write-back adds the bias, keeps z and
          applies f while the tile is still in L1 (epilogue fusion).
backward: dz = grad * f'(z) (one pass, fused with nothing else to read), then
          dW = x^T dz and dx = dz W^T as GEMMs that read x and W through strides (no transposed
          copies), and db = column sums of dz.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange

from cnn_core._typedefs cimport floating, intp_t
from cnn_core._threads cimport get_num_threads_c, threads_for_elements
from cnn_core._gemm cimport gemm_raw, gemm_act_backward_raw
from cnn_core._gemm import _element_strides
from cnn_core import _checks

cnp.import_array()

cdef extern from "activation_math.h" nogil:
    void cnn_act_math_init()  # act_vec_math.h: the AVX2 activations where the CPU has them
    int cnn_act_vec_enabled()
    void cnn_act_backward_f32(int act, const float *g, const float *z, const float *a,
                              float *dz, intp_t n, float param)
    void cnn_act_backward_f64(int act, const double *g, const double *z, const double *a,
                              double *dz, intp_t n, double param)

# Column block for db: 64 accumulators stay in registers/L1 while the rows stream by.
cdef enum:
    COLUMN_BLOCK = 64


cdef inline void _activation_grad_row(const floating *grad, const floating *z,
                                      const floating *a, floating *dz, intp_t cols, int act,
                                      floating param) noexcept nogil:
    if floating is float:
        cnn_act_backward_f32(act, grad, z, a, dz, cols, param)
    else:
        cnn_act_backward_f64(act, grad, z, a, dz, cols, param)


cdef void activation_grad_rows(const floating *grad, const floating *z, const floating *a,
                               floating *dz, intp_t rows, intp_t cols, int act,
                               floating param, int num_threads) noexcept nogil:
    cdef intp_t i, at
    if num_threads > 1:
        for i in prange(rows, schedule='static', num_threads=num_threads):
            at = i * cols
            _activation_grad_row(grad + at, z + at, a + at, dz + at, cols, act, param)
    else:  # no region: libgomp allocates a team even for one thread
        for i in range(rows):
            at = i * cols
            _activation_grad_row(grad + at, z + at, a + at, dz + at, cols, act, param)


cdef inline void column_block_sums(const floating *dz, floating *db, intp_t rows,
                                   intp_t cols, intp_t j0, intp_t width) noexcept nogil:
    # Own function so the accumulators are private to the thread running this block.
    cdef double acc[COLUMN_BLOCK]
    cdef intp_t i, j
    for j in range(width):
        acc[j] = 0
    for i in range(rows):
        for j in range(width):
            acc[j] += dz[i * cols + j0 + j]
    for j in range(width):
        db[j0 + j] = <floating>acc[j]


cdef void column_sums(const floating *dz, floating *db, intp_t rows, intp_t cols,
                      int num_threads) noexcept nogil:
    cdef intp_t blocks = (cols + COLUMN_BLOCK - 1) // COLUMN_BLOCK
    cdef intp_t blk
    if num_threads > 1:
        for blk in prange(blocks, schedule='static', num_threads=num_threads):
            column_block_sums(dz, db, rows, cols, blk * COLUMN_BLOCK,
                              min(<intp_t>COLUMN_BLOCK, cols - blk * COLUMN_BLOCK))
    else:  # no region: libgomp allocates a team even for one thread
        for blk in range(blocks):
            column_block_sums(dz, db, rows, cols, blk * COLUMN_BLOCK,
                              min(<intp_t>COLUMN_BLOCK, cols - blk * COLUMN_BLOCK))


def dense_forward(x, w, b, activation="identity", *, param=None, out=None, z_out=None):
    """a = f(x @ w + b).

    x: (batch, in), w: (in, units), b: (units,) or None, all float32 or all float64 (x and w
    may be any strided views). out: (batch, units) receives a; z_out, when given, receives z.
    Returns out.
    """
    _checks.check_dense_inputs(x, w, b)
    name, act, param = _checks.resolve_activation(activation, param)
    batch, units = x.shape[0], w.shape[1]
    out = _checks.check_out(out, "out", (batch, units), x.dtype)
    if z_out is not None:
        _checks.check_out(z_out, "z_out", (batch, units), x.dtype)
        if np.may_share_memory(z_out, out):
            raise ValueError("z_out must not share memory with out")
    for arr, arr_name in ((x, "x"), (w, "w")):
        if np.may_share_memory(out, arr) or (z_out is not None and np.may_share_memory(z_out, arr)):
            raise ValueError(f"out/z_out must not share memory with {arr_name}")
    row_wise = name in _checks.ROW_WISE_ACTIVATIONS
    rs_x, cs_x = _element_strides(x, "x")
    rs_w, cs_w = _element_strides(w, "w")
    cdef intp_t M = batch, N = units, K = x.shape[1]
    cdef intp_t rx = rs_x, cx = cs_x, rw = rs_w, cw = cs_w
    cdef int act_id = 0 if row_wise else act
    cdef int nthreads = get_num_threads_c()
    cdef int status
    cdef void *bias_ptr = NULL if b is None else cnp.PyArray_DATA(b)
    cdef void *z_ptr = NULL if z_out is None else cnp.PyArray_DATA(z_out)
    cdef void *x_ptr = cnp.PyArray_DATA(x)
    cdef void *w_ptr = cnp.PyArray_DATA(w)
    cdef void *o_ptr = cnp.PyArray_DATA(out)
    cdef float p32 = param
    cdef double p64 = param
    if x.dtype == np.float32:
        with nogil:
            status = gemm_raw[float](M, N, K, 1.0, <float *>x_ptr, rx, cx, <float *>w_ptr, rw, cw,
                                     0.0, <float *>o_ptr, N, 1, <float *>bias_ptr,
                                     <float *>z_ptr, N, act_id, p32, nthreads)
    else:
        with nogil:
            status = gemm_raw[double](M, N, K, 1.0, <double *>x_ptr, rx, cx, <double *>w_ptr, rw,
                                      cw, 0.0, <double *>o_ptr, N, 1, <double *>bias_ptr,
                                      <double *>z_ptr, N, act_id, p64, nthreads)
    if status != 0:
        raise MemoryError("dense_forward: could not allocate the GEMM workspace")
    if row_wise:
        # softmax needs whole rows, which no GEMM tile has: one pass after the GEMM.
        from cnn_core._activations import activation_forward
        activation_forward(out, name, out=out)
    return out


def dense_backward(x, w, z, a, grad_out, activation="identity", *, param=None, grad_w=None,
                   grad_b=None, grad_x=None, need_grad_x=True, dz_out=None):
    """Gradients of a dense layer from dL/da.

    x: (batch, in), w: (in, units), z, a, grad_out: (batch, units) as dense_forward made them.
    dz = grad_out * f'(z); grad_w = x^T dz (in, units); grad_b = sum(dz, 0) (units,);
    grad_x = dz w^T (batch, in), or None when need_grad_x is False.
    dz_out: optional (batch, units) buffer that receives dz (reused workspace; allocated when
    None and the activation is not the identity). Returns (grad_w, grad_b, grad_x).
    """
    _checks.check_dense_inputs(x, w, None)
    batch, n_in = x.shape
    units = w.shape[1]
    for arr, arr_name in ((z, "z"), (a, "a"), (grad_out, "grad_out")):
        _checks.check_array(arr, arr_name, ndim=2, dtype=x.dtype)
        _checks.check_contiguous(arr, arr_name)
        if arr.shape != (batch, units):
            raise ValueError(f"{arr_name} has shape {arr.shape}, expected {(batch, units)}")
    name, act, param = _checks.resolve_activation(activation, param)
    grad_w = _checks.check_out(grad_w, "grad_w", (n_in, units), x.dtype)
    grad_b = _checks.check_out(grad_b, "grad_b", (units,), x.dtype)
    if need_grad_x:
        grad_x = _checks.check_out(grad_x, "grad_x", (batch, n_in), x.dtype)
    else:
        grad_x = None
    compute_dz = True
    if name == "identity" and dz_out is None:
        dz = grad_out
        compute_dz = False
    else:
        dz = _checks.check_out(dz_out, "dz_out", (batch, units), x.dtype)
        if name in _checks.ROW_WISE_ACTIVATIONS:
            from cnn_core._activations import activation_backward
            activation_backward(grad_out, z, a, name, out=dz)
            compute_dz = False
    rs_x, cs_x = _element_strides(x, "x")
    rs_w, cs_w = _element_strides(w, "w")
    cdef intp_t B = batch, I = n_in, U = units
    cdef intp_t rx = rs_x, cx = cs_x, rw = rs_w, cw = cs_w
    cdef int act_id = act if compute_dz else -1
    cdef int status = 0
    cdef void *x_ptr = cnp.PyArray_DATA(x)
    cdef void *w_ptr = cnp.PyArray_DATA(w)
    cdef void *z_ptr = cnp.PyArray_DATA(z)
    cdef void *a_ptr = cnp.PyArray_DATA(a)
    cdef void *g_ptr = cnp.PyArray_DATA(grad_out)
    cdef void *dz_ptr = cnp.PyArray_DATA(dz)
    cdef void *gw_ptr = cnp.PyArray_DATA(grad_w)
    cdef void *gb_ptr = cnp.PyArray_DATA(grad_b)
    cdef void *gx_ptr = NULL if grad_x is None else cnp.PyArray_DATA(grad_x)
    cdef float p32 = param
    cdef double p64 = param
    if x.dtype == np.float32:
        with nogil:
            status = dense_backward_raw[float](
                <float *>x_ptr, rx, cx, <float *>w_ptr, rw, cw, <float *>z_ptr, <float *>a_ptr,
                <float *>g_ptr, <float *>dz_ptr, <float *>gw_ptr, <float *>gb_ptr,
                <float *>gx_ptr, B, I, U, act_id, p32, get_num_threads_c())
    else:
        with nogil:
            status = dense_backward_raw[double](
                <double *>x_ptr, rx, cx, <double *>w_ptr, rw, cw, <double *>z_ptr,
                <double *>a_ptr, <double *>g_ptr, <double *>dz_ptr, <double *>gw_ptr,
                <double *>gb_ptr, <double *>gx_ptr, B, I, U, act_id, p64, get_num_threads_c())
    if status != 0:
        raise MemoryError("dense_backward: could not allocate the GEMM workspace")
    return grad_w, grad_b, grad_x


cdef int dense_backward_raw(const floating *x, intp_t rs_x, intp_t cs_x,
                            const floating *w, intp_t rs_w, intp_t cs_w,
                            const floating *z, const floating *a, const floating *grad,
                            floating *dz, floating *grad_w, floating *grad_b, floating *grad_x,
                            intp_t batch, intp_t n_in, intp_t units, int act, floating param,
                            int num_threads, int act_x=-1, const floating *z_x=NULL,
                            const floating *a_x=NULL, floating param_x=0) noexcept nogil:
    cdef int status
    if act >= 0:
        activation_grad_rows(grad, z, a, dz, batch, units, act, param,
                             threads_for_elements(batch * units))
    # grad_w (in x units) = x^T dz: x read through swapped strides, no transposed copy.
    status = gemm_raw(n_in, units, batch, <floating>1, x, cs_x, rs_x, dz, units, 1,
                      <floating>0, grad_w, units, 1, NULL, NULL, 0, 0, <floating>0, num_threads)
    if status != 0:
        return status
    column_sums(dz, grad_b, batch, units, threads_for_elements(batch * units))
    if grad_x != NULL and act_x > 0:
        # grad_x = (dz w^T) * f'(z_x): on through the activation below, tile by tile.
        status = gemm_act_backward_raw(batch, n_in, units, dz, units, 1, w, cs_w, rs_w,
                                       grad_x, n_in, act_x, z_x, a_x, n_in, param_x,
                                       num_threads)
    elif grad_x != NULL:
        # grad_x (batch x in) = dz w^T: w read through swapped strides.
        status = gemm_raw(batch, n_in, units, <floating>1, dz, units, 1, w, cs_w, rs_w,
                          <floating>0, grad_x, n_in, 1, NULL, NULL, 0, 0, <floating>0,
                          num_threads)
    return status


# The activations' AVX2 spellings, where the CPU has them (same bits either way).
cnn_act_math_init()


def _act_vec_enabled():
    """For tests: whether this module's activations run their AVX2 spellings."""
    return bool(cnn_act_vec_enabled())
