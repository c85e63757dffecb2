"""GEMM: cnn_core.gemm against numpy.matmul (OpenBLAS) at MLP and cube shapes.

    pytest bench/bench_gemm.py --benchmark-columns=median,ops --benchmark-group-by=param:shape

GFLOPS are stored in each case's extra_info; bench/run.py prints them side by side as ratios.
"""
import numpy as np
import pytest

import cnn_core

SHAPES = [(64, 784, 128), (256, 784, 256), (1024, 1024, 1024)]
TRANSPOSES = {"NN": (False, False), "TN": (True, False), "NT": (False, True)}


def _operands(m, k, n, trans_a, trans_b, dtype=np.float32):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("impl", ["cnn_core", "numpy"])
def test_gemm_nn(benchmark, record_rates, threads, shape, impl):
    m, k, n = shape
    a, b = _operands(m, k, n, False, False)
    out = np.empty((m, n), np.float32)
    if impl == "cnn_core":
        benchmark(lambda: cnn_core.gemm(a, b, out=out))
    else:
        benchmark(lambda: np.matmul(a, b, out=out))
    record_rates(benchmark, gflops=2.0 * m * n * k / 1e9)


@pytest.mark.parametrize("trans", ["TN", "NT"])
@pytest.mark.parametrize("impl", ["cnn_core", "numpy"])
def test_gemm_backprop_transposes(benchmark, record_rates, threads, trans, impl):
    """The shapes backprop of a 784x128 layer at batch 64 needs: dW = x^T dz, dx = dz W^T."""
    ta, tb = TRANSPOSES[trans]
    m, k, n = (784, 64, 128) if trans == "TN" else (64, 128, 784)
    a, b = _operands(m, k, n, ta, tb)
    opa, opb = (a.T if ta else a), (b.T if tb else b)
    out = np.empty((m, n), np.float32)
    if impl == "cnn_core":
        benchmark(lambda: cnn_core.gemm(a, b, trans_a=ta, trans_b=tb, out=out))
    else:
        benchmark(lambda: np.matmul(opa, opb, out=out))
    record_rates(benchmark, gflops=2.0 * m * n * k / 1e9)
