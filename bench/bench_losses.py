"""Softmax cross-entropy with integer labels, loss and gradient: cnn_core against the NumPy
reference and PyTorch (F.cross_entropy + backward).

    pytest bench/bench_losses.py --benchmark-columns=median,ops --benchmark-group-by=param:shape,param:threads
"""
import numpy as np
import pytest

import cnn_core
import pynn.reference

SHAPES = [(32, 10), (256, 10), (1024, 1000)]  # (batch, classes)
IMPLS = ["cnn_core", "numpy", pytest.param("torch", marks=pytest.mark.torch)]
KERNELS = {"cnn_core": cnn_core, "numpy": pynn.reference}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("impl", IMPLS)
def test_softmax_cross_entropy_sparse(benchmark, threads, request, shape, impl):
    batch, classes = shape
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((batch, classes)).astype(np.float32)
    labels = rng.integers(0, classes, batch)
    if impl == "torch":
        torch = request.getfixturevalue("torch_threads")
        lt = torch.from_numpy(logits).requires_grad_(True)
        yt = torch.from_numpy(labels)

        def torch_ce():
            lt.grad = None
            loss = torch.nn.functional.cross_entropy(lt, yt)
            loss.backward()
            return loss

        benchmark(torch_ce)
    else:
        kernels = KERNELS[impl]
        grad = np.empty_like(logits)
        benchmark(lambda: kernels.softmax_cross_entropy_sparse(logits, labels, grad=grad))
