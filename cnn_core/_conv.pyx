"""2-D convolution and pooling over NHWC images, forward and backward (docs/kernel_api.md).

Two paths. Direct kernels (include/conv_direct.h; float32, AVX2, filters in whole vectors, up
to direct_max_taps taps): the GEMM micro-kernel with its A operand read from the image through
a tap-offset table, each image padded (when windows reach into padding) just before it is
read, one per thread. Output rows are independent; grad_w and grad_b are summed per image in
registers, images in fixed groups, groups in order. grad_x of a stride-1 'same' layer is the
convolution of dz by the flipped kernel, on the same kernels; otherwise dcols + col2im.

The others: im2col + GEMM. A chunk of whole images (about CHUNK_BYTES of columns, sized from
the shape alone) is unrolled into ``cols``: one row per output pixel, its receptive field in
(i, j, c) order, zeros where the window hangs over the padding. Then z = cols W + b is one GEMM
whose write-back adds the bias and applies f (as _dense does). With at least as many chunks as
threads, each thread runs whole chunks on one-thread GEMMs; else the chunks run in turn on a
threaded GEMM. The bits are the same either way. A 1x1 kernel with stride 1 reads x as cols.
Backward: dW^T is summed chunk by chunk within fixed groups of chunks, one partial per group,
then the partials in group order (the grouping depends on the shape alone, so no sum changes
order with the thread count); dcols = dz W^T overwrites cols and col2im gathers it back: each
input pixel sums, in fixed (i, j) order, the entries of the output pixels that read it, so no
two threads write one pixel.

Pooling scans each window over channel vectors. The max-pool backward recomputes each
window's argmax; windows that cannot overlap write each of their pixels once (the gradient at
the argmax, 0 elsewhere), overlapping ones gather per input pixel like col2im. The
average-pool backward gathers grad / count the same way.
"""
import math
import threading

import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange
from libc.string cimport memcpy, memset
from libc.stdint cimport int32_t

from cnn_core._typedefs cimport floating, intp_t
from cnn_core._threads cimport get_num_threads_c, threads_for_elements
from cnn_core._gemm cimport gemm_raw, gemm_kernel_level
from cnn_core._dense cimport column_sums
from cnn_core import _checks
from cnn_core._activations import activation_forward, activation_backward

cnp.import_array()

cdef extern from "scratch.h" nogil:
    void *cnn_scratch(size_t bytes)
    void *cnn_scratch_slot(int slot, size_t bytes)
    int CNN_SCRATCH_WORKER

cdef extern from "pool_math.h" nogil:
    void cnn_max_update_f32(float *out, const float *v, intp_t n)
    void cnn_max_update_f64(double *out, const double *v, intp_t n)
    void cnn_max_update_arg_f32(float *out, int32_t *arg, const float *v, int32_t pixel,
                                intp_t n)
    void cnn_max_update_arg_f64(double *out, int32_t *arg, const double *v, int32_t pixel,
                                intp_t n)
    void cnn_route_add_f32(float *dst, const float *g, const int32_t *arg, int32_t pixel,
                           intp_t n)
    void cnn_route_add_f64(double *dst, const double *g, const int32_t *arg, int32_t pixel,
                           intp_t n)
    void cnn_route_store_f32(float *dst, const float *g, const int32_t *arg, int32_t pixel,
                             intp_t n)
    void cnn_route_store_f64(double *dst, const double *g, const int32_t *arg, int32_t pixel,
                             intp_t n)
    void cnn_add_run_f32(float *dst, const float *src, intp_t n)
    void cnn_add_run_f64(double *dst, const double *src, intp_t n)


cdef extern from "conv_direct.h" nogil:
    int cnn_conv_direct_row_f32(const float *x, intp_t pixel_step, const intp_t *off,
                                intp_t taps, const float *w, intp_t filters, const float *bias,
                                int act, float param, float *c, float *z, intp_t out_w)
    int cnn_conv_direct_dw_image_f32(intp_t out_h, intp_t out_w, const float *x,
                                     intp_t row_step, intp_t pixel_step, const intp_t *off,
                                     intp_t taps, const float *dz, const float *relu_a,
                                     intp_t filters, float *dw, float *db, int first)

cdef extern from "activation_math.h" nogil:
    void cnn_act_math_init()

cnn_act_math_init()  # the AVX2 activations of the direct path's non-ReLU layers


cdef inline void _add_run(floating *dst, const floating *src, intp_t n) noexcept nogil:
    if floating is float:
        cnn_add_run_f32(dst, src, n)
    else:
        cnn_add_run_f64(dst, src, n)

# Bytes of im2col columns per chunk: 256 KiB stay in L2 between im2col and the GEMM's packing
# (measured against 128 KiB to 4 MiB on MNIST's convnet layers).
cdef enum:
    CHUNK_BYTES = 256 << 10
# Most taps (kh * kw * channels) the direct kernels take; above, im2col + GEMM. The direct
# kernels read a tile's weights, taps x 16 floats, from L1 once per 6 output pixels: beyond
# about 576 taps they no longer stay there (in-process A/B, 1 and 2 threads: 2.6x faster at
# 9 taps, 1.2x at 288, 1.04-1.2x at 576, 0.90x at 1152, 0.67x at 2304).
cdef intp_t direct_max_taps = 576
cdef long direct_calls = 0  # direct kernel calls so far (forward, weights, grad_x): tests

cdef extern from *:
    """
    static inline void cnn_count_call(long *counter) {
        __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
    }
    """
    void cnn_count_call(long *counter) noexcept nogil


cdef inline void _count_direct_call() noexcept nogil:
    cnn_count_call(&direct_calls)


def _direct_calls():
    """How many times the direct kernels ran (a forward, a weight gradient and a grad_x count
    once each): tests check the path they take."""
    return direct_calls


def _set_direct_max_taps(taps):
    """Layers with more taps than this take im2col + GEMM (0: every layer). For tests, which
    compare the two paths, and tuning. Returns the previous value."""
    global direct_max_taps
    previous = direct_max_taps
    direct_max_taps = int(taps)
    return previous


# Bytes of dW partial sums a backward may keep: chunks are summed in groups, one partial per
# group, then the partials in group order. The grouping depends on the shape alone (so the
# bits do not depend on the thread count); threads take whole groups when there are enough.
cdef enum:
    PARTIAL_BYTES = 8 << 20
    MAX_WEIGHT_GROUPS = 64  # enough for 64 threads to take whole groups
    REDUCE_BLOCK = 4096     # elements of grad_w a thread sums the partials of at a time


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------
cdef window_geometry _geometry(object g):
    """The C struct of a _checks.WindowGeometry."""
    cdef window_geometry out
    out.batch, out.in_h, out.in_w, out.channels = g.batch, g.in_h, g.in_w, g.channels
    out.window_h, out.window_w = g.window_h, g.window_w
    out.stride_h, out.stride_w = g.stride_h, g.stride_w
    out.out_h, out.out_w, out.pad_top, out.pad_left = g.out_h, g.out_w, g.pad_top, g.pad_left
    return out


cdef inline bint _reads_x_as_cols(const window_geometry *g) noexcept nogil:
    """A 1x1 kernel with stride 1 (and so no padding): x's pixels are already cols' rows."""
    return g.window_h == 1 and g.window_w == 1 and g.stride_h == 1 and g.stride_w == 1


cdef inline intp_t _images_per_chunk(const window_geometry *g, size_t itemsize) noexcept nogil:
    cdef intp_t row_bytes = g.window_h * g.window_w * g.channels * <intp_t>itemsize
    cdef intp_t image_bytes = g.out_h * g.out_w * row_bytes
    cdef intp_t images = CHUNK_BYTES // image_bytes
    return max(<intp_t>1, min(images, g.batch))


