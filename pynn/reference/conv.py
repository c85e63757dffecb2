"""2-D convolution and pooling over NHWC images (Keras' channels_last), and their gradients.

Convolution, with x_pad the input padded with zeros by ``padding`` (Keras/TensorFlow rules,
``_checks.window_extent``)::

    z[n, p, q, f] = b[f] + sum_{i, j, c} x_pad[n, p*sh + i, q*sw + j, c] * w[i, j, c, f]
    a = f(z)

written as one matrix product: each output pixel's receptive field, flattened in (i, j, c)
order, is one row of ``cols`` (im2col), and ``w`` viewed as (kh*kw*c, filters) is the matrix.
Its backward is the transpose of each step: dW = cols^T dz, db = sum of dz over pixels, and
dx = col2im(dz W^T), which adds each row back onto the pixels it was gathered from.

Pooling takes the max (or the mean) of each window; padded positions never count: a max
ignores them and a mean divides by the number of real pixels in the window (Keras'
'same' average pooling, PyTorch's ``count_include_pad=False``). The gradient of a max goes to
the first maximum of its window in row-major order (a NaN counts as the maximum, as in
PyTorch); overlapping windows add their gradients.
"""
import numpy as np

from cnn_core import _checks
from pynn.reference.activations import _backward, _forward


def _output_shape(geometry, channels):
    return (geometry.batch, geometry.out_h, geometry.out_w, channels)


def _padded(x, geometry, fill):
    """x with the window's padding added around each image (top/left get the smaller half)."""
    g = geometry
    pad_bottom = max((g.out_h - 1) * g.stride_h + g.window_h - g.in_h - g.pad_top, 0)
    pad_right = max((g.out_w - 1) * g.stride_w + g.window_w - g.in_w - g.pad_left, 0)
    return np.pad(x, ((0, 0), (g.pad_top, pad_bottom), (g.pad_left, pad_right), (0, 0)),
                  constant_values=fill)


def _window_views(x_pad, geometry):
    """For each window offset (i, j): the (batch, out_h, out_w, channels) slice of x_pad that
    offset reads, as ``(i, j, view)``."""
    g = geometry
    for i in range(g.window_h):
        for j in range(g.window_w):
            yield i, j, x_pad[:, i:i + g.stride_h * (g.out_h - 1) + 1:g.stride_h,
                              j:j + g.stride_w * (g.out_w - 1) + 1:g.stride_w, :]


def im2col(x, geometry):
    """(batch * out_h * out_w, kh * kw * channels): row = one output pixel's receptive field."""
    g = geometry
    cols = np.empty((g.batch, g.out_h, g.out_w, g.window_h, g.window_w, g.channels), x.dtype)
    for i, j, view in _window_views(_padded(x, g, 0), g):
        cols[:, :, :, i, j, :] = view
    return cols.reshape(g.batch * g.out_h * g.out_w, -1)


def col2im(cols, geometry, dtype):
    """The adjoint of im2col: each row added back onto the pixels it came from.
    Returns (batch, in_h, in_w, channels)."""
    g = geometry
    cols = cols.reshape(g.batch, g.out_h, g.out_w, g.window_h, g.window_w, g.channels)
    x_pad = _padded(np.zeros((g.batch, g.in_h, g.in_w, g.channels), dtype), g, 0)
    for i, j, view in _window_views(x_pad, g):
        view += cols[:, :, :, i, j, :]  # a strided view of x_pad: adds in place
    return x_pad[:, g.pad_top:g.pad_top + g.in_h, g.pad_left:g.pad_left + g.in_w, :]


def conv2d_forward(x, w, b, *, strides=(1, 1), padding="valid", activation="identity",
                   param=None, out=None, z_out=None):
    """``a = f(conv2d(x, w) + b)``.

    x: (batch, height, width, in_channels), w: (kernel_h, kernel_w, in_channels, filters),
    both C-contiguous; b: (filters,) or None; one float dtype. strides: int or pair.
    padding: 'valid' or 'same'. activation: any name (softmax/log_softmax over the filters).
    out, z_out: (batch, out_h, out_w, filters); z_out, when given, receives z. Returns out.
    """
    g, out = _checks.check_conv2d_forward(x, w, b, strides, padding, out, z_out)
    name, _, param = _checks.resolve_activation(activation, param)
    filters = w.shape[3]
    shape = _output_shape(g, filters)

    z = im2col(x, g) @ w.reshape(-1, filters)
    if b is not None:
        z += b
    z = z.reshape(shape)
    if z_out is not None:
        z_out[...] = z
    out[...] = _forward(name, z, param)
    return out


