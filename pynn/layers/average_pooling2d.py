"""``AveragePooling2D`` (alias ``AvgPool2D``): the mean of each window of NHWC images (Keras 3).

Padded positions of 'same' windows are not counted: an edge window divides by the number of
real pixels it covers (Keras/TensorFlow; PyTorch's ``count_include_pad=False``).
"""
from pynn.layers.max_pooling2d import _Pooling2D


class AveragePooling2D(_Pooling2D):
    """The mean of each ``pool_size`` window, moved by ``strides`` (default: pool_size)."""

    _forward_kernel = "avg_pool2d_forward"
    _backward_kernel = "avg_pool2d_backward"


AvgPool2D = AveragePooling2D
