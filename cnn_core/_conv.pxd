# C-level convolution and pooling kernels for other Cython modules (NHWC images).
from cnn_core._typedefs cimport floating, intp_t

# A 2-D sliding window over (batch, in_h, in_w, channels) images; out_h x out_w windows,
# pad_top/pad_left rows/columns of padding before the image (Keras' rules: _checks.py).
cdef struct window_geometry:
    intp_t batch, in_h, in_w, channels
    intp_t window_h, window_w, stride_h, stride_w
    intp_t out_h, out_w, pad_top, pad_left

# z = conv(x, w) + b, a = f(z) for an elementwise activation `act` (CNN_ACT_* id).
# x: batch images; w: (window_h * window_w * channels, filters) rows; b may be NULL;
# z_out may be NULL; a: (batch * out_h * out_w, filters). Returns 0, -1 on allocation failure.
cdef int conv2d_forward_raw(const window_geometry *g, const floating *x, const floating *w,
                            const floating *b, intp_t filters, floating *z_out, floating *a,
                            int act, floating param, int num_threads) noexcept nogil

# grad_w = cols^T dz, grad_b = column sums of dz, grad_x = col2im(dz w^T) (skipped when NULL)
# from dz = dL/dz, (batch * out_h * out_w, filters). Returns 0, -1 on allocation failure.
cdef int conv2d_backward_raw(const window_geometry *g, const floating *x, const floating *w,
                             const floating *dz, intp_t filters, floating *grad_w,
                             floating *grad_b, floating *grad_x, int num_threads) noexcept nogil
