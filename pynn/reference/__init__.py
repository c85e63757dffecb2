"""The NumPy reference of every kernel: the definition of what ``cnn_core`` computes.

Same functions, signatures and validation as the compiled core (docs/kernel_api.md), written
as the textbook equations so a student can read them. Select it with
``pynn.set_backend("numpy")``; the compiled kernels are tested against it.

One concept per module:
    gemm.py          alpha * op(a) @ op(b) + beta * out
    activations.py   a = f(z) and dL/dz = dL/da * f'(z)
    dense.py         z = x W + b, a = f(z) and its gradients
    conv.py          2-D convolution (im2col) and max/average pooling, NHWC, and gradients
    losses.py        batch-mean losses and their gradients
    optimizers.py    in-place SGD / Adam(W) / RMSprop / Adagrad steps (Keras 3)
    reductions.py    sum_of_squares (gradient clipping norms), all_finite (input checks)
    threads.py       thread count (recorded only: NumPy runs what it runs) and build_info
"""
from pynn.reference.gemm import gemm
from pynn.reference.activations import activation_forward, activation_backward
from pynn.reference.dense import dense_forward, dense_backward
from pynn.reference.conv import (
    conv2d_forward,
    conv2d_backward,
    max_pool2d_forward,
    max_pool2d_backward,
    avg_pool2d_forward,
    avg_pool2d_backward,
)
from pynn.reference.losses import (
    softmax_cross_entropy_sparse,
    softmax_cross_entropy,
    mean_squared_error,
    mean_absolute_error,
    binary_cross_entropy_logits,
    binary_cross_entropy,
)
from pynn.reference.optimizers import sgd_update, adam_update, rmsprop_update, adagrad_update
from pynn.reference.reductions import all_finite, sum_of_squares
from pynn.reference.threads import set_num_threads, get_num_threads, build_info

__all__ = [
    "gemm",
    "activation_forward",
    "activation_backward",
    "dense_forward",
    "dense_backward",
    "conv2d_forward",
    "conv2d_backward",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "softmax_cross_entropy_sparse",
    "softmax_cross_entropy",
    "mean_squared_error",
    "mean_absolute_error",
    "binary_cross_entropy_logits",
    "binary_cross_entropy",
    "sgd_update",
    "adam_update",
    "rmsprop_update",
    "adagrad_update",
    "all_finite",
    "sum_of_squares",
    "set_num_threads",
    "get_num_threads",
    "build_info",
]
