"""Validation at the Python boundary, shared by ``cnn_core`` and the NumPy reference.

The compiled kernels assume valid input; everything a user can get wrong is caught here and
turned into a ``TypeError`` (wrong type or dtype) or ``ValueError`` (shape, ndim, emptiness,
label range, unknown name) whose message names the argument and what was wrong with it.
"""
import collections
import math

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Ids shared with the C side (cnn_core/include/activation_math.h).
ACTIVATION_IDS = {
    "identity": 0,
    "linear": 0,
    "relu": 1,
    "leaky_relu": 2,
    "elu": 3,
    "sigmoid": 4,
    "tanh": 5,
    "softplus": 6,
    "gelu": 7,
    "softmax": 8,
    "log_softmax": 9,
}
ROW_WISE_ACTIVATIONS = ("softmax", "log_softmax")
ACTIVATION_DEFAULT_PARAM = {"leaky_relu": 0.2, "elu": 1.0}


def check_array(x, name, ndim=None, min_ndim=None, dtype=None, allow_empty=False):
    """Return ``x`` if it is a float32/float64 ndarray of the wanted ndim (and dtype).

    ``dtype``: when given, ``x`` must have exactly that dtype (used to tie arguments together).
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if dtype is None:
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype}")
    elif x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but the other arrays are {np.dtype(dtype)}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {x.shape}")
    if not allow_empty and x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    return x


def check_contiguous(x, name):
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use numpy.ascontiguousarray)")
    return x


def check_out(out, name, shape, dtype, contiguous=True):
    """Validate a caller-provided output buffer, or allocate one when ``out`` is None."""
    shape = tuple(map(int, shape))
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected {np.dtype(dtype)}")
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if contiguous and not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    return out


def check_same_shape(a, a_name, b, b_name):
    if a.shape != b.shape:
        raise ValueError(f"{a_name} has shape {a.shape} but {b_name} has shape {b.shape}")


def check_finite_scalar(value, name):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def resolve_activation(activation, param=None):
    """Return ``(name, id, param)`` for an activation name; unknown names raise ValueError."""
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a string, got {type(activation).__name__}")
    key = activation.lower()
    if key not in ACTIVATION_IDS:
        raise ValueError(
            f"unknown activation {activation!r}; expected one of {sorted(ACTIVATION_IDS)}"
        )
    if key == "linear":
        key = "identity"
    if param is None:
        param = ACTIVATION_DEFAULT_PARAM.get(key, 0.0)
    return key, ACTIVATION_IDS[key], check_finite_scalar(param, "param")


def check_labels(labels, batch, num_classes, name="labels"):
    """Integer class labels of shape (batch,) in [0, num_classes); returned as int64."""
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(labels).__name__}")
    if labels.dtype.kind not in "iu":
        if labels.dtype.kind == "f" and labels.size and np.all(np.isfinite(labels)) and np.all(
            labels == np.round(labels)
        ):
            labels = labels.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integer class ids, got dtype {labels.dtype}")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},), got {labels.shape}")
    if labels.size:
        lo, hi = labels.min(), labels.max()
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"{name} contains {bad}, outside [0, {num_classes}) for {num_classes} classes"
            )
    return np.ascontiguousarray(labels, dtype=np.int64)


def check_dense_inputs(x, w, b):
    """x: (batch, in), w: (in, units), b: (units,) C-contiguous or None; one float dtype."""
    check_array(x, "x", ndim=2)
    check_array(w, "w", ndim=2, dtype=x.dtype)
    if x.shape[1] != w.shape[0]:
        raise ValueError(
            f"x has {x.shape[1]} features (shape {x.shape}) but w expects {w.shape[0]} "
            f"(shape {w.shape})"
        )
    if b is not None:
        check_array(b, "b", ndim=1, dtype=x.dtype)
        check_contiguous(b, "b")
        if b.shape[0] != w.shape[1]:
            raise ValueError(f"b has shape {b.shape} but w has {w.shape[1]} units")


def check_like(arr, name, like, like_name):
    """``arr`` must be a C-contiguous ndarray with the dtype and shape of ``like`` (a gradient
    or optimizer state next to its parameter, a target next to its prediction)."""
    check_array(arr, name, dtype=like.dtype, allow_empty=True)
    check_same_shape(arr, name, like, like_name)
    check_contiguous(arr, name)
    return arr


def check_positive_int(value, name):
    """An integer >= 1 (a thread count, an optimizer step); bools are refused."""
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


# ------------------------------------------------------------------------------------------
# Convolution and pooling (NHWC): the window geometry of Keras/TensorFlow
# ------------------------------------------------------------------------------------------
# Largest window side or stride: the compiled kernels index pixels with int32 argmaxes and
# size their tap tables from it.
MAX_WINDOW = 2**31 - 1

# Geometry of a 2-D sliding window over NHWC input (check_conv2d_inputs, check_pool2d_inputs).
WindowGeometry = collections.namedtuple("WindowGeometry", (
    "batch", "in_h", "in_w", "channels", "window_h", "window_w", "stride_h", "stride_w",
    "out_h", "out_w", "pad_top", "pad_left"))


def check_pair(value, name):
    """``(h, w)`` from an int or a pair of ints, each >= 1 (a kernel size, strides, a pool)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                             for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    if max(pair) > MAX_WINDOW:  # keeps every index and byte count of the kernels in range
        raise ValueError(f"{name} must be at most {MAX_WINDOW}, got {value!r}")
    return int(pair[0]), int(pair[1])


