"""``GlobalMaxPooling2D`` (alias ``GlobalMaxPool2D``): the max of each channel over the whole
image (Keras 3). (batch, height, width, channels) -> (batch, channels), or
(batch, 1, 1, channels) with ``keepdims``.

As in the pooling kernels, a NaN is the max, and the gradient of each (image, channel) goes to
its first maximum in row-major (height, width) order. Plain NumPy into reused buffers.
"""
import numpy as np

from pynn.layers.global_average_pooling2d import _GlobalPooling2D


class GlobalMaxPooling2D(_GlobalPooling2D):
    """The max over height and width of each (image, channel)."""

    def _reduce(self, x, out):
        np.max(x, axis=(1, 2), out=out)  # propagates NaN

    def _spread(self, x, grad, grad_x):
        batch, height, width, channels = x.shape
        # np.argmax gives the first maximum in (height, width) row-major order, or the first
        # NaN: the one element of each (image, channel) that receives its gradient.
        where = self._buffer("argmax", (batch, 1, channels), np.intp)
        np.argmax(x.reshape(batch, height * width, channels), axis=1, out=where[:, 0, :])
        grad_x.fill(0)
        np.put_along_axis(grad_x.reshape(batch, height * width, channels), where,
                          grad[:, None, :], axis=1)


GlobalMaxPool2D = GlobalMaxPooling2D
