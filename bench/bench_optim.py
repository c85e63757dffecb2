"""One optimizer update over 1,000,000 float32 parameters: cnn_core's in-place kernels against
the NumPy reference and torch.optim (foreach=True where the optimizer takes it).

    pytest bench/bench_optim.py --benchmark-columns=median,ops --benchmark-group-by=param:optimizer,param:threads

Hyper-parameters are Keras 3's defaults (the torch optimizers are set to the same values);
the update is memory-bound, so GB/s-style comparisons follow from the median times.
"""
import inspect

import numpy as np
import pytest

import cnn_core
import pynn.reference

N_PARAMS = 1_000_000
IMPLS = ["cnn_core", "numpy", pytest.param("torch", marks=pytest.mark.torch)]
KERNELS = {"cnn_core": cnn_core, "numpy": pynn.reference}
OPTIMIZERS = ["sgd", "sgd_momentum", "sgd_nesterov", "adam", "adamw", "rmsprop", "adagrad"]
ADAMW_DECAY = 0.004  # Keras' AdamW default


def _kernel_step(kernels, name, p, g):
    """A zero-argument update of ``p`` in place, its state allocated here (Keras' initial values)."""
    n = p.shape[0]
    zeros = lambda: np.zeros(n, np.float32)  # noqa: E731
    if name == "sgd":
        return lambda: kernels.sgd_update(p, g, None, lr=0.01)
    if name in ("sgd_momentum", "sgd_nesterov"):
        vel, nesterov = zeros(), name == "sgd_nesterov"
        return lambda: kernels.sgd_update(p, g, vel, lr=0.01, momentum=0.9, nesterov=nesterov)
    if name in ("adam", "adamw"):
        m, v = zeros(), zeros()
        decay = ADAMW_DECAY if name == "adamw" else 0.0
        return lambda: kernels.adam_update(p, g, m, v, lr=1e-3, step=10, weight_decay=decay)
    if name == "rmsprop":
        vel = zeros()
        return lambda: kernels.rmsprop_update(p, g, vel, lr=1e-3, rho=0.9, epsilon=1e-7)
    if name == "adagrad":
        acc = np.full(n, 0.1, np.float32)
        return lambda: kernels.adagrad_update(p, g, acc, lr=1e-3, epsilon=1e-7)
    raise ValueError(name)


def _torch_optimizer(torch, name, params):
    opt = torch.optim
    cls, kw = {
        "sgd": (opt.SGD, dict(lr=0.01)),
        "sgd_momentum": (opt.SGD, dict(lr=0.01, momentum=0.9)),
        "sgd_nesterov": (opt.SGD, dict(lr=0.01, momentum=0.9, nesterov=True)),
        "adam": (opt.Adam, dict(lr=1e-3, eps=1e-7)),
        "adamw": (opt.AdamW, dict(lr=1e-3, eps=1e-7, weight_decay=ADAMW_DECAY)),
        "rmsprop": (opt.RMSprop, dict(lr=1e-3, alpha=0.9, eps=1e-7)),
        "adagrad": (opt.Adagrad, dict(lr=1e-3, eps=1e-7, initial_accumulator_value=0.1)),
    }[name]
    if "foreach" in inspect.signature(cls).parameters:
        kw["foreach"] = True
    return cls(params, **kw)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("impl", IMPLS)
def test_optimizer_update(benchmark, threads, request, optimizer, impl):
    rng = np.random.default_rng(3)
    p = (rng.standard_normal(N_PARAMS) * 0.05).astype(np.float32)
    g = rng.standard_normal(N_PARAMS).astype(np.float32)
    if impl == "torch":
        torch = request.getfixturevalue("torch_threads")
        pt = torch.from_numpy(p).requires_grad_(True)
        pt.grad = torch.from_numpy(g)
        opt = _torch_optimizer(torch, optimizer, [pt])
        opt.step()  # torch creates its state lazily on the first step: keep that out of timing
        benchmark(opt.step)
    else:
        benchmark(_kernel_step(KERNELS[impl], optimizer, p, g))