cdef inline void _window_span(intp_t start, intp_t window, intp_t size, intp_t *first,
                              intp_t *stop) noexcept nogil:
    """Offsets [first, stop) of a window starting at `start` that fall inside [0, size)."""
    first[0] = max(<intp_t>0, -start)
    stop[0] = min(window, size - start)
    if stop[0] < first[0]:
        stop[0] = first[0]


cdef struct window_taps:
    # row_tap[h * window_h + i]: the output row whose window reads input row h at tap i, or -1
    # (col_tap likewise for columns); row_real[p], col_real[q]: the real (unpadded) rows and
    # columns of window (p, q). Built once per call, so no pixel loop divides.
    intp_t *row_tap
    intp_t *col_tap
    intp_t *row_real
    intp_t *col_real


cdef inline size_t _taps_bytes(const window_geometry *g) noexcept nogil:
    """Scratch bytes of a window_taps, rounded up to 64 so what follows stays aligned."""
    cdef size_t n = g.in_h * g.window_h + g.in_w * g.window_w + g.out_h + g.out_w
    return (n * sizeof(intp_t) + 63) // 64 * 64


cdef inline intp_t _tap_output(intp_t at, intp_t pad, intp_t tap, intp_t stride,
                               intp_t outputs) noexcept nogil:
    cdef intp_t reach = at + pad - tap
    if reach < 0 or reach % stride != 0 or reach // stride >= outputs:
        return -1
    return reach // stride


cdef void _fill_taps(const window_geometry *g, void *memory, window_taps *t) noexcept nogil:
    cdef intp_t h, w, i, j, p, q
    t.row_tap = <intp_t *>memory
    t.col_tap = t.row_tap + g.in_h * g.window_h
    t.row_real = t.col_tap + g.in_w * g.window_w
    t.col_real = t.row_real + g.out_h
    for h in range(g.in_h):
        for i in range(g.window_h):
            t.row_tap[h * g.window_h + i] = _tap_output(h, g.pad_top, i, g.stride_h, g.out_h)
    for w in range(g.in_w):
        for j in range(g.window_w):
            t.col_tap[w * g.window_w + j] = _tap_output(w, g.pad_left, j, g.stride_w, g.out_w)
    for p in range(g.out_h):
        t.row_real[p] = _real_extent(p * g.stride_h - g.pad_top, g.window_h, g.in_h)
    for q in range(g.out_w):
        t.col_real[q] = _real_extent(q * g.stride_w - g.pad_left, g.window_w, g.in_w)


cdef inline intp_t _real_extent(intp_t start, intp_t window, intp_t size) noexcept nogil:
    cdef intp_t first, stop
    _window_span(start, window, size, &first, &stop)
    return stop - first


# ----------------------------------------------------------------------------------------------
# im2col / col2im
# ----------------------------------------------------------------------------------------------
cdef inline void _im2col_row(const window_geometry *g, const floating *x, floating *row,
                             intp_t n, intp_t p, intp_t q) noexcept nogil:
    """Row of cols for output pixel (n, p, q): kh runs of kw * channels values."""
    cdef intp_t C = g.channels, kw = g.window_w
    cdef intp_t h0 = p * g.stride_h - g.pad_top, w0 = q * g.stride_w - g.pad_left
    cdef intp_t i, h, j0, j1
    cdef floating *run
    _window_span(w0, kw, g.in_w, &j0, &j1)
    for i in range(g.window_h):
        run = row + i * kw * C
        h = h0 + i
        if h < 0 or h >= g.in_h:
            memset(run, 0, kw * C * sizeof(floating))
            continue
        # The in-image part of a window row is one contiguous run of x (NHWC).
        if j0 > 0:
            memset(run, 0, j0 * C * sizeof(floating))
        if j1 > j0:
            memcpy(run + j0 * C, x + ((n * g.in_h + h) * g.in_w + w0 + j0) * C,
                   (j1 - j0) * C * sizeof(floating))
        if j1 < kw:
            memset(run + j1 * C, 0, (kw - j1) * C * sizeof(floating))


cdef inline int _threads_for(long long work, int cap) noexcept nogil:
    return min(cap, threads_for_elements(work))