def check_padding(padding):
    """'valid' or 'same' (any case)."""
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return padding.lower()


def window_extent(size, window, stride, padding):
    """``(out, pad_before)`` along one axis, by Keras' (TensorFlow's) rules.

    valid: out = floor((size - window) / stride) + 1, no padding.
    same:  out = ceil(size / stride); the missing ``(out - 1) * stride + window - size``
           positions are padded, the smaller half before (top/left), the rest after.
    """
    if padding == "valid":
        return ((size - window) // stride + 1 if size >= window else 0), 0
    out = -(-size // stride)
    return out, max((out - 1) * stride + window - size, 0) // 2


def _window_geometry(x, window, strides, padding, what):
    padding = check_padding(padding)
    batch, in_h, in_w, channels = x.shape
    out_h, pad_top = window_extent(in_h, window[0], strides[0], padding)
    out_w, pad_left = window_extent(in_w, window[1], strides[1], padding)
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"x's {in_h}x{in_w} image is smaller than the {window[0]}x{window[1]} {what} "
            f"with padding='valid' (x has shape {x.shape})")
    return WindowGeometry(batch, in_h, in_w, channels, window[0], window[1], strides[0],
                          strides[1], out_h, out_w, pad_top, pad_left)


def check_conv2d_inputs(x, w, b, strides, padding):
    """x: (batch, height, width, in_channels), w: (kernel_h, kernel_w, in_channels, filters),
    both C-contiguous; b: (filters,) or None; one float dtype. Returns the WindowGeometry."""
    check_array(x, "x", ndim=4)
    check_contiguous(x, "x")
    check_array(w, "w", ndim=4, dtype=x.dtype)
    check_contiguous(w, "w")
    if w.shape[2] != x.shape[3]:
        raise ValueError(
            f"x has {x.shape[3]} channels (shape {x.shape}) but w expects {w.shape[2]} "
            f"(shape {w.shape}: kernel_h, kernel_w, in_channels, filters)")
    if b is not None:
        check_array(b, "b", ndim=1, dtype=x.dtype)
        check_contiguous(b, "b")
        if b.shape[0] != w.shape[3]:
            raise ValueError(f"b has shape {b.shape} but w has {w.shape[3]} filters")
    return _window_geometry(x, w.shape[:2], check_pair(strides, "strides"), padding, "kernel")


def check_pool2d_inputs(x, pool_size, strides, padding):
    """x: (batch, height, width, channels) C-contiguous; strides None means pool_size.
    Returns the WindowGeometry."""
    check_array(x, "x", ndim=4)
    check_contiguous(x, "x")
    pool_size = check_pair(pool_size, "pool_size")
    strides = pool_size if strides is None else check_pair(strides, "strides")
    if x.shape[1] * x.shape[2] > 2**31 - 1:  # the compiled backward keeps int32 argmaxes
        raise ValueError(f"x's images have {x.shape[1] * x.shape[2]} pixels; pooling supports "
                         "at most 2**31 - 1 per image")
    return _window_geometry(x, pool_size, strides, padding, "pool window")


def check_window_output(arr, name, geometry, channels, dtype):
    """``arr`` must be a C-contiguous (batch, out_h, out_w, channels) array of ``dtype``: a
    z, a or grad_out next to the window geometry it came from."""
    shape = (geometry.batch, geometry.out_h, geometry.out_w, channels)
    check_array(arr, name, ndim=4, dtype=dtype)
    check_contiguous(arr, name)
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    return arr


def check_pool2d_backward(x, grad_out, pool_size, strides, padding, grad_x):
    """The arguments of a pooling backward. Returns (WindowGeometry, grad_x buffer)."""
    geometry = check_pool2d_inputs(x, pool_size, strides, padding)
    check_window_output(grad_out, "grad_out", geometry, geometry.channels, x.dtype)
    grad_x = check_out(grad_x, "grad_x", x.shape, x.dtype)
    check_no_overlap([("grad_x", grad_x)], [("x", x), ("grad_out", grad_out)])
    return geometry, grad_x


def check_no_overlap(outputs, inputs):
    """No output buffer may share memory with an input or with another output (a kernel
    writes an output while it still reads the others). outputs, inputs: (name, array or None)
    pairs."""
    outputs = [(n, a) for n, a in outputs if a is not None]
    for i, (name, out) in enumerate(outputs):
        for other_name, other in list(inputs) + outputs[i + 1:]:
            if other is not None and np.may_share_memory(out, other):
                raise ValueError(f"{name} must not share memory with {other_name}")


def check_conv2d_backward(x, w, z, a, grad_out, strides, padding, grad_w, grad_b, grad_x,
                          need_grad_x, dz_out):
    """The arguments of conv2d_backward, both backends'. Returns (WindowGeometry, grad_w,
    grad_b, grad_x or None), the output buffers allocated where None was given."""
    geometry = check_conv2d_inputs(x, w, None, strides, padding)
    filters = w.shape[3]
    for arr, arr_name in ((z, "z"), (a, "a"), (grad_out, "grad_out")):
        check_window_output(arr, arr_name, geometry, filters, x.dtype)
    grad_w = check_out(grad_w, "grad_w", w.shape, x.dtype)
    grad_b = check_out(grad_b, "grad_b", (filters,), x.dtype)
    grad_x = check_out(grad_x, "grad_x", x.shape, x.dtype) if need_grad_x else None
    if dz_out is not None:
        check_out(dz_out, "dz_out", (geometry.batch, geometry.out_h, geometry.out_w, filters),
                  x.dtype)
    check_no_overlap(
        [("grad_w", grad_w), ("grad_b", grad_b), ("grad_x", grad_x),
         ("dz_out", None if dz_out is grad_out else dz_out)],
        [("x", x), ("w", w), ("z", z), ("a", a), ("grad_out", grad_out)])
    return geometry, grad_w, grad_b, grad_x


def check_conv2d_forward(x, w, b, strides, padding, out, z_out):
    """The arguments of conv2d_forward, both backends'. Returns (WindowGeometry, out), out
    allocated when None was given."""
    geometry = check_conv2d_inputs(x, w, b, strides, padding)
    shape = (geometry.batch, geometry.out_h, geometry.out_w, w.shape[3])
    out = check_out(out, "out", shape, x.dtype)
    if z_out is not None:
        check_out(z_out, "z_out", shape, x.dtype)
    check_no_overlap([("z_out", z_out), ("out", out)], [("x", x), ("w", w), ("b", b)])
    return geometry, out
