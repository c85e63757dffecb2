"""Arguments and shapes shared by the sliding-window layers (Conv2D and the 2-D poolings):
int-or-pair sizes, padding, data_format, 4-D image inputs and Keras' output sizes, each
checked with a ValueError that names the layer."""
import numpy as np

from cnn_core import _checks


def standardize_pair(value, name, owner):
    """``(h, w)`` from an int or a pair of positive ints (Keras' standardize_tuple); a
    ValueError naming ``owner`` (the layer class) otherwise."""
    try:
        return _checks.check_pair(value, name)
    except (TypeError, ValueError):
        raise ValueError(f"{owner} {name} must be a positive integer or a pair of positive "
                         f"integers, got {value!r}") from None


def standardize_padding(padding, owner):
    """'valid' or 'same' (any case, as Keras accepts)."""
    try:
        return _checks.check_padding(padding)
    except ValueError:
        raise ValueError(f"{owner} padding must be 'valid' or 'same', got {padding!r}") from None


def standardize_data_format(data_format, owner):
    """'channels_last' for None or 'channels_last'; channels_first is not implemented."""
    if data_format is None or data_format == "channels_last":
        return "channels_last"
    if data_format == "channels_first":
        raise NotImplementedError(
            f"{owner}: data_format='channels_first' is not supported; pynn works on "
            "channels_last (batch, height, width, channels) images: transpose the data, e.g. "
            "x.transpose(0, 2, 3, 1)")
    raise ValueError(f"{owner} data_format must be 'channels_last' or 'channels_first', "
                     f"got {data_format!r}")


def check_image_shape(input_shape, layer):
    """``input_shape`` (batch axis excluded) must be (height, width, channels)."""
    if len(input_shape) != 3:
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}' expects 4-D input (batch, height, width, "
            f"channels), got input shape {(None,) + tuple(input_shape)}")


def check_image_input(x, layer):
    """A batch ``x`` must be 4-D (batch, height, width, channels)."""
    if np.ndim(x) != 4:
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}' expects 4-D input (batch, height, width, "
            f"channels), got an array of shape {np.shape(x)}")


def window_output_shape(input_shape, window, strides, padding, layer, what):
    """(out_h, out_w) of a window sliding over (height, width, ...) by Keras' rules; an unknown
    (None) size stays None, and an image smaller than a 'valid' window raises ValueError."""
    check_image_shape(input_shape, layer)
    out = []
    for size, extent, stride in zip(input_shape[:2], window, strides):
        if size is None:
            out.append(None)
            continue
        count, _ = _checks.window_extent(size, extent, stride, padding)
        if count < 1:
            raise ValueError(
                f"{type(layer).__name__} '{layer.name}': the {window[0]}x{window[1]} {what} "
                f"does not fit input of shape {(None,) + tuple(input_shape)} with "
                f"padding='{padding}'")
        out.append(count)
    return tuple(out)