def conv2d_backward(x, w, z, a, grad_out, *, strides=(1, 1), padding="valid",
                    activation="identity", param=None, grad_w=None, grad_b=None, grad_x=None,
                    need_grad_x=True, dz_out=None):
    """Gradients of conv2d_forward from ``grad_out = dL/da``.

    x, w, strides, padding as for the forward; z, a, grad_out: (batch, out_h, out_w, filters)
    C-contiguous (the same array twice for identity).
        dz     = grad_out * f'(z)
        grad_w = cols^T dz               (kernel_h, kernel_w, in_channels, filters)
        grad_b = sum of dz over pixels   (filters,)
        grad_x = col2im(dz W^T)          x's shape; None when need_grad_x is False
    dz_out: optional buffer that receives dz (may be grad_out). Returns (grad_w, grad_b, grad_x).
    """
    g, grad_w, grad_b, grad_x = _checks.check_conv2d_backward(
        x, w, z, a, grad_out, strides, padding, grad_w, grad_b, grad_x, need_grad_x, dz_out)
    filters = w.shape[3]
    shape = _output_shape(g, filters)
    name, _, param = _checks.resolve_activation(activation, param)

    dz = _backward(name, grad_out, z, a, param).reshape(-1, filters)
    if dz_out is not None:
        dz_out[...] = dz.reshape(shape)
    grad_w[...] = (im2col(x, g).T @ dz).reshape(w.shape)
    grad_b[...] = np.sum(dz, axis=0)
    if grad_x is not None:
        grad_x[...] = col2im(dz @ w.reshape(-1, filters).T, g, x.dtype)
    return grad_w, grad_b, grad_x


def max_pool2d_forward(x, *, pool_size=(2, 2), strides=None, padding="valid", out=None):
    """The max of each window. x: (batch, height, width, channels) C-contiguous; strides None
    means pool_size. out: (batch, out_h, out_w, channels). A NaN in a window is its max."""
    g = _checks.check_pool2d_inputs(x, pool_size, strides, padding)
    out = _checks.check_out(out, "out", _output_shape(g, g.channels), x.dtype)
    _checks.check_no_overlap([("out", out)], [("x", x)])
    best = np.full(out.shape, -np.inf, x.dtype)
    for _, _, view in _window_views(_padded(x, g, -np.inf), g):
        best = np.maximum(best, view)  # np.maximum propagates NaN
    out[...] = best
    return out


def max_pool2d_backward(x, grad_out, *, pool_size=(2, 2), strides=None, padding="valid",
                        grad_x=None):
    """dL/dx: each window's gradient goes to the first position, in row-major window order,
    that holds the window's max (or the first NaN). grad_out: (batch, out_h, out_w, channels).
    Returns grad_x, x's shape."""
    g, grad_x = _checks.check_pool2d_backward(x, grad_out, pool_size, strides, padding, grad_x)
    x_pad = _padded(x, g, -np.inf)
    best = max_pool2d_forward(x, pool_size=pool_size, strides=strides, padding=padding)
    best_is_nan = np.isnan(best)
    routed = np.zeros(best.shape, bool)  # the window's gradient has found its element
    grad_pad = np.zeros(x_pad.shape, x.dtype)
    real_pad = _padded(np.ones(x.shape, bool), g, False)  # a window of -inf is not padding's
    for (_, _, view), (_, _, grad_view), (_, _, real) in zip(
            _window_views(x_pad, g), _window_views(grad_pad, g), _window_views(real_pad, g)):
        hit = ~routed & real & np.where(best_is_nan, np.isnan(view), view == best)
        grad_view += np.where(hit, grad_out, 0)
        routed |= hit
    grad_x[...] = grad_pad[:, g.pad_top:g.pad_top + g.in_h, g.pad_left:g.pad_left + g.in_w, :]
    return grad_x


def _window_counts(geometry, dtype):
    """(out_h, out_w, 1): how many real (unpadded) pixels each window covers."""
    ones = np.ones((1, geometry.in_h, geometry.in_w, 1), dtype)
    counts = np.zeros((1, geometry.out_h, geometry.out_w, 1), dtype)
    for _, _, view in _window_views(_padded(ones, geometry._replace(batch=1), 0), geometry):
        counts += view
    return counts[0]


def avg_pool2d_forward(x, *, pool_size=(2, 2), strides=None, padding="valid", out=None):
    """The mean of each window over its real pixels (padding is not counted).
    x: (batch, height, width, channels) C-contiguous. out: (batch, out_h, out_w, channels)."""
    g = _checks.check_pool2d_inputs(x, pool_size, strides, padding)
    out = _checks.check_out(out, "out", _output_shape(g, g.channels), x.dtype)
    _checks.check_no_overlap([("out", out)], [("x", x)])
    total = np.zeros(out.shape, x.dtype)
    for _, _, view in _window_views(_padded(x, g, 0), g):
        total += view
    out[...] = total / _window_counts(g, x.dtype)
    return out


def avg_pool2d_backward(x, grad_out, *, pool_size=(2, 2), strides=None, padding="valid",
                        grad_x=None):
    """dL/dx: each window's gradient divided by its pixel count and added to each of its
    pixels. x gives the shape and dtype (its values are not read). Returns grad_x."""
    g, grad_x = _checks.check_pool2d_backward(x, grad_out, pool_size, strides, padding, grad_x)
    share = grad_out / _window_counts(g, x.dtype)
    grad_pad = _padded(np.zeros(x.shape, x.dtype), g, 0)
    for _, _, grad_view in _window_views(grad_pad, g):
        grad_view += share
    grad_x[...] = grad_pad[:, g.pad_top:g.pad_top + g.in_h, g.pad_left:g.pad_left + g.in_w, :]
    return grad_x