cdef void im2col(const window_geometry *g, const floating *x, floating *cols, intp_t n0,
                 intp_t n1, int threads) noexcept nogil:
    """cols[((n - n0) * out_h + p) * out_w + q, :] for the images n0 <= n < n1."""
    cdef intp_t K = g.window_h * g.window_w * g.channels
    cdef intp_t pixels = g.out_h * g.out_w
    cdef intp_t rows = (n1 - n0) * pixels
    cdef intp_t r, n, pq
    cdef int nt = _threads_for(rows * K, threads)
    if nt > 1:
        for r in prange(rows, schedule='static', num_threads=nt):
            n = r // pixels
            pq = r - n * pixels
            _im2col_row(g, x, cols + r * K, n0 + n, pq // g.out_w, pq % g.out_w)
    else:
        for r in range(rows):
            n = r // pixels
            pq = r - n * pixels
            _im2col_row(g, x, cols + r * K, n0 + n, pq // g.out_w, pq % g.out_w)


cdef inline void _col2im_image_row(const window_geometry *g, const window_taps *t,
                                   const floating *dcols, floating *grad_x, intp_t n, intp_t n0,
                                   intp_t h) noexcept nogil:
    """grad_x[n, h, :, :] = sum over (i, j), in order, of the dcols entries that read it."""
    cdef intp_t C = g.channels, kh = g.window_h, kw = g.window_w
    cdef intp_t K = kh * kw * C
    cdef intp_t w, i, j, c, p, q
    cdef floating *dst
    cdef const floating *src
    for w in range(g.in_w):
        dst = grad_x + ((n * g.in_h + h) * g.in_w + w) * C
        for c in range(C):
            dst[c] = 0
        for i in range(kh):
            p = t.row_tap[h * kh + i]
            if p < 0:
                continue
            for j in range(kw):
                q = t.col_tap[w * kw + j]
                if q < 0:
                    continue
                _add_run(dst, dcols + (((n - n0) * g.out_h + p) * g.out_w + q) * K
                         + (i * kw + j) * C, C)


cdef void col2im(const window_geometry *g, const window_taps *t, const floating *dcols,
                 floating *grad_x, intp_t n0, intp_t n1, int threads) noexcept nogil:
    """grad_x of the images n0 <= n < n1 from their dcols rows (the adjoint of im2col)."""
    cdef intp_t rows = (n1 - n0) * g.in_h
    cdef intp_t r
    cdef int nt = _threads_for(
        (n1 - n0) * g.out_h * g.out_w * g.window_h * g.window_w * g.channels, threads)
    if nt > 1:
        for r in prange(rows, schedule='static', num_threads=nt):
            _col2im_image_row(g, t, dcols, grad_x, n0 + r // g.in_h, n0, r % g.in_h)
    else:
        for r in range(rows):
            _col2im_image_row(g, t, dcols, grad_x, n0 + r // g.in_h, n0, r % g.in_h)


# ----------------------------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------------------------
cdef inline intp_t _chunk_count(const window_geometry *g, intp_t chunk) noexcept nogil:
    return (g.batch + chunk - 1) // chunk


cdef int _forward_chunk(const window_geometry *g, const floating *x, const floating *w,
                        const floating *b, intp_t filters, floating *z_out, floating *a,
                        int act, floating param, intp_t chunk, intp_t c,
                        int threads) noexcept nogil:
    """Images [c * chunk, ...) of conv2d_forward_raw: im2col into this thread's columns, then
    the GEMM with the bias and activation in its write-back."""
    cdef intp_t K = g.window_h * g.window_w * g.channels
    cdef intp_t pixels = g.out_h * g.out_w
    cdef intp_t n0 = c * chunk, n1 = min(n0 + chunk, g.batch)
    cdef intp_t row0 = n0 * pixels
    cdef floating *cols = <floating *>cnn_scratch_slot(CNN_SCRATCH_WORKER,
                                                      chunk * pixels * K * sizeof(floating))
    if cols == NULL:
        return -1
    im2col(g, x, cols, n0, n1, threads)
    return gemm_raw((n1 - n0) * pixels, filters, K, <floating>1, cols, K, 1, w, filters, 1,
                    <floating>0, a + row0 * filters, filters, 1, b,
                    NULL if z_out == NULL else z_out + row0 * filters, filters, act, param,
                    threads)


# ----------------------------------------------------------------------------------------------
# Direct convolution (include/conv_direct.h): float32, AVX2, filters a multiple of 8
# ----------------------------------------------------------------------------------------------
cdef struct padded_image:
    # The batch as the direct kernels read it: each image is x's own, or, when windows reach
    # into padding, a copy with the padding in place made just before it is read (one image
    # per thread at a time, never the whole batch).
    const float *x
    intp_t height, width   # of each (padded) image
    bint pads
    intp_t *off            # off[(i * kw + j) * C + c]: tap (i, j, c) from its window's corner
    char *extra            # the caller's extra scratch bytes (64-byte aligned), or NULL


cdef inline bint _direct_ok(const window_geometry *g, intp_t filters,
                            size_t itemsize) noexcept nogil:
    """The direct kernels take the layer: float32, AVX2 kernels in use (they follow the GEMM's
    family, so PYNN_KERNEL=reference turns them off too), filters in whole AVX2 vectors, and
    taps few enough that im2col + GEMM would spend more on columns and tiles than on FMAs."""
    return (itemsize == sizeof(float) and gemm_kernel_level() >= 1 and filters % 8 == 0
            and not _reads_x_as_cols(g)
            and g.window_h * g.window_w * g.channels <= direct_max_taps)


cdef inline const float *_image(const window_geometry *g, const padded_image *xp,
                                intp_t n) noexcept nogil:
    """Image n as the direct kernels read it: x's own, or padded into this thread's worker
    scratch (NULL when that cannot be allocated)."""
    cdef intp_t C = g.channels, h, row = xp.width * C
    cdef float *image
    if not xp.pads:
        return xp.x + n * g.in_h * g.in_w * C
    image = <float *>cnn_scratch_slot(CNN_SCRATCH_WORKER, xp.height * row * sizeof(float))
    if image == NULL:
        return NULL
    memset(image, 0, xp.height * row * sizeof(float))
    for h in range(min(g.in_h, xp.height - g.pad_top)):
        memcpy(image + (h + g.pad_top) * row + g.pad_left * C,
               xp.x + (n * g.in_h + h) * g.in_w * C,
               min(g.in_w, xp.width - g.pad_left) * C * sizeof(float))
    return image


cdef int _padded_for_direct(const window_geometry *g, const float *x, padded_image *out,
                            size_t extra_bytes) noexcept nogil:
    """The tap offsets and `extra_bytes` for the caller (shared scratch), and the padded
    image size: every window lies inside it."""
    cdef intp_t C = g.channels, taps = g.window_h * g.window_w * g.channels
    cdef intp_t height = max((g.out_h - 1) * g.stride_h + g.window_h, g.pad_top + g.in_h)
    cdef intp_t width = max((g.out_w - 1) * g.stride_w + g.window_w, g.pad_left + g.in_w)
    cdef size_t off_bytes = (taps * sizeof(intp_t) + 63) // 64 * 64
    extra_bytes = (extra_bytes + 63) // 64 * 64
    cdef char *scratch = <char *>cnn_scratch(off_bytes + extra_bytes)
    cdef intp_t i, j, c
    if scratch == NULL:
        return -1
    out.pads = height > g.in_h or width > g.in_w
    if not out.pads:
        height, width = g.in_h, g.in_w
    out.off = <intp_t *>scratch
    for i in range(g.window_h):
        for j in range(g.window_w):
            for c in range(C):
                out.off[(i * g.window_w + j) * C + c] = (i * width + j) * C + c
    out.height, out.width = height, width
    out.extra = scratch + off_bytes if extra_bytes else NULL
    out.x = x
    return 0


cdef inline void _direct_forward_row(const window_geometry *g, const padded_image *xp,
                                     const float *image, const float *w, const float *b,
                                     intp_t filters, float *z_out, float *a, int act,
                                     float param, intp_t n, intp_t p) noexcept nogil:
    """Output row p of image n (read from `image`), every pixel and filter."""
    cdef intp_t row = g.out_w * filters, r = n * g.out_h + p
    cnn_conv_direct_row_f32(
        image + p * g.stride_h * xp.width * g.channels,
        g.stride_w * g.channels, xp.off, g.window_h * g.window_w * g.channels, w, filters, b,
        act, param, a + r * row, NULL if z_out == NULL else z_out + r * row, g.out_w)


cdef inline int _direct_forward_image(const window_geometry *g, const padded_image *xp,
                                      const float *w, const float *b, intp_t filters,
                                      float *z_out, float *a, int act, float param,
                                      intp_t n) noexcept nogil:
    cdef const float *image = _image(g, xp, n)
    cdef intp_t p
    if image == NULL:
        return -1
    for p in range(g.out_h):
        _direct_forward_row(g, xp, image, w, b, filters, z_out, a, act, param, n, p)
    return 0


cdef int conv2d_direct_forward(const window_geometry *g, const float *x, const float *w,
                               const float *b, intp_t filters, float *z_out, float *a,
                               int act, float param, int num_threads) noexcept nogil:
    """conv2d_forward_raw by the direct kernels (each output row's bits are its own, whoever
    computes it)."""
    cdef padded_image xp
    cdef int nt = _threads_for(g.batch * g.out_h * g.out_w * filters * g.window_h
                               * g.window_w * g.channels, num_threads)
    if _padded_for_direct(g, x, &xp, 0) != 0:
        return -1
    _count_direct_call()
    return _direct_rows(g, &xp, w, b, filters, z_out, a, act, param, nt)


cdef int _direct_rows(const window_geometry *g, const padded_image *xp, const float *w,
                      const float *b, intp_t filters, float *z_out, float *a, int act,
                      float param, int nt) noexcept nogil:
    """Every output row: threads take whole images when there are plenty (each pads its own),
    else the rows of one image after another."""
    cdef intp_t n, p
    cdef int failed = 0
    cdef const float *image
    if nt > 1 and g.batch >= 4 * nt:
        for n in prange(g.batch, schedule='static', num_threads=nt):
            failed += _direct_forward_image(g, xp, w, b, filters, z_out, a, act, param,
                                            n) != 0
        return -1 if failed else 0
    for n in range(g.batch):
        if nt == 1:
            if _direct_forward_image(g, xp, w, b, filters, z_out, a, act, param, n) != 0:
                return -1
            continue
        image = _image(g, xp, n)
        if image == NULL:
            return -1
        for p in prange(g.out_h, schedule='static', num_threads=nt):
            _direct_forward_row(g, xp, image, w, b, filters, z_out, a, act, param, n, p)
    return 0


cdef inline bint _direct_dx_ok(const window_geometry *g, intp_t filters) noexcept nogil:
    """grad_x of a stride-1 layer is itself a convolution (of dz, padded kh - 1 - pad_top
    above and kw - 1 - pad_left to the left, by the kernel flipped in both axes with its
    channels and filters swapped): the direct kernels take it on the forward's terms when it
    costs no more FMAs than dcols = dz W^T, i.e. x has no more pixels than z ('same'). A
    'valid' layer's grad_x would multiply the zeros around dz: 1.4x the FMAs for MNIST's
    13x13 -> 11x11 layer, measured 0.85x the speed of the GEMM + col2im it replaces."""
    return (g.stride_h == 1 and g.stride_w == 1 and g.channels % 8 == 0
            and g.in_h * g.in_w <= g.out_h * g.out_w
            and g.window_h * g.window_w * filters <= direct_max_taps)


cdef int _direct_dx(const window_geometry *g, const float *w, const float *dz,
                    intp_t filters, float *grad_x, int num_threads) noexcept nogil:
    """grad_x of a stride-1 direct-path layer by the direct forward kernels (see
    _direct_dx_ok): dz (padded) convolved with w flipped, channels <-> filters, no bias."""
    cdef window_geometry t
    cdef padded_image dzp
    cdef intp_t C = g.channels, kh = g.window_h, kw = g.window_w
    cdef intp_t i, j, c, f
    cdef float *flipped
    cdef const float *src
    t.batch, t.in_h, t.in_w, t.channels = g.batch, g.out_h, g.out_w, filters
    t.window_h, t.window_w, t.stride_h, t.stride_w = kh, kw, 1, 1
    t.out_h, t.out_w = g.in_h, g.in_w
    t.pad_top, t.pad_left = kh - 1 - g.pad_top, kw - 1 - g.pad_left
    cdef int nt = _threads_for(t.batch * t.out_h * t.out_w * C * kh * kw * filters, num_threads)
    if _padded_for_direct(&t, dz, &dzp, kh * kw * filters * C * sizeof(float)) != 0:
        return -1
    _count_direct_call()
    # flipped[((kh-1-i) * kw + kw-1-j) * filters + f, c] = w[i, j, c, f]
    flipped = <float *>dzp.extra
    for i in range(kh):
        for j in range(kw):
            for c in range(C):
                src = w + ((i * kw + j) * C + c) * filters
                for f in range(filters):
                    flipped[(((kh - 1 - i) * kw + kw - 1 - j) * filters + f) * C + c] = src[f]
    return _direct_rows(&t, &dzp, flipped, NULL, C, NULL, grad_x, 0, 0, nt)


cdef int _direct_dw_group(const window_geometry *g, const padded_image *xp,
                          const float *dz, const float *relu_a, intp_t filters, float *dw,
                          float *db, intp_t n0, intp_t n1) noexcept nogil:
    """Images [n0, n1): their weight and bias gradients summed image after image into the
    group's partials dw (taps x filters) and db (filters)."""
    cdef intp_t n, pixels = g.out_h * g.out_w
    cdef const float *image
    for n in range(n0, n1):
        image = _image(g, xp, n)
        if image == NULL:
            return -1
        cnn_conv_direct_dw_image_f32(
            g.out_h, g.out_w, image, g.stride_h * xp.width * g.channels,
            g.stride_w * g.channels, xp.off, g.window_h * g.window_w * g.channels,
            dz + n * pixels * filters,
            NULL if relu_a == NULL else relu_a + n * pixels * filters, filters, dw, db,
            n == n0)
    return 0


cdef inline void _sum_partials(const float *partials, intp_t stride, intp_t count,
                               intp_t groups, float *dst, intp_t blk) noexcept nogil:
    """dst[e] = partials[e] + partials[stride + e] + ..., the groups in order, for the
    elements e < count of block blk."""
    cdef intp_t e0 = blk * REDUCE_BLOCK, e1 = min(e0 + REDUCE_BLOCK, count)
    cdef intp_t part
    memcpy(dst + e0, partials + e0, (e1 - e0) * sizeof(float))
    for part in range(1, groups):
        _add_run(dst + e0, partials + part * stride + e0, e1 - e0)


cdef int conv2d_direct_backward(const window_geometry *g, const float *x, const float *w,
                                const float *dz, const float *relu_a, intp_t filters,
                                float *grad_w, float *grad_b, int num_threads) noexcept nogil:
    """grad_w and grad_b by the direct kernels: images in fixed groups (by the shape alone),
    each group's partials summed image after image, then the partials in group order, so no
    sum depends on the thread count. dx is left to the caller. relu_a (or NULL): dz holds
    dL/da of a ReLU layer whose output is relu_a, and dz = dL/da * (a > 0) is formed on the
    fly, never written."""
    cdef padded_image xp
    cdef intp_t weights = g.window_h * g.window_w * g.channels * filters
    # A group's partial is its dw then its db: taps x (filters + 1) floats at most, which is
    # what _weight_groups sizes (each image is a chunk here).
    cdef intp_t groups = _weight_groups(g, filters + 1, g.batch, sizeof(float))
    cdef intp_t size = weights + filters
    cdef intp_t gi, blk, blocks = (weights + REDUCE_BLOCK - 1) // REDUCE_BLOCK
    cdef int nt = min(<intp_t>num_threads, groups), failed = 0
    cdef float *partials
    if _padded_for_direct(g, x, &xp, groups * size * sizeof(float)) != 0:
        return -1
    _count_direct_call()
    partials = <float *>xp.extra
    if nt > 1:
        for gi in prange(groups, schedule='static', num_threads=nt):
            failed += _direct_dw_group(g, &xp, dz, relu_a, filters, partials + gi * size,
                                       partials + gi * size + weights, gi * g.batch // groups,
                                       (gi + 1) * g.batch // groups) != 0
    else:
        for gi in range(groups):
            failed += _direct_dw_group(g, &xp, dz, relu_a, filters, partials + gi * size,
                                       partials + gi * size + weights, gi * g.batch // groups,
                                       (gi + 1) * g.batch // groups) != 0
    if failed:
        return -1
    # grad_w = the partials' dw in group order; grad_b likewise, from the db after them.
    nt = num_threads if weights * groups >= 65536 else 1
    if nt > 1:
        for blk in prange(blocks, schedule='static', num_threads=nt):
            _sum_partials(partials, size, weights, groups, grad_w, blk)
    else:
        for blk in range(blocks):
            _sum_partials(partials, size, weights, groups, grad_w, blk)
    for blk in range((filters + REDUCE_BLOCK - 1) // REDUCE_BLOCK):
        _sum_partials(partials + weights, size, filters, groups, grad_b, blk)
    return 0


cdef int conv2d_forward_raw(const window_geometry *g, const floating *x, const floating *w,
                            const floating *b, intp_t filters, floating *z_out, floating *a,
                            int act, floating param, int num_threads) noexcept nogil:
    cdef intp_t K = g.window_h * g.window_w * g.channels
    cdef intp_t pixels = g.out_h * g.out_w
    cdef intp_t chunk, chunks, c
    cdef int failed = 0
    if _reads_x_as_cols(g):
        return gemm_raw(g.batch * pixels, filters, K, <floating>1, x, K, 1, w, filters, 1,
                        <floating>0, a, filters, 1, b, z_out, filters, act, param, num_threads)
    if floating is float:
        if _direct_ok(g, filters, sizeof(floating)):
            return conv2d_direct_forward(g, x, w, b, filters, z_out, a, act, param,
                                         num_threads)
    chunk = _images_per_chunk(g, sizeof(floating))
    chunks = _chunk_count(g, chunk)
    # Chunks are independent: with enough of them each thread runs whole chunks (one
    # parallel region, GEMMs on one thread); else the GEMMs split. Same bits either way.
    if num_threads > 1 and chunks >= num_threads:
        for c in prange(chunks, schedule='static', num_threads=num_threads):
            failed += _forward_chunk(g, x, w, b, filters, z_out, a, act, param, chunk, c, 1) != 0
    else:
        for c in range(chunks):
            if _forward_chunk(g, x, w, b, filters, z_out, a, act, param, chunk, c,
                              num_threads) != 0:
                return -1
    return -1 if failed else 0


cdef inline intp_t _weight_groups(const window_geometry *g, intp_t filters, intp_t chunks,
                                  size_t itemsize) noexcept nogil:
    cdef intp_t weight_bytes = g.window_h * g.window_w * g.channels * filters * <intp_t>itemsize
    return max(<intp_t>1, min(min(chunks, <intp_t>MAX_WEIGHT_GROUPS),
                              PARTIAL_BYTES // weight_bytes))


cdef int _backward_group(const window_geometry *g, const window_taps *t, const floating *x,
                         const floating *w, const floating *dz, intp_t filters,
                         floating *grad_w_part, floating *grad_x, intp_t chunk, intp_t c0,
                         intp_t c1, int threads) noexcept nogil:
    """Chunks c0 <= c < c1: grad_w_part (filters x K, grad_w transposed) = the sum of their
    dz^T cols, in chunk order (unless grad_w_part is NULL), and their images' grad_x."""
    cdef intp_t K = g.window_h * g.window_w * g.channels
    cdef intp_t pixels = g.out_h * g.out_w
    cdef intp_t c, n0, n1, rows
    cdef const floating *dz_c
    cdef int status
    cdef floating *cols = <floating *>cnn_scratch_slot(CNN_SCRATCH_WORKER,
                                                      chunk * pixels * K * sizeof(floating))
    if cols == NULL:
        return -1
    for c in range(c0, c1):
        n0 = c * chunk
        n1 = min(n0 + chunk, g.batch)
        rows = (n1 - n0) * pixels
        dz_c = dz + n0 * pixels * filters
        if grad_w_part != NULL:
            im2col(g, x, cols, n0, n1, threads)
            # grad_w^T (filters x K) += dz^T cols: the big operand (cols) is packed row by
            # row, only the narrow dz is read transposed, and the tiles are written as
            # contiguous rows (grad_w itself is written once, transposed, at the end).
            status = gemm_raw(filters, K, rows, <floating>1, dz_c, 1, filters, cols, K, 1,
                              <floating>(0 if c == c0 else 1), grad_w_part, K, 1, NULL,
                              NULL, 0, 0, <floating>0, threads)
            if status != 0:
                return status
        if grad_x != NULL:
            # dcols (rows x K) = dz w^T, into the columns' own buffer, then gathered back.
            status = gemm_raw(rows, K, filters, <floating>1, dz_c, filters, 1, w, 1, filters,
                              <floating>0, cols, K, 1, NULL, NULL, 0, 0, <floating>0, threads)
            if status != 0:
                return status
            col2im(g, t, cols, grad_x, n0, n1, threads)
    return 0


cdef inline void _add_partials(floating *partials, intp_t weights, intp_t groups,
                               intp_t blk) noexcept nogil:
    """partials[0][e] += partials[1][e] + ... in that order, for the elements of block blk."""
    cdef intp_t e0 = blk * REDUCE_BLOCK, e1 = min(e0 + REDUCE_BLOCK, weights)
    cdef intp_t part
    for part in range(1, groups):
        _add_run(partials + e0, partials + part * weights + e0, e1 - e0)


cdef inline void _transpose_row(const floating *src, floating *dst, intp_t rows, intp_t cols,
                                intp_t j) noexcept nogil:
    """dst[j, :] = src[:, j] for a rows x cols src."""
    cdef intp_t i
    for i in range(rows):
        dst[j * rows + i] = src[i * cols + j]


cdef int _dx_by_gemm(const window_geometry *g, const float *w, const float *dz,
                     intp_t filters, float *grad_x, int num_threads) noexcept nogil:
    """grad_x alone, chunk by chunk: dcols = dz w^T, then col2im (the direct path's dx)."""
    cdef intp_t chunk = _images_per_chunk(g, sizeof(float))
    cdef intp_t chunks = _chunk_count(g, chunk), c
    cdef window_taps taps
    cdef int failed = 0
    cdef char *scratch = <char *>cnn_scratch(_taps_bytes(g))
    if scratch == NULL:
        return -1
    _fill_taps(g, scratch, &taps)
    if num_threads > 1 and chunks >= num_threads:
        for c in prange(chunks, schedule='static', num_threads=num_threads):
            failed += _backward_group(g, &taps, NULL, w, dz, filters, NULL, grad_x, chunk, c,
                                      c + 1, 1) != 0
    else:
        for c in range(chunks):
            if _backward_group(g, &taps, NULL, w, dz, filters, NULL, grad_x, chunk, c, c + 1,
                               num_threads) != 0:
                return -1
    return -1 if failed else 0


cdef int conv2d_backward_raw(const window_geometry *g, const floating *x, const floating *w,
                             const floating *dz, intp_t filters, floating *grad_w,
                             floating *grad_b, floating *grad_x, int num_threads) noexcept nogil:
    cdef intp_t K = g.window_h * g.window_w * g.channels
    cdef intp_t pixels = g.out_h * g.out_w
    cdef intp_t weights = K * filters
    cdef intp_t chunk, chunks, groups, gi, blk, blocks, k
    cdef floating *partials
    cdef char *scratch
    cdef window_taps taps
    cdef int status, failed = 0
    if floating is float:
        if _direct_ok(g, filters, sizeof(floating)):
            status = conv2d_direct_backward(g, x, w, dz, NULL, filters, grad_w, grad_b,
                                            num_threads)
            if status != 0 or grad_x == NULL:
                return status
            if _direct_dx_ok(g, filters):
                return _direct_dx(g, w, dz, filters, grad_x, num_threads)
            return _dx_by_gemm(g, w, dz, filters, grad_x, num_threads)
    column_sums(dz, grad_b, g.batch * pixels, filters, threads_for_elements(
        g.batch * pixels * filters))
    if _reads_x_as_cols(g):
        # grad_w = x^T dz and grad_x = dz w^T, both read through swapped strides.
        status = gemm_raw(K, filters, g.batch * pixels, <floating>1, x, 1, K, dz, filters, 1,
                          <floating>0, grad_w, filters, 1, NULL, NULL, 0, 0, <floating>0,
                          num_threads)
        if status == 0 and grad_x != NULL:
            status = gemm_raw(g.batch * pixels, K, filters, <floating>1, dz, filters, 1, w, 1,
                              filters, <floating>0, grad_x, K, 1, NULL, NULL, 0, 0,
                              <floating>0, num_threads)
        return status
    chunk = _images_per_chunk(g, sizeof(floating))
    chunks = _chunk_count(g, chunk)
    groups = _weight_groups(g, filters, chunks, sizeof(floating))
    # Shared scratch: the tap tables, then one dW^T partial per group.
    scratch = <char *>cnn_scratch(_taps_bytes(g) + groups * weights * sizeof(floating))
    if scratch == NULL:
        return -1
    _fill_taps(g, scratch, &taps)
    partials = <floating *>(scratch + _taps_bytes(g))
    if num_threads > 1 and groups >= num_threads:
        for gi in prange(groups, schedule='static', num_threads=num_threads):
            failed += _backward_group(
                g, &taps, x, w, dz, filters, partials + gi * weights, grad_x, chunk,
                gi * chunks // groups, (gi + 1) * chunks // groups, 1) != 0
    else:
        for gi in range(groups):
            if _backward_group(g, &taps, x, w, dz, filters, partials + gi * weights, grad_x,
                               chunk, gi * chunks // groups, (gi + 1) * chunks // groups,
                               num_threads) != 0:
                return -1
    if failed:
        return -1
    # partials[0] += the others, in group order for every element; partial after partial,
    # so each is read as one stream (threads split blocks of elements). Then grad_w is its
    # transpose.
    cdef int nt = num_threads if weights * groups >= 65536 else 1
    if groups > 1:
        blocks = (weights + REDUCE_BLOCK - 1) // REDUCE_BLOCK
        if nt > 1:
            for blk in prange(blocks, schedule='static', num_threads=nt):
                _add_partials(partials, weights, groups, blk)
        else:
            for blk in range(blocks):
                _add_partials(partials, weights, groups, blk)
    if nt > 1:
        for k in prange(K, schedule='static', num_threads=nt):
            _transpose_row(partials, grad_w, filters, K, k)
    else:
        for k in range(K):
            _transpose_row(partials, grad_w, filters, K, k)
    return 0


cdef inline void *_data(object arr):
    return NULL if arr is None else cnp.PyArray_DATA(arr)


def conv2d_forward(x, w, b, *, strides=(1, 1), padding="valid", activation="identity",
                   param=None, out=None, z_out=None):
    """a = f(conv2d(x, w) + b).

    x: (batch, height, width, in_channels), w: (kernel_h, kernel_w, in_channels, filters),
    both C-contiguous; b: (filters,) or None; one float dtype. strides: int or pair; padding:
    'valid' or 'same' (Keras' rules). out, z_out: (batch, out_h, out_w, filters); z_out,
    when given, receives z. Returns out.
    """
    geometry, out = _checks.check_conv2d_forward(x, w, b, strides, padding, out, z_out)
    name, act, param = _checks.resolve_activation(activation, param)
    filters = w.shape[3]
    row_wise = name in _checks.ROW_WISE_ACTIVATIONS
    cdef window_geometry g = _geometry(geometry)
    cdef intp_t F = filters
    cdef int act_id = 0 if row_wise else act
    cdef int nthreads = get_num_threads_c()
    cdef int status
    cdef void *x_ptr = _data(x)
    cdef void *w_ptr = _data(w)
    cdef void *b_ptr = _data(b)
    cdef void *z_ptr = _data(z_out)
    cdef void *o_ptr = _data(out)
    cdef float p32 = param
    cdef double p64 = param
    if x.dtype == np.float32:
        with nogil:
            status = conv2d_forward_raw[float](&g, <float *>x_ptr, <float *>w_ptr,
                                               <float *>b_ptr, F, <float *>z_ptr,
                                               <float *>o_ptr, act_id, p32, nthreads)
    else:
        with nogil:
            status = conv2d_forward_raw[double](&g, <double *>x_ptr, <double *>w_ptr,
                                                <double *>b_ptr, F, <double *>z_ptr,
                                                <double *>o_ptr, act_id, p64, nthreads)
    if status != 0:
        raise MemoryError("conv2d_forward: could not allocate the im2col/GEMM workspace")
    if row_wise:
        # softmax needs whole rows (all filters of a pixel): one pass after the GEMM.
        activation_forward(out, name, out=out)
    return out


_workspaces = threading.local()


def _dz_workspace(shape, dtype):
    """dz of a conv2d_backward called without dz_out: a view of one grow-only buffer per
    thread and dtype (as the C scratch buffers), so a training loop allocates none per step
    and memory stays at the largest dz seen. Only valid until the thread's next call."""
    buffers = getattr(_workspaces, "dz", None)
    if buffers is None:
        buffers = _workspaces.dz = {}
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    buffer = buffers.get(dtype.str)
    if buffer is None or buffer.size < size:
        buffer = buffers[dtype.str] = np.empty(size, dtype)
    return buffer[:size].reshape(shape)


def conv2d_backward(x, w, z, a, grad_out, *, strides=(1, 1), padding="valid",
                    activation="identity", param=None, grad_w=None, grad_b=None, grad_x=None,
                    need_grad_x=True, dz_out=None):
    """Gradients of conv2d_forward from grad_out = dL/da.

    x, w, strides, padding as for the forward; z, a, grad_out: (batch, out_h, out_w, filters)
    C-contiguous. dz = grad_out * f'(z); grad_w = cols^T dz (w's shape); grad_b = sum of dz
    over pixels (filters,); grad_x = col2im(dz w^T) (x's shape), None when need_grad_x is
    False. dz_out: optional buffer that receives dz. Without it dz goes to a buffer kept per
    thread (no allocation per call), or, for a ReLU layer with no grad_x on the direct
    kernels, is formed on the fly from grad_out and a (relu'(z) read as a > 0, the same
    wherever a = relu(z)) and never stored. Returns (grad_w, grad_b, grad_x).
    """
    geometry, grad_w, grad_b, grad_x = _checks.check_conv2d_backward(
        x, w, z, a, grad_out, strides, padding, grad_w, grad_b, grad_x, need_grad_x, dz_out)
    filters = w.shape[3]
    shape = (geometry.batch, geometry.out_h, geometry.out_w, filters)
    name, act, param = _checks.resolve_activation(activation, param)
    cdef window_geometry g = _geometry(geometry)
    cdef intp_t F = filters
    cdef int nthreads = get_num_threads_c()
    cdef int status
    cdef void *x_ptr = _data(x)
    cdef void *w_ptr = _data(w)
    cdef void *gw_ptr = _data(grad_w)
    cdef void *gb_ptr = _data(grad_b)
    cdef void *gx_ptr = _data(grad_x)
    cdef void *dz_ptr
    cdef void *a_ptr
    if (name == "relu" and dz_out is None and grad_x is None
            and _direct_ok(&g, F, x.itemsize)):
        # Nobody asks for dz: the direct kernels form it from grad_out and a as they go.
        dz_ptr, a_ptr = _data(grad_out), _data(a)
        with nogil:
            status = conv2d_direct_backward(&g, <float *>x_ptr, <float *>w_ptr,
                                            <float *>dz_ptr, <float *>a_ptr, F,
                                            <float *>gw_ptr, <float *>gb_ptr, nthreads)
        if status != 0:
            raise MemoryError("conv2d_backward: could not allocate the direct workspace")
        return grad_w, grad_b, grad_x
    if name == "identity" and dz_out is None:
        dz = grad_out
    else:
        dz = (_checks.check_out(dz_out, "dz_out", shape, x.dtype) if dz_out is not None
              else _dz_workspace(shape, x.dtype))
        activation_backward(grad_out, z, a, name, param=param, out=dz)
    dz_ptr = _data(dz)
    if x.dtype == np.float32:
        with nogil:
            status = conv2d_backward_raw[float](&g, <float *>x_ptr, <float *>w_ptr,
                                                <float *>dz_ptr, F, <float *>gw_ptr,
                                                <float *>gb_ptr, <float *>gx_ptr, nthreads)
    else:
        with nogil:
            status = conv2d_backward_raw[double](&g, <double *>x_ptr, <double *>w_ptr,
                                                 <double *>dz_ptr, F, <double *>gw_ptr,
                                                 <double *>gb_ptr, <double *>gx_ptr, nthreads)
    if status != 0:
        raise MemoryError("conv2d_backward: could not allocate the im2col/GEMM workspace")
    return grad_w, grad_b, grad_x


# ----------------------------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------------------------
cdef inline void _max_pool_pixel(const window_geometry *g, const floating *x, floating *out,
                                 int32_t *argmax, intp_t n, intp_t p, intp_t q) noexcept nogil:
    """out[c] = max of window (p, q) of image n; argmax[c] (when not NULL) = the in-image
    pixel index h * in_w + w of its first maximum (first NaN: a NaN is the maximum)."""
    cdef intp_t C = g.channels
    cdef intp_t h0 = p * g.stride_h - g.pad_top, w0 = q * g.stride_w - g.pad_left
    cdef intp_t i0, i1, j0, j1, i, j, c, pixel
    cdef const floating *src
    cdef bint first = True
    _window_span(h0, g.window_h, g.in_h, &i0, &i1)
    _window_span(w0, g.window_w, g.in_w, &j0, &j1)
    for i in range(i0, i1):
        for j in range(j0, j1):
            pixel = (h0 + i) * g.in_w + w0 + j
            src = x + (n * g.in_h * g.in_w + pixel) * C
            if first:
                first = False
                for c in range(C):
                    out[c] = src[c]
                if argmax != NULL:
                    for c in range(C):
                        argmax[c] = <int32_t>pixel
                continue
            if argmax == NULL:
                if floating is float:
                    cnn_max_update_f32(out, src, C)
                else:
                    cnn_max_update_f64(out, src, C)
            elif floating is float:
                cnn_max_update_arg_f32(out, argmax, src, <int32_t>pixel, C)
            else:
                cnn_max_update_arg_f64(out, argmax, src, <int32_t>pixel, C)


cdef void max_pool_rows(const window_geometry *g, const floating *x, floating *out,
                        int32_t *argmax) noexcept nogil:
    cdef intp_t rows = g.batch * g.out_h
    cdef intp_t r, q, at
    cdef int nt = threads_for_elements(rows * g.out_w * g.channels * g.window_h * g.window_w)
    if nt > 1:
        for r in prange(rows, schedule='static', num_threads=nt):
            for q in range(g.out_w):
                at = (r * g.out_w + q) * g.channels
                _max_pool_pixel(g, x, out + at, NULL if argmax == NULL else argmax + at,
                                r // g.out_h, r % g.out_h, q)
    else:
        for r in range(rows):
            for q in range(g.out_w):
                at = (r * g.out_w + q) * g.channels
                _max_pool_pixel(g, x, out + at, NULL if argmax == NULL else argmax + at,
                                r // g.out_h, r % g.out_h, q)


cdef inline void _avg_pool_pixel(const window_geometry *g, const floating *x, floating *out,
                                 intp_t n, intp_t p, intp_t q) noexcept nogil:
    cdef intp_t C = g.channels
    cdef intp_t h0 = p * g.stride_h - g.pad_top, w0 = q * g.stride_w - g.pad_left
    cdef intp_t i0, i1, j0, j1, i, j, c
    cdef const floating *src
    cdef floating count
    _window_span(h0, g.window_h, g.in_h, &i0, &i1)
    _window_span(w0, g.window_w, g.in_w, &j0, &j1)
    count = <floating>((i1 - i0) * (j1 - j0))
    for c in range(C):
        out[c] = 0
    for i in range(i0, i1):
        for j in range(j0, j1):
            src = x + ((n * g.in_h + h0 + i) * g.in_w + w0 + j) * C
            for c in range(C):
                out[c] += src[c]
    for c in range(C):
        out[c] = out[c] / count


cdef void avg_pool_rows(const window_geometry *g, const floating *x, floating *out) noexcept nogil:
    cdef intp_t rows = g.batch * g.out_h
    cdef intp_t r, q
    cdef int nt = threads_for_elements(rows * g.out_w * g.channels * g.window_h * g.window_w)
    if nt > 1:
        for r in prange(rows, schedule='static', num_threads=nt):
            for q in range(g.out_w):
                _avg_pool_pixel(g, x, out + (r * g.out_w + q) * g.channels, r // g.out_h,
                                r % g.out_h, q)
    else:
        for r in range(rows):
            for q in range(g.out_w):
                _avg_pool_pixel(g, x, out + (r * g.out_w + q) * g.channels, r // g.out_h,
                                r % g.out_h, q)


cdef inline void _pool_grad_image_row(const window_geometry *g, const window_taps *t,
                                      const floating *grad_out, const int32_t *argmax,
                                      floating *grad_x, intp_t n, intp_t h) noexcept nogil:
    """grad_x[n, h, :, :]: the sum, over the windows that cover each pixel in (i, j) order, of
    the window's gradient where argmax picks that pixel (max pool), or of its gradient divided
    by its pixel count (average pool: argmax NULL)."""
    cdef intp_t C = g.channels, kh = g.window_h, kw = g.window_w
    cdef intp_t w, i, j, c, p, q, at, pixel
    cdef floating count
    cdef floating *dst
    for w in range(g.in_w):
        pixel = h * g.in_w + w
        dst = grad_x + (n * g.in_h * g.in_w + pixel) * C
        for c in range(C):
            dst[c] = 0
        for i in range(kh):
            p = t.row_tap[h * kh + i]
            if p < 0:
                continue
            for j in range(kw):
                q = t.col_tap[w * kw + j]
                if q < 0:
                    continue
                at = ((n * g.out_h + p) * g.out_w + q) * C
                if argmax != NULL:
                    if floating is float:
                        cnn_route_add_f32(dst, grad_out + at, argmax + at, <int32_t>pixel, C)
                    else:
                        cnn_route_add_f64(dst, grad_out + at, argmax + at, <int32_t>pixel, C)
                else:
                    count = <floating>(t.row_real[p] * t.col_real[q])
                    for c in range(C):
                        dst[c] += grad_out[at + c] / count


cdef void pool_grad_rows(const window_geometry *g, const window_taps *t,
                         const floating *grad_out, const int32_t *argmax,
                         floating *grad_x) noexcept nogil:
    cdef intp_t rows = g.batch * g.in_h
    cdef intp_t r
    cdef int nt = threads_for_elements(g.batch * g.out_h * g.out_w * g.channels
                                       * g.window_h * g.window_w)
    if nt > 1:
        for r in prange(rows, schedule='static', num_threads=nt):
            _pool_grad_image_row(g, t, grad_out, argmax, grad_x, r // g.in_h, r % g.in_h)
    else:
        for r in range(rows):
            _pool_grad_image_row(g, t, grad_out, argmax, grad_x, r // g.in_h, r % g.in_h)


cdef inline void _max_pool_scatter_row(const window_geometry *g, const floating *x,
                                       const floating *grad_out, floating *maxima,
                                       int32_t *argmax, floating *grad_x,
                                       intp_t r) noexcept nogil:
    """Windows that do not overlap: output row r's windows own their pixels, so each window
    writes all of its real pixels once, the gradient at its argmax and 0 elsewhere."""
    cdef intp_t C = g.channels, n = r // g.out_h, p = r % g.out_h
    cdef intp_t q, at, i, j, i0, i1, j0, j1, pixel
    cdef intp_t h0 = p * g.stride_h - g.pad_top, w0
    cdef floating *image = grad_x + n * g.in_h * g.in_w * C
    # One window's maxima and argmax at a time, in the row's first slot (stays in L1).
    cdef floating *window_max = maxima + r * g.out_w * C
    cdef int32_t *window_arg = argmax + r * g.out_w * C
    _window_span(h0, g.window_h, g.in_h, &i0, &i1)
    for q in range(g.out_w):
        at = (r * g.out_w + q) * C
        _max_pool_pixel(g, x, window_max, window_arg, n, p, q)
        w0 = q * g.stride_w - g.pad_left
        _window_span(w0, g.window_w, g.in_w, &j0, &j1)
        for i in range(i0, i1):
            for j in range(j0, j1):
                pixel = (h0 + i) * g.in_w + w0 + j
                if floating is float:
                    cnn_route_store_f32(image + pixel * C, grad_out + at, window_arg,
                                        <int32_t>pixel, C)
                else:
                    cnn_route_store_f64(image + pixel * C, grad_out + at, window_arg,
                                        <int32_t>pixel, C)


cdef inline void _zero_unpooled_pixels(const window_geometry *g, const window_taps *t,
                                       floating *grad_x, intp_t n) noexcept nogil:
    """Zeroes the pixels of image n that no window reads (the last rows and columns when the
    windows do not tile the image, the gaps of strides larger than the window)."""
    cdef intp_t C = g.channels, h, w, i, j
    cdef bint row_read, col_read
    cdef floating *row
    for h in range(g.in_h):
        row = grad_x + (n * g.in_h + h) * g.in_w * C
        row_read = False
        for i in range(g.window_h):
            row_read = row_read or t.row_tap[h * g.window_h + i] >= 0
        if not row_read:
            memset(row, 0, g.in_w * C * sizeof(floating))
            continue
        for w in range(g.in_w):
            col_read = False
            for j in range(g.window_w):
                col_read = col_read or t.col_tap[w * g.window_w + j] >= 0
            if not col_read:
                memset(row + w * C, 0, C * sizeof(floating))


cdef void max_pool_grad_rows(const window_geometry *g, const window_taps *t, const floating *x,
                             const floating *grad_out, floating *maxima, int32_t *argmax,
                             floating *grad_x) noexcept nogil:
    """grad_x of a max pool: the gather of pool_grad_rows after recording every argmax, or,
    when windows cannot overlap, each window writing its own pixels (and the pixels no window
    reads zeroed)."""
    cdef intp_t rows = g.batch * g.out_h
    cdef intp_t r
    cdef int nt = threads_for_elements(rows * g.out_w * g.channels * g.window_h * g.window_w)
    if g.stride_h < g.window_h or g.stride_w < g.window_w:
        max_pool_rows(g, x, maxima, argmax)
        pool_grad_rows(g, t, grad_out, argmax, grad_x)
    elif nt > 1:
        for r in prange(g.batch, schedule='static', num_threads=nt):
            _zero_unpooled_pixels(g, t, grad_x, r)
        for r in prange(rows, schedule='static', num_threads=nt):
            _max_pool_scatter_row(g, x, grad_out, maxima, argmax, grad_x, r)
    else:
        for r in range(g.batch):
            _zero_unpooled_pixels(g, t, grad_x, r)
        for r in range(rows):
            _max_pool_scatter_row(g, x, grad_out, maxima, argmax, grad_x, r)


def max_pool2d_forward(x, *, pool_size=(2, 2), strides=None, padding="valid", out=None):
    """The max of each window. x: (batch, height, width, channels) C-contiguous; strides None
    means pool_size. out: (batch, out_h, out_w, channels). A NaN in a window is its max."""
    geometry = _checks.check_pool2d_inputs(x, pool_size, strides, padding)
    out = _checks.check_out(out, "out", (geometry.batch, geometry.out_h, geometry.out_w,
                                         geometry.channels), x.dtype)
    _checks.check_no_overlap([("out", out)], [("x", x)])
    cdef window_geometry g = _geometry(geometry)
    cdef void *x_ptr = _data(x)
    cdef void *o_ptr = _data(out)
    if x.dtype == np.float32:
        with nogil:
            max_pool_rows[float](&g, <float *>x_ptr, <float *>o_ptr, NULL)
    else:
        with nogil:
            max_pool_rows[double](&g, <double *>x_ptr, <double *>o_ptr, NULL)
    return out


def max_pool2d_backward(x, grad_out, *, pool_size=(2, 2), strides=None, padding="valid",
                        grad_x=None):
    """dL/dx: each window's gradient goes to the first position, in row-major window order,
    that holds the window's max (or the first NaN). Returns grad_x, x's shape."""
    geometry, grad_x = _checks.check_pool2d_backward(x, grad_out, pool_size, strides, padding,
                                                     grad_x)
    cdef window_geometry g = _geometry(geometry)
    cdef intp_t outputs = g.batch * g.out_h * g.out_w * g.channels
    cdef size_t item = x.itemsize
    cdef void *x_ptr = _data(x)
    cdef void *g_ptr = _data(grad_out)
    cdef void *gx_ptr = _data(grad_x)
    cdef char *scratch
    cdef window_taps taps
    cdef size_t skip = 0
    with nogil:
        # The tap tables, the window maxima (thrown away) and their argmaxes.
        skip = _taps_bytes(&g)
        scratch = <char *>cnn_scratch(skip + outputs * (item + sizeof(int32_t)))
        if scratch != NULL:
            _fill_taps(&g, scratch, &taps)
            if item == sizeof(float):
                max_pool_grad_rows[float](&g, &taps, <float *>x_ptr, <float *>g_ptr,
                                          <float *>(scratch + skip),
                                          <int32_t *>(scratch + skip + outputs * item),
                                          <float *>gx_ptr)
            else:
                max_pool_grad_rows[double](&g, &taps, <double *>x_ptr, <double *>g_ptr,
                                           <double *>(scratch + skip),
                                           <int32_t *>(scratch + skip + outputs * item),
                                           <double *>gx_ptr)
    if scratch == NULL:
        raise MemoryError("max_pool2d_backward: could not allocate the argmax workspace")
    return grad_x


def avg_pool2d_forward(x, *, pool_size=(2, 2), strides=None, padding="valid", out=None):
    """The mean of each window over its real pixels (padding is not counted).
    x: (batch, height, width, channels) C-contiguous. out: (batch, out_h, out_w, channels)."""
    geometry = _checks.check_pool2d_inputs(x, pool_size, strides, padding)
    out = _checks.check_out(out, "out", (geometry.batch, geometry.out_h, geometry.out_w,
                                         geometry.channels), x.dtype)
    _checks.check_no_overlap([("out", out)], [("x", x)])
    cdef window_geometry g = _geometry(geometry)
    cdef void *x_ptr = _data(x)
    cdef void *o_ptr = _data(out)
    if x.dtype == np.float32:
        with nogil:
            avg_pool_rows[float](&g, <float *>x_ptr, <float *>o_ptr)
    else:
        with nogil:
            avg_pool_rows[double](&g, <double *>x_ptr, <double *>o_ptr)
    return out


def avg_pool2d_backward(x, grad_out, *, pool_size=(2, 2), strides=None, padding="valid",
                        grad_x=None):
    """dL/dx: each window's gradient divided by its pixel count and added to each of its
    pixels. x gives the shape and dtype (its values are not read). Returns grad_x."""
    geometry, grad_x = _checks.check_pool2d_backward(x, grad_out, pool_size, strides, padding,
                                                     grad_x)
    cdef window_geometry g = _geometry(geometry)
    cdef void *g_ptr = _data(grad_out)
    cdef void *gx_ptr = _data(grad_x)
    cdef void *scratch
    cdef window_taps taps
    cdef bint single = x.dtype == np.float32
    with nogil:
        scratch = cnn_scratch(_taps_bytes(&g))
        if scratch != NULL:
            _fill_taps(&g, scratch, &taps)
            if single:
                pool_grad_rows[float](&g, &taps, <float *>g_ptr, NULL, <float *>gx_ptr)
            else:
                pool_grad_rows[double](&g, &taps, <double *>g_ptr, NULL, <double *>gx_ptr)
    if scratch == NULL:
        raise MemoryError("avg_pool2d_backward: could not allocate its tap tables")
    return grad_x
