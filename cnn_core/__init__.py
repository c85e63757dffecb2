"""cnn_core: pynn's compiled kernels (Cython + OpenMP, GIL released).

Functions and their contract: docs/kernel_api.md. Every function validates its arguments and
raises TypeError/ValueError naming the problem; the kernels behind them assume valid input.
"""
__version__ = "0.1.0"

from cnn_core._threads import set_num_threads, get_num_threads, has_openmp
from cnn_core._gemm import gemm
from cnn_core._dense import dense_forward, dense_backward
from cnn_core._conv import (
    conv2d_forward,
    conv2d_backward,
    max_pool2d_forward,
    max_pool2d_backward,
    avg_pool2d_forward,
    avg_pool2d_backward,
)
from cnn_core._activations import activation_forward, activation_backward
from cnn_core._losses import (
    softmax_cross_entropy_sparse,
    softmax_cross_entropy,
    mean_squared_error,
    mean_absolute_error,
    binary_cross_entropy_logits,
    binary_cross_entropy,
)
from cnn_core._optim import sgd_update, adam_update, rmsprop_update, adagrad_update
from cnn_core._reductions import all_finite, sum_of_squares
from cnn_core._peak import fma_peak
from cnn_core import _gemm


def build_info():
    """How this cnn_core was built and what it runs on this CPU.

    Keys: ``openmp`` (bool), ``kernel`` (GEMM micro-kernel family in use), ``cpu_kernels``
    (families this CPU supports), ``num_threads``, ``version``.
    """
    return {
        "backend": "cnn_core",
        "version": __version__,
        "openmp": has_openmp(),
        "kernel": _gemm.kernel_name(),
        "cpu_kernels": list(_gemm.cpu_kernels()),
        "num_threads": get_num_threads(),
    }
