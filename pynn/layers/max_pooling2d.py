"""``MaxPooling2D`` (alias ``MaxPool2D``): the max of each window of NHWC images (Keras 3).

Also the shared base of the 2-D pooling layers, ``_Pooling2D``: arguments, output shape, and
one backend call forward (``max_pool2d_forward`` / ``avg_pool2d_forward``) and one backward,
into reused buffers.
Windows follow Keras/TensorFlow ('same' pads with the smaller half before); padded positions
never count (a max ignores them, a mean divides by the real pixels only).
"""
from pynn.backend import get_backend
from pynn.layers.base import Layer
from pynn.layers.windows import (
    check_image_input,
    standardize_data_format,
    standardize_pair,
    standardize_padding,
    window_output_shape,
)


class _Pooling2D(Layer):
    """Base of MaxPooling2D / AveragePooling2D; subclasses name their backend functions."""

    _forward_kernel = None   # "max_pool2d_forward", ...
    _backward_kernel = None  # "max_pool2d_backward", ...

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        owner = type(self).__name__
        self.pool_size = standardize_pair(pool_size, "pool_size", owner)
        # Keras: strides default to the pool size, and get_config reports them so.
        self.strides = self.pool_size if strides is None else standardize_pair(
            strides, "strides", owner)
        self.padding = standardize_padding(padding, owner)
        self.data_format = standardize_data_format(data_format, owner)
        self._x = None

    def build(self, input_shape):
        self.compute_output_shape(input_shape)  # 4-D input, window fits
        self.built = True

    def compute_output_shape(self, input_shape):
        """(height, width, channels) -> (out_h, out_w, channels); None stays None."""
        return window_output_shape(input_shape, self.pool_size, self.strides, self.padding,
                                   self, "pool window") + (input_shape[-1],)

    def _geometry(self):
        return {"pool_size": self.pool_size, "strides": self.strides, "padding": self.padding}

    def forward(self, x, training=False):
        """x: (batch, height, width, channels) -> (batch, out_h, out_w, channels) (a buffer
        reused by the next call with the same batch shape)."""
        check_image_input(x, self)
        x = self._as_compute(x)
        if not self.built:
            self._ensure_built(x.shape[1:])
        out_h, out_w, channels = self.compute_output_shape(x.shape[1:])
        out = self._buffer("out", (x.shape[0], out_h, out_w, channels))
        getattr(get_backend(), self._forward_kernel)(x, out=out, **self._geometry())
        self._x, self._out_shape = x, out.shape
        return out

    def backward(self, grad_y, wrt_preactivation=False, need_grad_x=True):
        """dL/dx from dL/dy: (batch, out_h, out_w, channels) -> x's shape."""
        self.grads = []
        if not need_grad_x:
            return None
        if self._x is None:
            raise RuntimeError(f"{type(self).__name__} '{self.name}': backward called before "
                               "forward")
        grad = self._as_compute(grad_y.reshape(self._out_shape))
        grad_x = self._buffer("grad_x", self._x.shape)
        getattr(get_backend(), self._backward_kernel)(self._x, grad, grad_x=grad_x,
                                                      **self._geometry())
        return grad_x

    def get_config(self):
        config = super().get_config()
        config.update({"pool_size": self.pool_size, "padding": self.padding,
                       "strides": self.strides, "data_format": self.data_format})
        return config


class MaxPooling2D(_Pooling2D):
    """The max of each ``pool_size`` window, moved by ``strides`` (default: pool_size).
    A NaN in a window is its max; the gradient goes to the window's first max (row-major)."""

    _forward_kernel = "max_pool2d_forward"
    _backward_kernel = "max_pool2d_backward"


MaxPool2D = MaxPooling2D
