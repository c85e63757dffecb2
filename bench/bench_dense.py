"""Dense layer: cnn_core.dense_forward / dense_backward (relu) against the NumPy reference and
PyTorch (F.linear + relu, autograd backward), forward and backward timed separately.

    pytest bench/bench_dense.py --benchmark-columns=median,ops --benchmark-group-by=func,param:shape,param:threads

GFLOPS are stored in each case's extra_info (forward 2*b*i*u, backward 4*b*i*u: dW and dx).
"""
import numpy as np
import pytest

import cnn_core
import pynn.reference

SHAPES = [(32, 784, 128), (128, 784, 512), (256, 1024, 1024)]  # (batch, n_in, units)
IMPLS = ["cnn_core", "numpy", pytest.param("torch", marks=pytest.mark.torch)]
KERNELS = {"cnn_core": cnn_core, "numpy": pynn.reference}


def _layer(batch, n_in, units):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    w = (rng.standard_normal((n_in, units)) * 0.05).astype(np.float32)
    b = (rng.standard_normal(units) * 0.05).astype(np.float32)
    g = rng.standard_normal((batch, units)).astype(np.float32)
    return x, w, b, g


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("impl", IMPLS)
def test_dense_forward(benchmark, record_rates, threads, request, shape, impl):
    batch, n_in, units = shape
    x, w, b, _ = _layer(batch, n_in, units)
    if impl == "torch":
        torch = request.getfixturevalue("torch_threads")
        xt, bt = torch.from_numpy(x), torch.from_numpy(b)
        wt = torch.from_numpy(np.ascontiguousarray(w.T))  # torch's (units, n_in) layout
        benchmark(lambda: torch.relu(torch.nn.functional.linear(xt, wt, bt)))
    else:
        kernels = KERNELS[impl]
        a, z = np.empty((batch, units), np.float32), np.empty((batch, units), np.float32)
        benchmark(lambda: kernels.dense_forward(x, w, b, "relu", out=a, z_out=z))
    record_rates(benchmark, gflops=2.0 * batch * n_in * units / 1e9)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("impl", IMPLS)
def test_dense_backward(benchmark, record_rates, threads, request, shape, impl):
    batch, n_in, units = shape
    x, w, b, g = _layer(batch, n_in, units)
    if impl == "torch":
        torch = request.getfixturevalue("torch_threads")
        xt = torch.from_numpy(x).requires_grad_(True)
        wt = torch.from_numpy(np.ascontiguousarray(w.T)).requires_grad_(True)
        bt = torch.from_numpy(b).requires_grad_(True)
        gt = torch.from_numpy(g)
        # One forward graph, kept: each call is the backward pass alone (relu', dW, db, dx).
        at = torch.relu(torch.nn.functional.linear(xt, wt, bt))
        benchmark(lambda: torch.autograd.grad(at, (xt, wt, bt), gt, retain_graph=True))
    else:
        kernels = KERNELS[impl]
        a, z = np.empty((batch, units), np.float32), np.empty((batch, units), np.float32)
        kernels.dense_forward(x, w, b, "relu", out=a, z_out=z)
        gw, gb, gx = np.empty_like(w), np.empty_like(b), np.empty_like(x)
        dz = np.empty_like(a)
        benchmark(lambda: kernels.dense_backward(x, w, z, a, g, "relu", grad_w=gw, grad_b=gb,
                                                 grad_x=gx, dz_out=dz))
    record_rates(benchmark, gflops=4.0 * batch * n_in * units / 1e9)
